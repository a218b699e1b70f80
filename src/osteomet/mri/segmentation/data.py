"""Training data for the UNETR: preprocessed cases, patch sampling and MONAI augmentation.

Randomness is a pure function of (seed, epoch, case index), so a resumed run draws exactly
the patches and augmentations an uninterrupted one would, whatever the worker count.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from osteomet.mri.preprocess import load_case
from osteomet.mri.segmentation.config import SegmentationConfig


def augmentations(config: SegmentationConfig):
    """MONAI transforms on dict(image=C x Z x Y x X, label=1 x Z x Y x X): patch sampling,
    90/180/270-degree rotation about the slice axis, random intensity scale and shift."""
    from monai.transforms import (
        Compose,
        RandCropByPosNegLabeld,
        RandRotate90d,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    x, y, z = config.patch_size
    return Compose([
        RandCropByPosNegLabeld(keys=("image", "label"), label_key="label", spatial_size=(z, y, x),
                               pos=config.positive_fraction, neg=1.0 - config.positive_fraction,
                               num_samples=config.samples_per_case, allow_smaller=False),
        RandRotate90d(keys=("image", "label"), prob=config.rotate90_prob, max_k=3, spatial_axes=(1, 2)),
        RandScaleIntensityd(keys="image", factors=config.intensity_scale, prob=config.intensity_prob),
        RandShiftIntensityd(keys="image", offsets=config.intensity_shift, prob=config.intensity_prob),
    ])


def _seed(*parts: int) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little")


class PatchDataset(Dataset):
    """Items are lists of ``samples_per_case`` augmented patches from one case."""

    def __init__(self, root: str | Path, patient_ids: list[str], config: SegmentationConfig):
        self.root, self.patient_ids, self.config = Path(root), list(patient_ids), config
        self.epoch = 0
        self.transform = augmentations(config)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.patient_ids)

    def __getitem__(self, index: int) -> list[dict[str, torch.Tensor]]:
        arrays, _ = load_case(self.root, self.patient_ids[index])
        item = {"image": torch.from_numpy(np.asarray(arrays["seg_image"], dtype=np.float32)),
                "label": torch.from_numpy(np.asarray(arrays["seg_mask"], dtype=np.float32))[None]}
        self.transform.set_random_state(seed=_seed(self.config.seed, self.epoch, index))
        samples = self.transform(item)
        return [{"image": s["image"].as_tensor() if hasattr(s["image"], "as_tensor") else s["image"],
                 "label": s["label"].as_tensor() if hasattr(s["label"], "as_tensor") else s["label"]} for s in samples]


def collate_patches(batch: list[list[dict[str, torch.Tensor]]]) -> dict[str, torch.Tensor]:
    flat = [sample for item in batch for sample in item]
    return {"image": torch.stack([s["image"] for s in flat]), "label": torch.stack([s["label"] for s in flat])}


def full_volume(root: str | Path, patient_id: str) -> tuple[torch.Tensor, np.ndarray | None, dict[str, Any]]:
    """Whole preprocessed volume (1 x C x Z x Y x X), its mask if any, and its transform."""
    arrays, transform = load_case(root, patient_id)
    image = torch.from_numpy(np.asarray(arrays["seg_image"], dtype=np.float32))[None]
    mask = np.asarray(arrays["seg_mask"]) if "seg_mask" in arrays else None
    return image, mask, transform
