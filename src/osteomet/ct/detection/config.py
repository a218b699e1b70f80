"""Slice-detection settings (YAML, validated), with the method's defaults and a tiny preset."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from osteomet.config import load_preset_or_file
from osteomet.ct.slices import SliceConfig

Architecture = Literal["efficientnet-b0", "resnet34", "densenet121"]


class DetectionConfig(BaseModel):
    """Everything a detection run depends on; saved beside its checkpoints."""

    model_config = ConfigDict(extra="forbid")

    slices: SliceConfig = Field(default_factory=SliceConfig)
    architectures: list[Architecture] = Field(["efficientnet-b0", "resnet34", "densenet121"], min_length=1)
    batch_size: int = Field(32, ge=1)
    max_epochs: int = Field(60, ge=1)
    patience: int = Field(8, ge=1, description="epochs without a better validation AUC before stopping")
    learning_rate: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    pos_weight: float | Literal["auto"] | None = Field(
        "auto", description="BCE weight of lesion slices; auto = no-lesion / lesion slices in training")
    flip_prob: float = Field(0.5, ge=0, le=1, description="random left-right flip of training slices")
    gradcam_max: int = Field(8, ge=0, description="Grad-CAM overlays kept per kind (true / false positives)")
    seed: int = 0


def load_detection_config(source: str | Path | None = None) -> DetectionConfig:
    """A preset name ('default', 'tiny') or a YAML file."""
    return load_preset_or_file(source, DetectionConfig, package="osteomet.ct", filename="detection_{}.yaml")
