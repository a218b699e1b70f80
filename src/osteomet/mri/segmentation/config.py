"""UNETR segmentation settings (YAML, validated), with the method's defaults and a tiny preset."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from osteomet.config import load_preset_or_file
from osteomet.errors import InputError


class UNETRConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feature_size: int = 16
    hidden_size: int = 768
    mlp_dim: int = 3072
    num_heads: int = 12
    dropout_rate: float = 0.0


class SegmentationConfig(BaseModel):
    """Everything a segmentation run depends on; saved beside its checkpoints."""

    model_config = ConfigDict(extra="forbid")

    seg_size: tuple[int, int, int] = Field((224, 224, 64), description="preprocessing grid, x y z")
    patch_size: tuple[int, int, int] = Field((96, 96, 32), description="UNETR input / sliding-window ROI, x y z")
    unetr: UNETRConfig = Field(default_factory=UNETRConfig)
    batch_size: int = 2
    samples_per_case: int = Field(2, description="patches drawn per case and step")
    positive_fraction: float = Field(0.5, ge=0, le=1, description="share of patches centred on tumour voxels")
    foreground_prior: float = Field(0.01, gt=0, lt=1, description="initial tumour probability of the output layer")
    dice_include_background: bool = Field(False, description="Dice term over background too (tumours are tiny)")
    max_epochs: int = 300
    patience: int = Field(10, description="epochs without a better validation Dice before stopping")
    learning_rate: float = 1e-4
    weight_decay: float = 1e-5
    scheduler: Literal["cosine", "plateau", "none"] = "cosine"
    rotate90_prob: float = 0.5
    intensity_scale: float = Field(0.1, description="random intensity scaling factor range (+/-)")
    intensity_shift: float = Field(0.1, description="random intensity shift range (+/-, in SD units)")
    intensity_prob: float = 0.5
    sw_overlap: float = 0.5
    sw_batch_size: int = 4
    keep_largest_component: bool = True
    num_workers: int = 0
    amp: bool = Field(True, description="mixed precision when CUDA is present (ignored on CPU)")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> "SegmentationConfig":
        x, y, z = self.patch_size
        if x != y:
            raise InputError(f"patch_size must be square in-plane (90-degree rotations), got {self.patch_size}")
        if any(p % 16 for p in self.patch_size):
            raise InputError(f"patch_size must be divisible by 16 (UNETR's patch embedding), got {self.patch_size}")
        if any(p > s for p, s in zip(self.patch_size, self.seg_size)):
            raise InputError(f"patch_size {self.patch_size} is larger than seg_size {self.seg_size}")
        if self.unetr.hidden_size % self.unetr.num_heads:
            raise InputError("unetr.hidden_size must be divisible by unetr.num_heads")
        return self


def load_segmentation_config(source: str | Path | None = None) -> SegmentationConfig:
    """A preset name ('default', 'tiny') or a YAML file."""
    return load_preset_or_file(source, SegmentationConfig, package="osteomet.mri.segmentation", filename="{}.yaml")
