"""The settings of a whole bpMRI study (``study.yaml``): one file that `osteomet run mri` and `predict mri` share.

Each section names a preset (``default`` or ``tiny``) or a YAML file of the stage it
configures; relative file paths are read relative to the ``study.yaml`` that names them.
Two studies ship with the package: ``default`` (the published method, full-size models for a
GPU) and ``tiny`` (narrow models and few epochs, for CPU trials, tests and the demo).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from osteomet.config import PRESETS, ConfigError, load_preset_or_file
from osteomet.evaluation.predictions import DEFAULT_THRESHOLD_SPLITS, ThresholdSplit
from osteomet.mri.segmentation.qc import MaskQCSettings
from osteomet.utils.cores import default_jobs

#: Devices the models run on (torch device strings).
DEVICE = re.compile(r"cpu|mps|cuda(:\d+)?")
#: Dask scheduler addresses: ``[scheme://]host[:port]``.
SCHEDULER = re.compile(r"((tcp|tls|ucx|ws|wss|inproc)://)?[^\s/:]+(:\d+)?(/\S*)?")


def scheduler_address(scheduler: str | None) -> str | None:
    """A Dask scheduler address as the study configs accept it (``None``: no cluster); a pydantic validator body."""
    if scheduler is not None and not SCHEDULER.fullmatch(scheduler):
        raise ValueError("not a Dask scheduler address: use tcp://host:port (or tls://, "
                         "ucx://, ws://, wss://, inproc://), or leave it out")
    return scheduler


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitSettings(_Section):
    external_centres: list[str] = Field(["C2"], description="centres held out as the external test cohort")
    ratios: tuple[float, float, float] = Field((6, 1, 3), description="train:val:test within the internal centres")


class SegmentationSettings(_Section):
    masks: Literal["unetr", "manifest"] = Field(
        "unetr", description="unetr: train the UNETR on the manifest's masks and use its masks (reviewed ones "
                             "first) for every later stage; manifest: use the manifest's masks as given")
    config: str = Field("default", description="UNETR preset or YAML file")
    max_epochs: int | None = Field(None, ge=1)
    on_flagged: Literal["review", "manifest", "exclude"] = Field(
        "review", description="what a patient whose automatic mask fails the mask QC gets: review (the study stops "
                              "and exports them for 3D Slicer; the rerun after import continues), manifest (the "
                              "manifest's mask; excluded without one) or exclude (left out of every model, recorded)")
    qc: MaskQCSettings = Field(default_factory=MaskQCSettings, description="automatic-mask QC thresholds")


class RadiomicsSettings(_Section):
    params: str = Field("mri", description="pyradiomics parameters: mri, tiny or a YAML file")
    max_features: int = Field(20, ge=1)


class DeepSettings(_Section):
    config: str = Field("default", description="3D-ResNet grid preset or YAML file")
    max_epochs: int | None = Field(None, ge=1)
    oof_folds: int = Field(5, ge=0, description="cross-fitted training predictions (0: in-sample, not advised)")
    pca: int | None = Field(None, ge=1, description="principal components of the deep features (fitted on train)")
    gradcam_patients: int = Field(3, ge=0, description="test patients shown with Grad-CAM")


class FusionSettings(_Section):
    mode: Literal["features", "probabilities"] = "features"
    folds: int = Field(5, ge=2)


class TuningSettings(_Section):
    enabled: bool = Field(True, description="tune the XGBoost models by CV inside the training cohort")
    folds: int = Field(5, ge=2, description="stratified CV folds of the tuning")
    nested_out_of_fold: bool = Field(True, description="the out-of-fold training predictions tune again per fold")
    grid: dict[str, list[float]] = Field(
        default_factory=lambda: {"max_depth": [2, 3, 4], "learning_rate": [0.03, 0.1], "min_child_weight": [1, 5],
                                 "n_estimators": [100, 200, 300]},
        description="XGBoost settings and the values searched (every combination)")

    @field_validator("grid")
    @classmethod
    def _known(cls, grid: dict[str, list[float]]) -> dict[str, list[float]]:
        from osteomet.models.tuning import TuningConfig

        TuningConfig(grid=grid).points()  # unknown names and empty lists are refused here, before any stage runs
        return grid

    def config(self, seed: int):
        """The models' :class:`~osteomet.models.tuning.TuningConfig`, or None when tuning is off."""
        from osteomet.models.tuning import TuningConfig

        if not self.enabled:
            return None
        return TuningConfig(folds=self.folds, grid={k: list(v) for k, v in self.grid.items()},
                            nested_out_of_fold=self.nested_out_of_fold, seed=seed)


