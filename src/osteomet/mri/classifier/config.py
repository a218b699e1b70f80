"""3D-ResNet classifier settings (YAML, validated): the grid to search and how each run trains."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from osteomet.config import load_preset_or_file

Optimizer = Literal["sgd", "adam", "adamw", "rmsprop"]
DEPTHS = (10, 18, 34, 50, 101, 152, 200)  # the depths monai.networks.nets provides


class ResNetConfig(BaseModel):
    """Shape of the MONAI ResNet besides its depth (same for every grid cell)."""

    model_config = ConfigDict(extra="forbid")

    widen_factor: float = Field(1.0, gt=0, description="channel multiplier (1.0 = 64..512 channels)")
    conv1_t_size: int = Field(7, ge=1, description="first convolution kernel")
    conv1_t_stride: int = Field(1, ge=1, description="first convolution stride")
    no_max_pool: bool = False
    shortcut_type: Literal["A", "B"] = "B"
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the pooled features before the final layer")


class ClassifierConfig(BaseModel):
    """Everything a classifier grid depends on; saved in the grid folder and in each run."""

    model_config = ConfigDict(extra="forbid")

    depths: list[int] = Field([18, 34, 50, 101], min_length=1)
    learning_rates: list[float] = Field([1e-2, 1e-3, 1e-4], min_length=1)
    optimizers: list[Optimizer] = Field(["sgd", "adam", "adamw", "rmsprop"], min_length=1)
    resnet: ResNetConfig = Field(default_factory=ResNetConfig)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(8, ge=1)
    max_epochs: int = Field(100, ge=1)
    patience: int = Field(10, ge=1, description="epochs without a better validation AUC before stopping")
    min_epochs: int = Field(0, ge=0, description="epochs before a checkpoint can be the best or training stop "
                            "(the first epochs' AUCs on a small validation cohort are mostly chance)")
    selection_smoothing: float = Field(0.0, ge=0, lt=1, description="weight of the past in the exponential moving "
                                       "average of the validation AUC that early stopping and the grid use "
                                       "(nnU-Net smooths its pseudo-Dice with 0.9); 0 = the epoch's own AUC")
    scheduler: Literal["cosine", "plateau", "none"] = "cosine"
    class_weighting: bool = Field(True, description="BCE pos_weight = negatives / positives of the training set")
    flip_prob: float = Field(0.5, ge=0, le=1, description="left-right flip")
    rotate90_prob: float = Field(0.5, ge=0, le=1, description="90-degree rotation about the slice axis")
    intensity_scale: float = Field(0.1, ge=0, description="random intensity scaling range (+/-)")
    intensity_shift: float = Field(0.1, ge=0, description="random intensity shift range (+/-, SD units)")
    intensity_prob: float = Field(0.5, ge=0, le=1)
    shift_voxels: int = Field(0, ge=0, description="random translation up to this many voxels in-plane (half of it "
                              "across slices), zero-padded: the tumour is not always at the same voxel")
    noise_std: float = Field(0.0, ge=0, description="largest SD of added Gaussian noise; each crop draws its SD "
                             "uniformly from 0 to this (MONAI RandGaussianNoise; the crops are z-scored)")
    noise_prob: float = Field(0.5, ge=0, le=1)
    threshold: float = Field(0.5, gt=0, lt=1, description="probability cut-off of the validation accuracy")
    num_workers: int = Field(0, ge=0)
    precision: Literal["auto", "fp32", "bf16"] = Field("fp32", description=(
        "training arithmetic: fp32, bf16 (autocast), auto (bf16 where the CPU or GPU does it natively; "
        "osteomet.utils.precision)"))
    seed: int = 0

    @field_validator("depths")
    @classmethod
    def _depths(cls, value: list[int]) -> list[int]:
        unknown = [d for d in value if d not in DEPTHS]
        if unknown:
            raise ValueError(f"ResNet depth(s) {unknown} do not exist; choose from {list(DEPTHS)}")
        return _unique(value)

    @field_validator("learning_rates")
    @classmethod
    def _rates(cls, value: list[float]) -> list[float]:
        if any(not lr > 0 for lr in value):
            raise ValueError(f"learning rates must be positive, got {value}")
        return _unique(value)

    @field_validator("optimizers")
    @classmethod
    def _optimizers(cls, value: list[str]) -> list[str]:
        return _unique(value)


def _unique(values: list) -> list:
    seen: list = []
    for v in values:
        if v in seen:
            raise ValueError(f"{v!r} is listed twice")
        seen.append(v)
    return seen


def load_classifier_config(source: str | Path | None = None) -> ClassifierConfig:
    """A preset name ('default', 'tiny') or a YAML file."""
    return load_preset_or_file(source, ClassifierConfig, package="osteomet.mri.classifier", filename="{}.yaml")
