"""The classifier's inputs: preprocessed tumour ROI crops, their mask source, and augmentation.

The crops are ``roi_image.npy`` (float32, channels high-b DWI, T2, ADC; Z x Y x X) written by
``osteomet preprocess mri``, which cuts them around the mask chosen by the one resolver
(:func:`osteomet.data.masks.apply_masks`: reviewed > auto > manifest). This module
records that choice per patient and refuses crops cut around a different mask than the
resolver picks now (a review imported after preprocessing would otherwise be ignored).

Augmentation is the preprocessing/segmentation stage's (90-degree rotation about the slice
axis, random intensity scale and shift) plus a left-right flip; its randomness is a pure
function of (seed, epoch, case index), so reruns and resumed runs draw the same.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from osteomet.data.manifest import Manifest
from osteomet.errors import InputError, MissingInputError
from osteomet.layout import INDEX
from osteomet.mri.classifier.config import ClassifierConfig
from osteomet.mri.preprocess import load_case


def roi_patients(preprocessed: str | Path, manifest: Manifest, segdir: str | Path | None = None) -> pd.DataFrame:
    """One row per manifest patient: split, whether a ROI crop exists, and the mask it was cut from.

    ``mask_source`` is ``reviewed``, ``auto``, ``manifest`` or ``none``. With ``segdir`` the
    resolver decides and a crop cut from another mask raises :class:`InputError`; without it
    the source is read off the path the preprocessing recorded.
    """
    root = Path(preprocessed)
    index_path = root / INDEX
    if not index_path.exists():
        raise MissingInputError(f"{root}: no index.csv; run `osteomet preprocess mri` first")
    index = pd.read_csv(index_path, dtype={"patient_id": str}).set_index("patient_id")
    expected = None
    if segdir is not None:
        from osteomet.data.masks import mask_sources

        expected = mask_sources(manifest, segdir).set_index("patient_id")
    rows, stale = [], []
    for record in manifest:
        pid = record.patient_id
        folder = root / "cases" / pid
        has_roi = pid in index.index and index.loc[pid, "status"] != "failed" and (folder / "roi_image.npy").exists()
        used = None
        if has_roi:
            _, transform = load_case(root, pid)
            used = transform.get("mask")
        if expected is not None:
            source, chosen = expected.loc[pid, "source"], expected.loc[pid, "mask"]
            if has_roi and not _same_file(used, chosen):
                stale.append(f"{pid}: crop cut from {used}, the resolver picks {chosen} ({source})")
        else:
            source = _source_of(used, record.mask)
        rows.append({"patient_id": pid, "split": record.split, "has_roi": bool(has_roi),
                     "mask_source": source if has_roi else "none", "mask": used})
    if stale:
        listing = "; ".join(stale[:5]) + (f"; and {len(stale) - 5} more" if len(stale) > 5 else "")
        raise InputError(f"{root}: {len(stale)} ROI crop(s) were cut from another mask than the one to use now "
                         f"({listing}); rerun `osteomet preprocess mri --segdir {segdir}` into this folder")
    return pd.DataFrame(rows, columns=["patient_id", "split", "has_roi", "mask_source", "mask"])


def _same_file(a: str | None, b: str | None) -> bool:
    """Whether the crop's recorded mask ``a`` is the mask ``b`` the resolver picks now: the same path, the same
    contents (a copied run directory), or, when ``a`` is gone (a moved one), the same source folder and name."""
    import filecmp

    if a is None or b is None or (isinstance(b, float) and np.isnan(b)):
        return a is None and (b is None or isinstance(b, float))
    recorded, chosen = Path(a), Path(b)
    if recorded.resolve() == chosen.resolve():
        return True
    if recorded.is_file() and chosen.is_file():
        return filecmp.cmp(recorded, chosen, shallow=False)
    return not recorded.exists() and recorded.parts[-2:] == chosen.parts[-2:]


def _source_of(used: str | None, manifest_mask: Path | None) -> str:
    if used is None:
        return "none"
    parent = Path(used).parent.name
    if parent in ("reviewed", "auto"):
        return parent
    if manifest_mask is not None and Path(used).resolve() == Path(manifest_mask).resolve():
        return "manifest"
    return "unknown"


def split_ids(patients: pd.DataFrame, split: str) -> list[str]:
    """Patients of ``split`` that have a ROI crop, in manifest order."""
    part = patients[(patients["split"] == split) & patients["has_roi"]]
    return part["patient_id"].tolist()


def read_roi(root: str | Path, patient_id: str) -> np.ndarray:
    """The ROI crop of a patient (C x Z x Y x X float32)."""
    arrays, _ = load_case(root, patient_id)
    if "roi_image" not in arrays:
        raise MissingInputError(f"{Path(root) / 'cases' / patient_id}: patient {patient_id!r} has no ROI crop "
                                f"(no tumour mask when it was preprocessed)")
    image = np.array(arrays["roi_image"], dtype=np.float32)  # a private, writable copy
    if image.ndim != 4 or image.shape[0] != 3:
        raise InputError(f"patient {patient_id!r}: ROI crop has shape {image.shape}, expected 3 x Z x Y x X")
    return image


def augmentations(config: ClassifierConfig, shape: tuple[int, ...]):
    """MONAI array transforms on a C x Z x Y x X crop: left-right flip, in-plane 90-degree rotation,
    random translation (zero-padded, then cropped back to ``shape``), random intensity scale
    and shift, Gaussian noise.

    Translation and noise matter most on small cohorts: without them a 3D ResNet fits 55
    training crops perfectly within ten epochs and its held-out AUC falls back towards chance.
    """
    from monai.transforms import (
        BorderPad,
        Compose,
        RandFlip,
        RandGaussianNoise,
        RandRotate90,
        RandScaleIntensity,
        RandShiftIntensity,
        RandSpatialCrop,
    )

    steps = [RandFlip(prob=config.flip_prob, spatial_axis=2),
             RandRotate90(prob=config.rotate90_prob, max_k=3, spatial_axes=(1, 2))]
    if config.shift_voxels > 0:
        s = config.shift_voxels
        steps += [BorderPad(spatial_border=[s // 2, s, s], mode="constant"),
                  RandSpatialCrop(roi_size=list(shape[1:]), random_center=True, random_size=False)]
    steps += [RandScaleIntensity(factors=config.intensity_scale, prob=config.intensity_prob),
              RandShiftIntensity(offsets=config.intensity_shift, prob=config.intensity_prob)]
    if config.noise_std > 0:
        steps.append(RandGaussianNoise(prob=config.noise_prob, mean=0.0, std=config.noise_std))
    return Compose(steps)


def _seed(*parts: int) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little")


class RoiDataset(Dataset):
    """(crop, target) pairs; augmented when ``augment`` (training), as stored otherwise."""

    def __init__(self, root: str | Path, patient_ids: list[str], targets: list[float] | None,
                 config: ClassifierConfig, *, augment: bool):
        self.root, self.patient_ids, self.config = Path(root), list(patient_ids), config
        self.targets = list(targets) if targets is not None else [float("nan")] * len(self.patient_ids)
        self.augment, self.epoch = augment, 0
        self._images = [read_roi(self.root, pid) for pid in self.patient_ids]  # small: 1.5 MB per patient
        shapes = {im.shape for im in self._images}
        if len(shapes) > 1:
            raise InputError(f"{root}: ROI crops differ in shape ({sorted(shapes)}); preprocess with one --roi-size")
        shape = next(iter(shapes), None)  # None: no patients
        if augment and config.rotate90_prob > 0 and shape and shape[2] != shape[3]:
            raise InputError(f"{root}: ROI crops {shape} are not square in-plane; set rotate90_prob: 0")
        self.transform = augmentations(config, shape) if augment and shape else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.patient_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(self._images[index])
        if self.transform is not None:
            self.transform.set_random_state(seed=_seed(self.config.seed, self.epoch, index))
            image = self.transform(image)
            image = image.as_tensor() if hasattr(image, "as_tensor") else image
        return image.contiguous(), torch.tensor([self.targets[index]], dtype=torch.float32)