class ExplanationSettings(_Section):
    enabled: bool = Field(True, description="SHAP summaries of the XGBoost models, and per patient in predict")
    top_k: int = Field(10, ge=1, description="contributions listed per patient")
    cohort: Literal["train", "val", "test", "external", "all"] = Field(
        "train", description="patients the summary figures show")


class EvaluationSettings(_Section):
    threshold_split: ThresholdSplit = Field(DEFAULT_THRESHOLD_SPLITS, description="patients the Youden threshold is "
                                            "fixed on: train, val, or both ('+' pools them)")
    n_resamples: int = Field(1000, ge=100, description="bootstrap resamples of the CIs")
    patients: Literal["common", "each"] = Field(
        "common", description="common: every model is evaluated (and compared) on the patients of a cohort that "
                              "every model scored, the others listed in the patient flow with the reason; each: "
                              "every model on the patients it scored")


class ConformalSettings(_Section):
    """Mondrian split-conformal prediction sets per model (Vovk et al. 2005), calibrated on validation and
    out-of-fold training patients; coverage measured on test and external (``trust/coverage.csv``)."""

    enabled: bool = Field(True, description="a prediction set per patient and model ({no BM}, {BM} or both = "
                                            "uncertain), reported by predict and measured on test and external")
    alpha: float = Field(0.1, gt=0, lt=1, description="error rate: each class's patients are left out of their "
                                                      "set at most this often (0.1 = 90% confidence per class)")
    too_few: Literal["uncertain", "refuse"] = Field(
        "uncertain", description="a class with fewer calibration patients than alpha needs (floor(1/alpha), 10 at "
                                 "0.1): uncertain (kept in every set, recorded) or refuse (the study stops)")


class RecalibrationSettings(_Section):
    """Logistic recalibration (intercept and slope on logit p) per model, on the conformal stage's patients."""

    enabled: bool = Field(False, description="fit logit p' = a + b logit p on validation and out-of-fold training "
                                             "patients; predict then reports the recalibrated probability too")


class ApplicabilitySettings(_Section):
    """The applicability domain fitted on the training patients (image QC, mask QC, feature distance) and the
    missingness of the clinical variables; every ``predict`` reports ``within`` or ``outside`` with its reasons."""

    enabled: bool = Field(True, description="fit the domain and record the missingness (applicability/); predict "
                                            "checks every patient against them")
    feature_quantile: float = Field(0.99, gt=0.5, lt=1, description="feature-distance threshold: this quantile of "
                                                                    "the cross-validated training distances")
    margin: float = Field(0.25, ge=0, description="each range is the training minimum to maximum widened by this "
                                                  "share of its width on both sides (log scale for intensities)")
    folds: int = Field(5, ge=2, description="cross-validation folds of the distance threshold and of the training "
                                            "patients' own verdicts")
    missing_shift: float = Field(0.1, gt=0, lt=1, description="predict states a missing clinical value that moves "
                                                             "a probability by more than this over its plausible "
                                                             "values")


class StabilitySettings(_Section):
    enabled: bool = Field(True, description="drop radiomics features unstable under mask perturbation before selection")
    icc_threshold: float = Field(0.75, ge=0, le=1, description="lowest ICC(2,1) over the perturbations to keep a feature")
    perturbations: list[Literal["erode", "dilate"]] = Field(["erode", "dilate"], min_length=1,
                                                           description="one-voxel in-plane changes of the tumour mask")
    reviewed_vs_auto: bool = Field(True, description="also compare UNETR vs reviewed masks (when >= 3 have both)")


