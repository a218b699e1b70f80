"""Slice-detection settings (YAML, validated), with the method's defaults and a tiny preset."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from osteomet.config import load_preset_or_file
from osteomet.ct.training.architectures import ArchitectureSettings, for_architecture
from osteomet.ct.training.schedule import TrainingSchedule

if TYPE_CHECKING:
    from osteomet.ct.detection.tiles import TileSettings

Architecture = Literal["efficientnet-b0", "resnet34", "densenet121"]


class DetectorSettings(ArchitectureSettings):
    """What one detector changes from the shared settings."""

    width: float | None = Field(None, gt=0, le=1, description="channel width factor instead of the shared one")
    tiles_per_epoch: int | None = Field(None, ge=2, description="training tiles per epoch instead of the shared")


class DetectionConfig(TrainingSchedule):
    """Everything a detection run depends on; saved beside its checkpoints."""

    score = "validation AUC"

    architectures: list[Architecture] = Field(["efficientnet-b0", "resnet34", "densenet121"], min_length=1)
    width: float = Field(1.0, gt=0, le=1, description="channel width factor (1.0 = the published network)")
    tile_mm: float = Field(128.0, gt=0, description="side of the square bone tiles the classifiers see (mm)")
    tile_pixel_mm: float = Field(1.0, gt=0, description="pixel size of the tiles (mm): the input is tile_mm / tile_pixel_mm")
    bone_only_mm: float | None = Field(
        5.0, ge=0, description="blank everything farther than this from bone (mm); null keeps the whole tile")
    context_slices: int = Field(0, ge=0, le=4, description=(
        "adjacent slices on each side as extra channels; 0 by default: with 5 mm slices a lesion on the next slice "
        "made the tile classifier call the lesion-free slices beside every lesion"))
    tiles_per_epoch: int = Field(4096, ge=2, description="training tiles drawn per epoch")
    positive_fraction: float = Field(0.5, gt=0, lt=1, description="share of lesion-centred tiles among those drawn")
    bone_centred_fraction: float = Field(0.5, ge=0, le=1, description=(
        "share of the other (not mined) tiles centred on a random bone voxel, jittered as lesion tiles are; "
        "the rest are random tiles of the inference grid"))
    hard_negatives: int = Field(256, ge=0, description=(
        "lesion-free tiles the network scores highest (out of 4x as many random ones), mined each epoch and drawn "
        "as half of the negatives; 0 turns mining off"))
    batch_size: int = Field(32, ge=1)
    max_epochs: int = Field(60, ge=1)
    patience: int = Field(8, ge=1, description="epochs without a better validation AUC before stopping")
    learning_rate: float = Field(1e-4, gt=0)
    augment: bool = Field(False, description="random rotation (15 deg), zoom (15%) and shift (10%) of training tiles")
    slice_smoothing: int = Field(0, ge=0, le=4, description=(
        "neighbouring slices on each side whose scores are averaged into a slice's (same patient); 0 scores each "
        "slice alone, as the method does. The threshold is chosen on the smoothed validation scores"))
    gradcam_max: int = Field(8, ge=0, description="Grad-CAM overlays kept per kind (true / false positives)")
    per_architecture: dict[Architecture, DetectorSettings] = Field(default_factory=dict, description=(
        "settings one architecture changes (width, tiles_per_epoch, hard_negatives)"))

    @model_validator(mode="after")
    def _check(self) -> "DetectionConfig":
        for architecture in self.per_architecture:
            self.for_architecture(architecture)
        return self

    def for_architecture(self, architecture: str) -> "DetectionConfig":
        """The settings one architecture trains and predicts with (the shared ones plus its own)."""
        return for_architecture(self, architecture, DetectorSettings)

    @property
    def in_channels(self) -> int:
        return 2 * self.context_slices + 1

    def tiles(self) -> "TileSettings":
        from osteomet.ct.detection.tiles import TileSettings

        return TileSettings(self.tile_mm, self.tile_pixel_mm, self.context_slices, self.bone_only_mm)


def load_detection_config(source: str | Path | None = None) -> DetectionConfig:
    """A preset name ('default', 'tiny') or a YAML file."""
    return load_preset_or_file(source, DetectionConfig, package="osteomet.ct.detection", filename="{}.yaml")
