"""The settings of a whole CT study (``ct_study.yaml``): which models and stages `osteomet run ct` runs.

Two studies ship with the package: ``tiny`` (one small detector and segmenter, few epochs, for
CPU trials, tests and the demo) and ``default`` (the published setting: the three detectors,
the three MONAI segmenters at full size and nnU-Net v2, for a GPU). Model settings name a preset
or a YAML file of `ct detect train` / `ct segment train`, read relative to the ``ct_study.yaml``
that names them. The ``nnunet`` section runs nnU-Net v2 itself (an optional extra) on the
study's split, as one more segmenter beside the MONAI ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from osteomet.config import ConfigError, load_preset_or_file
from osteomet.pipeline.study import DEVICE, scheduler_address
from osteomet.utils.cores import default_jobs


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CTSplitSettings(_Section):
    ratios: tuple[float, float, float] = Field((6, 1, 3), description="train:val:test by patient (a manifest "
                                                                       "split column is kept)")


class CTModelSettings(_Section):
    enabled: bool = True
    config: str = Field("tiny", description="preset (default, tiny) or YAML file of the task's training settings")
    architectures: list[str] | None = Field(None, description="architectures to train (default: the config's)")
    max_epochs: int | None = Field(None, ge=1)


class CTLesionSettings(_Section):
    enabled: bool = True
    cluster_gap: float = Field(10.0, gt=0, description="lesions within this many slices form a cluster")
    diffuse_fraction: float = Field(0.5, gt=0, le=1, description="a bone this much replaced is diffuse")
    n_resamples: int = Field(2000, ge=100, description="bootstrap resamples of the CIs")


class CTICCSettings(_Section):
    enabled: bool = True
    params: str = Field("tiny", description="pyradiomics parameters of the predicted-vs-manual ICC")


class CTNnunetSettings(_Section):
    """nnU-Net v2 through the real package: export, plan + preprocess, train each fold, predict, import.

    Folds: by default nnU-Net trains one fold, the study's own split (train patients train, val
    patients choose nothing but are nnU-Net's validation), so it learns from exactly the patients
    the MONAI segmenters learn from and the paired comparison on the test patients is like for
    like. ``cross_validation: 5`` with ``folds: [0, 1, 2, 3, 4]`` is nnU-Net's published recipe
    instead: 5-fold cross-validation over the train and val patients pooled, the folds ensembled
    at prediction; the test patients stay unseen either way.
    """

    enabled: bool = False
    configuration: Literal["2d", "3d_fullres", "3d_lowres"] = Field(
        "3d_fullres", description="nnU-Net configuration (3d_lowres exists only when nnU-Net plans it: large CTs)")
    trainer: str = Field("nnUNetTrainer", description="nnU-Net trainer class (nnUNetTrainer: 1000 epochs; osteomet's "
                                                      "short ones: nnUNetTrainer_OsteometSmoke/Tiny/CPU/Short)")
    planner: str = Field("ExperimentPlanner", description="nnU-Net experiment planner (nnUNetPlannerResEncM/L/XL: "
                                                          "the residual-encoder presets)")
    cross_validation: int | None = Field(None, ge=2, le=10, description="None: one fold, the study's train/val "
                                         "split; K: nnU-Net's K-fold cross-validation over train+val pooled")
    folds: list[int] | None = Field(None, min_length=1, description="folds to train and ensemble (default: all)")
    dataset_id: int = Field(501, ge=1, le=999, description="nnU-Net dataset id (the dataset lives in the run)")
    disable_tta: bool = Field(False, description="predict without nnU-Net's mirroring test-time augmentation")
    device: str | None = Field(None, pattern=r"^(cpu|cuda|mps)$", description="cpu, cuda or mps (default: the "
                                                                             "study's device)")
    processes: int = Field(1, ge=1, description="nnU-Net worker processes (preprocessing, augmentation, export)")
    cpu_threads: int | None = Field(None, ge=1, description="torch threads of CPU training with osteomet's trainers")

    @model_validator(mode="after")
    def _folds_exist(self) -> "CTNnunetSettings":
        n = self.cross_validation or 1
        folds = self.folds if self.folds is not None else list(range(n))
        outside = [f for f in folds if not 0 <= f < n]
        if outside:
            which = (f"cross_validation {n} defines folds 0-{n - 1}" if self.cross_validation else
                     "without cross_validation there is one fold, 0 (the study's train/val split)")
            raise ValueError(f"folds {outside}: {which}")
        if len(set(folds)) != len(folds):
            raise ValueError(f"folds {folds}: a fold is named twice")
        return self

    @property
    def fold_list(self) -> list[int]:
        """The folds trained and ensembled."""
        return list(self.folds) if self.folds is not None else list(range(self.cross_validation or 1))

    def check(self, study_device: str | None = None) -> None:
        """nnunetv2 installed (else its install recipe), the trainer, planner and device known: before any stage."""
        from osteomet.ct.nnunet.run import check_planner, check_trainer, require_nnunetv2

        require_nnunetv2()
        for key, check in (("trainer", check_trainer), ("planner", check_planner)):
            try:
                check(getattr(self, key))
            except ConfigError:
                raise
            except ValueError as exc:
                raise ConfigError(f"nnunet.{key}: {exc}") from None
        device = self.device or study_device
        if device is not None and device.startswith("cuda:"):
            raise ConfigError(f"device {device}: nnU-Net takes cpu, cuda or mps; choose the GPU with "
                              f"CUDA_VISIBLE_DEVICES={device[5:]} and device cuda (or set nnunet.device)")


class CTStudyConfig(_Section):
    seed: int = 0
    device: str | None = Field(None, pattern=DEVICE.pattern, description="cpu or cuda (default: cuda when present)")
    jobs: int = Field(default_factory=default_jobs, ge=1, description="worker processes: the architectures of a task "
                      "train side by side (default: every core)")
    scheduler: str | None = Field(None, description="Dask scheduler address: each architecture's training runs there")
    split: CTSplitSettings = Field(default_factory=CTSplitSettings)
    detection: CTModelSettings = Field(default_factory=CTModelSettings)
    segmentation: CTModelSettings = Field(default_factory=CTModelSettings)
    lesions: CTLesionSettings = Field(default_factory=CTLesionSettings)
    icc: CTICCSettings = Field(default_factory=CTICCSettings)
    nnunet: CTNnunetSettings = Field(default_factory=CTNnunetSettings)

    @field_validator("jobs", mode="before")
    @classmethod
    def _jobs(cls, jobs: object) -> object:
        return default_jobs() if jobs is None else jobs

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, scheduler: str | None) -> str | None:
        """The address StudyConfig accepts, refused before any stage as there."""
        return scheduler_address(scheduler)

    def model_config_of(self, task: str) -> Any:
        """The detection or segmentation training settings this study names, with its overrides applied."""
        section: CTModelSettings = getattr(self, task)
        if task == "detection":
            from osteomet.ct.detection.config import load_detection_config as load
        else:
            from osteomet.ct.segmentation.config import load_segmentation_config as load
        settings = load(section.config)
        update: dict[str, Any] = {}
        if section.architectures:
            update["architectures"] = list(section.architectures)
        if section.max_epochs:
            update["max_epochs"] = section.max_epochs
        if not update:
            return settings
        try:  # validated like the YAML values: an unknown architecture is refused here, not by a trainer
            return type(settings).model_validate({**settings.model_dump(), **update})
        except ValueError as exc:
            raise ConfigError(f"{task}: {exc}") from None


#: Sections whose ``config`` may name a YAML file beside the ct_study.yaml.
MODEL_SECTIONS = ("detection", "segmentation")


def load_ct_study_config(source: str | Path | None = None) -> CTStudyConfig:
    """A preset name ('default', 'tiny') or a ``ct_study.yaml``; relative model files resolved against it."""
    config = load_preset_or_file(source, CTStudyConfig, package="osteomet.pipeline", filename="ct_study_{}.yaml")
    if source is not None and Path(source).is_file():
        base = Path(source).resolve().parent
        update = {}
        for section in MODEL_SECTIONS:
            value = getattr(config, section).config
            if value in ("default", "tiny"):
                continue
            path = Path(value) if Path(value).is_absolute() else base / value
            if not path.is_file():
                raise ConfigError(f"{source}: {section}.config: {value!r} is neither a preset (default, tiny) nor an "
                                  f"existing YAML file ({path})")
            update[section] = getattr(config, section).model_copy(update={"config": str(path)})
        config = config.model_copy(update=update)
    for section in MODEL_SECTIONS:  # an unknown architecture or a bad model file is refused before any stage
        if getattr(config, section).enabled:
            config.model_config_of(section)
    if config.nnunet.enabled:  # so are a missing nnU-Net install and an unknown trainer or planner
        try:
            config.nnunet.check(config.device)
        except ConfigError as exc:
            where = f"{source}: " if source is not None and Path(source).is_file() else ""
            raise ConfigError(f"{where}{exc}") from None
    return config
