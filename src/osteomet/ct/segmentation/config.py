"""Lesion-segmentation settings (YAML, validated), with the method's defaults and a tiny preset."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from osteomet.config import load_preset_or_file
from osteomet.ct.training.architectures import ArchitectureSettings, for_architecture
from osteomet.ct.training.schedule import TrainingSchedule
from osteomet.errors import InputError

Architecture = Literal["unet", "resunet", "attention_unet"]


class SegmenterSettings(ArchitectureSettings):
    """What one segmentation network changes from the shared settings."""

    channels: tuple[int, ...] | None = Field(None, description="feature maps per level instead of the shared ones")
    patches_per_epoch: int | None = Field(None, ge=1, description="training patches per epoch instead of the shared")


class CTSegmentationConfig(TrainingSchedule):
    """Everything a CT segmentation run depends on; saved beside its checkpoints."""

    score = "validation Dice"

    architectures: list[Architecture] = Field(["unet", "resunet", "attention_unet"], min_length=1)
    channels: tuple[int, ...] = Field((32, 64, 128, 256, 512), description="feature maps per UNet level")
    strides: tuple[int, ...] = Field((2, 2, 2, 2), description="down-sampling between levels")
    patch_size: int = Field(128, ge=16, description="square training patch and sliding-window size (pixels)")
    context_slices: int = Field(1, ge=0, le=4, description="adjacent slices on each side given as extra channels")
    lesion_fraction: float = Field(0.5, ge=0, le=1, description="share of patches centred on a lesion voxel")
    anywhere_fraction: float = Field(0.5, ge=0, le=1, description="share of the other patches centred anywhere in "
                                     "the bone crop (the rest on bone): inference windows also show air and organs")
    hard_negatives: int = Field(0, ge=0, description="patches with the most false-positive lesion mined each epoch "
                                "(out of 4x as many random ones) and drawn as half of the non-lesion patches")
    bone_only_mm: float | None = Field(5.0, gt=0, description="lesion probability set to 0 farther than this from "
                                       "bone (lesions are in bone; null keeps the whole crop)")
    patches_per_epoch: int = Field(2000, ge=1, description="training patches drawn per epoch")
    augment: bool = Field(False, description="random rotation (15 degrees), zoom (15%) and shift of each training "
                          "patch with its labels, and contrast (10%) and brightness (3% of the window) jitter")
    per_architecture: dict[Architecture, SegmenterSettings] = Field(default_factory=dict, description=(
        "settings one architecture changes (channels, patches_per_epoch, hard_negatives)"))
    foreground_prior: float = Field(0.01, gt=0, lt=1, description="initial lesion probability of the output layer")
    window_overlap: float = Field(0.25, ge=0, lt=1, description="overlap of the sliding windows at inference")

    @model_validator(mode="after")
    def _check(self) -> "CTSegmentationConfig":
        if len(self.strides) != len(self.channels) - 1:
            raise InputError(f"strides needs one entry fewer than channels, got {len(self.strides)} and {len(self.channels)}")
        factor = 1
        for s in self.strides:
            factor *= s
        if self.patch_size % factor:
            raise InputError(f"patch_size {self.patch_size} is not divisible by the total stride {factor}")
        for architecture in self.per_architecture:
            self.for_architecture(architecture)  # its channels must fit the strides too
        return self

    def for_architecture(self, architecture: str) -> "CTSegmentationConfig":
        """The settings one architecture trains and predicts with (the shared ones plus its own)."""
        return for_architecture(self, architecture, SegmenterSettings)

    @property
    def in_channels(self) -> int:
        return 2 * self.context_slices + 1


def load_segmentation_config(source: str | Path | None = None) -> CTSegmentationConfig:
    """A preset name ('default', 'tiny') or a YAML file."""
    return load_preset_or_file(source, CTSegmentationConfig, package="osteomet.ct.segmentation", filename="{}.yaml")