class HarmonizationSettings(_Section):
    enabled: bool = Field(True, description="reference-batch ComBat of radiomics features, training centre as reference")
    deep_features: bool = Field(False, description="harmonize the deep features for the fusion model as well")


class StudyConfig(_Section):
    """Every setting of ``run mri``; each stage's own settings are recorded in its folder as well."""

    seed: int = 0
    jobs: int = Field(default_factory=default_jobs, ge=1,
                      description="worker processes (preprocessing, radiomics, grid, folds; default: every core)")
    scheduler: str | None = Field(None, description="Dask scheduler address for radiomics and the grid")
    device: str | None = Field(None, description="cpu, cuda, cuda:<index> or mps (default: cuda when available)")
    split: SplitSettings = Field(default_factory=SplitSettings)
    segmentation: SegmentationSettings = Field(default_factory=SegmentationSettings)
    radiomics: RadiomicsSettings = Field(default_factory=RadiomicsSettings)
    stability: StabilitySettings = Field(default_factory=StabilitySettings)
    harmonization: HarmonizationSettings = Field(default_factory=HarmonizationSettings)
    deep: DeepSettings = Field(default_factory=DeepSettings)
    clinical_folds: int = Field(5, ge=2)
    fusion: FusionSettings = Field(default_factory=FusionSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    tuning: TuningSettings = Field(default_factory=TuningSettings)
    explanations: ExplanationSettings = Field(default_factory=ExplanationSettings)
    conformal: ConformalSettings = Field(default_factory=ConformalSettings)
    recalibration: RecalibrationSettings = Field(default_factory=RecalibrationSettings)
    applicability: ApplicabilitySettings = Field(default_factory=ApplicabilitySettings)

    @field_validator("jobs", mode="before")
    @classmethod
    def _jobs(cls, jobs: object) -> object:
        return default_jobs() if jobs is None else jobs  # `jobs: null` in a study.yaml: every core

    @field_validator("device")
    @classmethod
    def _device(cls, device: str | None) -> str | None:
        if device is not None and not DEVICE.fullmatch(device):
            raise ValueError("not a device: use cpu, cuda, cuda:<index> or mps (or leave it out)")
        return device

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, scheduler: str | None) -> str | None:
        return scheduler_address(scheduler)


#: Preset names of each stage-file setting (anything else is a YAML file, relative to the study.yaml).
STAGE_FILES = {("segmentation", "config"): PRESETS, ("radiomics", "params"): ("mri", "ct", "tiny"),
               ("deep", "config"): PRESETS}


def load_study_config(source: str | Path | None = None) -> StudyConfig:
    """A preset name ('default', 'tiny') or a ``study.yaml``; relative stage files resolved against it.

    A stage file that does not exist is refused here, naming the study file and the key, before any stage runs.
    """
    config = load_preset_or_file(source, StudyConfig, package="osteomet.pipeline", filename="study_{}.yaml")
    if source is not None and Path(source).is_file():
        base = Path(source).resolve().parent
        update = {}
        for (section, key), presets in STAGE_FILES.items():
            value = getattr(getattr(config, section), key)
            if value in presets:
                continue
            path = Path(value) if Path(value).is_absolute() else base / value
            if not path.is_file():
                raise ConfigError(f"{source}: {section}.{key}: {value!r} is neither a preset "
                                  f"({', '.join(presets)}) nor an existing YAML file ({path})")
            update[section] = getattr(config, section).model_copy(update={key: str(path)})
        config = config.model_copy(update=update)
    return config


def override_study(config: StudyConfig, **values: object) -> StudyConfig:
    """``config`` with command-line overrides (``--jobs``, ``--device``), validated like the YAML values.

    ``model_copy(update=...)`` would skip the checks, so ``--device cdua`` would reach torch.
    """
    from pydantic import ValidationError

    update = {key: value for key, value in values.items() if value is not None}
    if not update:
        return config
    try:
        return StudyConfig.model_validate({**config.model_dump(), **update})
    except ValidationError as exc:
        problems = "; ".join(f"--{'.'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"invalid option: {problems}") from None
