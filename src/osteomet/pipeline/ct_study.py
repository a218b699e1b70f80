"""The settings of a whole CT study (``ct_study.yaml``): which models and stages `osteomet run ct` runs.

Two studies ship with the package: ``tiny`` (one small detector and segmenter, few epochs, for
CPU trials, tests and the demo) and ``default`` (the published setting: the three detectors and
the three MONAI segmenters at full size, for a GPU). Model settings name a preset or a YAML file
of `ct detect train` / `ct segment train`, read relative to the ``ct_study.yaml`` that names them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from osteomet.config import ConfigError, load_preset_or_file
from osteomet.pipeline.study import DEVICE


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


class CTStudyConfig(_Section):
    seed: int = 0
    device: str | None = Field(None, pattern=DEVICE.pattern, description="cpu or cuda (default: cuda when present)")
    split: CTSplitSettings = Field(default_factory=CTSplitSettings)
    detection: CTModelSettings = Field(default_factory=CTModelSettings)
    segmentation: CTModelSettings = Field(default_factory=CTModelSettings)
    lesions: CTLesionSettings = Field(default_factory=CTLesionSettings)
    icc: CTICCSettings = Field(default_factory=CTICCSettings)

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
    return config
