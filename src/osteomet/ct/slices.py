"""CT slice dataset: bone-windowed axial slices, labelled from the lesion mask, split by patient.

Per patient (cached, so training never re-reads volumes):

1. the CT is read (DICOM series or volume file), checked to be in Hounsfield units and
   reoriented to LPS, so the third array axis is always the axial slice axis whatever the
   file's orientation (a pure permutation/flip: no interpolation);
2. every axial slice is resampled in-plane to ``inplane_size`` x ``inplane_size`` pixels over
   the same physical field of view (slices stay where they are; Gaussian anti-aliasing
   when shrinking), then mapped through the bone window (default level 400 HU, width
   1800 HU, i.e. -500..1300 HU) to [0, 1];
3. the lesion mask (on the CT's grid, checked) labels each slice: lesion when the slice of
   the original mask holds at least ``min_lesion_voxels`` lesion voxels; the mask is also
   resampled onto the slice grid for segmentation.

Files: ``ROOT/cases/<patient_id>/image.npy`` (float16, Z x N x N), ``mask.npy`` (uint8),
``slices.json`` (geometries, labels, settings and the cache key: content hash of the input
files and settings; written last, so it marks the case complete), then ``ROOT/index.csv``
(patient_id, slice, label, lesion_pixels, split), ``patients.csv`` and ``class_balance.csv``.

Splits are by patient only: 80:20 train/test by default, stratified by whether the
patient has any lesion, validation patients taken from train; a manifest ``split`` column
is respected. :func:`check_patient_split` refuses any table in which one patient appears
in two splits.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import SimpleITK as sitk
from pydantic import BaseModel, ConfigDict, Field, model_validator

from osteomet.data.grids import array_on, mask_to, resample_to, same_extent_grid
from osteomet.data.io import Geometry, ImageError, read_image, read_mask
from osteomet.data.manifest import Manifest
from osteomet.data.splits import assign_splits
from osteomet.errors import InputError, LeakageError, MissingInputError
from osteomet.utils.files import atomic_path, sha256_path, write_json_atomic, write_text_atomic

SLICES_VERSION = "1"
#: A CT in Hounsfield units always contains air (about -1000 HU) somewhere in the field of view.
MIN_AIR_HU = -500.0


class CTIntensityError(ImageError):
    """The CT's values do not look like Hounsfield units (the message names the file)."""


class SplitLeakageError(LeakageError):
    """A patient appears in more than one split (slices of one patient must never be split)."""


class SliceConfig(BaseModel):
    """Settings of the slice dataset (all part of the cache key)."""

    model_config = ConfigDict(extra="forbid")

    window_level: float = Field(400.0, description="bone window centre (HU)")
    window_width: float = Field(1800.0, gt=0, description="bone window width (HU): level +/- width/2 maps to 0..1")
    inplane_size: int = Field(256, ge=16, le=1024, description="in-plane matrix of every slice (same field of view)")
    min_lesion_voxels: int = Field(1, ge=1, description="lesion voxels in a slice of the mask to label it 'lesion'")
    test_fraction: float = Field(0.2, ge=0, lt=1, description="share of patients held out for testing")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="share of the training patients used for validation")
    split_seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> "SliceConfig":
        if self.inplane_size % 16:
            raise InputError(f"inplane_size must be divisible by 16 (network down-sampling), got {self.inplane_size}")
        return self

    def cache_settings(self) -> str:
        """Only what changes the arrays: a new split does not invalidate the cache."""
        return self.model_dump_json(include={"window_level", "window_width", "inplane_size", "min_lesion_voxels"})


# ---------------------------------------------------------------------------------------------
# Intensities and grids
# ---------------------------------------------------------------------------------------------


def check_hounsfield(image: sitk.Image, path: str | Path) -> None:
    """Raise :class:`CTIntensityError` when ``image`` cannot be a CT in HU (normalised or raw stored values)."""
    array = sitk.GetArrayViewFromImage(image)
    lo, hi = float(array.min()), float(array.max())
    if lo >= 0.0 and hi <= 1.0:
        raise CTIntensityError(f"{path}: CT values all lie in [0, 1] (min {lo:g}, max {hi:g}): the image looks "
                               "normalised; give the CT in Hounsfield units")
    if lo > MIN_AIR_HU:
        raise CTIntensityError(
            f"{path}: CT is not in Hounsfield units: minimum {lo:g} (max {hi:g}) has no air value below "
            f"{MIN_AIR_HU:g} HU; raw stored values (e.g. 0..4095) need the DICOM rescale slope/intercept applied")


def bone_window(hu: np.ndarray, level: float = 400.0, width: float = 1800.0) -> np.ndarray:
    """HU -> [0, 1] through the window ``level +/- width/2`` (float32)."""
    low = level - width / 2.0
    return np.clip((np.asarray(hu, np.float32) - np.float32(low)) / np.float32(width), 0.0, 1.0)


def slice_grid(oriented: sitk.Image, inplane_size: int) -> Geometry:
    """``inplane_size`` squared pixels over the CT's in-plane field of view; slice positions unchanged."""
    nz = oriented.GetSize()[2]
    return same_extent_grid(oriented, (inplane_size, inplane_size, nz))


def _antialias(image: sitk.Image, grid: Geometry) -> sitk.Image:
    """Gaussian smoothing before shrinking in-plane (sigma = half the new pixel size where it grows)."""
    old = np.asarray(image.GetSpacing(), float)
    new = np.asarray(grid.spacing, float)
    sigma = [float(0.5 * np.sqrt(max(n * n - o * o, 0.0))) if i < 2 else 0.0
             for i, (o, n) in enumerate(zip(old, new))]
    if max(sigma) == 0:
        return image
    return sitk.DiscreteGaussian(image, variance=[s * s for s in sigma], maximumKernelWidth=64, useImageSpacing=True)


def load_ct(path: str | Path) -> sitk.Image:
    """A CT in HU as float32 (checked), on its own grid."""
    image = read_image(path, pixel_type=sitk.sitkFloat32)
    check_hounsfield(image, path)
    return image


def prepare_ct(ct: sitk.Image, config: SliceConfig, mask: sitk.Image | None = None
               ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Windowed slices (and mask) on the slice grid plus the geometry record (no file I/O)."""
    oriented = sitk.DICOMOrient(ct, "LPS")
    grid = slice_grid(oriented, config.inplane_size)
    hu = sitk.GetArrayFromImage(resample_to(_antialias(oriented, grid), grid, default=-1024.0))
    arrays = {"image": bone_window(hu, config.window_level, config.window_width).astype(np.float16)}
    meta: dict[str, Any] = {"ct_geometry": Geometry.of(ct).to_dict(), "slice_geometry": grid.to_dict(),
                            "n_slices": int(grid.size[2]), "labels": None, "lesion_voxels": None}
    if mask is not None:
        mask_oriented = sitk.DICOMOrient(mask, "LPS")
        voxels = sitk.GetArrayViewFromImage(mask_oriented).reshape(grid.size[2], -1).sum(axis=1)
        arrays["mask"] = sitk.GetArrayFromImage(mask_to(mask_oriented, grid)).astype(np.uint8)
        meta["lesion_voxels"] = [int(v) for v in voxels]
        meta["labels"] = [int(v >= config.min_lesion_voxels) for v in voxels]
    return arrays, meta


def to_ct_geometry(slice_probabilities: np.ndarray, meta: dict[str, Any]) -> sitk.Image:
    """A (Z x N x N) probability stack on the slice grid -> 0/1 mask on the CT's own grid (linear, >= 0.5)."""
    grid = Geometry.from_dict(meta["slice_geometry"])
    target = Geometry.from_dict(meta["ct_geometry"])
    soft = resample_to(array_on(grid, np.asarray(slice_probabilities, np.float32)), target)
    return sitk.Cast(soft >= 0.5, sitk.sitkUInt8)


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------


def cache_key(ct_path: str | Path, mask_path: str | Path | None, config: SliceConfig) -> str:
    digest = hashlib.sha256()
    digest.update(f"ct:{sha256_path(ct_path)};mask:{sha256_path(mask_path) if mask_path else '-'};".encode())
    digest.update(config.cache_settings().encode())
    digest.update(f"slices={SLICES_VERSION}".encode())
    return digest.hexdigest()


def load_record(ct_path: str | Path, mask_path: str | Path | None) -> tuple[sitk.Image, sitk.Image | None]:
    """CT (HU-checked) and its lesion mask, refused when the mask is not on the CT's grid."""
    ct = load_ct(ct_path)
    mask = None
    if mask_path is not None:
        mask = read_mask(mask_path, reference=ct, reference_name=ct_path, allow_empty=True)
    return ct, mask


def cache_case(root: str | Path, patient_id: str, ct_path: str | Path, mask_path: str | Path | None,
               config: SliceConfig) -> str:
    """Write (or keep) one patient's cached slices; returns 'cached' or 'processed'."""
    folder = Path(root) / "cases" / patient_id
    key = cache_key(ct_path, mask_path, config)
    previous = _read_json(folder / "slices.json")
    if previous and previous.get("cache_key") == key:
        return "cached"
    ct, mask = load_record(ct_path, mask_path)
    arrays, meta = prepare_ct(ct, config, mask)
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        with atomic_path(folder / f"{name}.npy") as tmp:
            np.save(tmp, array, allow_pickle=False)
    if "mask" not in arrays:
        (folder / "mask.npy").unlink(missing_ok=True)
    meta.update({"patient_id": patient_id, "ct": str(ct_path), "lesion_mask": str(mask_path) if mask_path else None,
                 "config": json.loads(config.cache_settings()), "cache_key": key})
    write_json_atomic(folder / "slices.json", meta)
    return "processed"


def load_case(root: str | Path, patient_id: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Cached arrays (memory-mapped) and geometry record of one patient."""
    folder = Path(root) / "cases" / patient_id
    meta = _read_json(folder / "slices.json")
    if meta is None:
        raise MissingInputError(f"{folder}: patient {patient_id!r} has no cached slices (no slices.json)")
    arrays = {p.stem: np.load(p, mmap_mode="r", allow_pickle=False) for p in folder.glob("*.npy")}
    return arrays, meta


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------


def check_patient_split(table: pd.DataFrame) -> None:
    """Raise :class:`SplitLeakageError` if any patient appears under more than one split."""
    splits = table.groupby("patient_id")["split"].nunique(dropna=False)
    leaking = splits[splits > 1]
    if len(leaking):
        detail = ", ".join(f"{pid} ({'/'.join(sorted(map(str, table.loc[table.patient_id == pid, 'split'].unique())))})"
                           for pid in leaking.index[:10])
        raise SplitLeakageError(f"{len(leaking)} patient(s) appear in more than one split: {detail}; "
                                "slices of one patient must stay in one split")


def patient_splits(patients: pd.DataFrame, config: SliceConfig) -> pd.Series:
    """Split per patient (index aligned): the manifest's where given, else 80:20 train/test, val from train.

    ``patients`` has ``patient_id``, ``split`` (may be empty) and ``label`` (any lesion; may be
    missing). Stratified by label; a manifest that gives train/test but no val gets its
    validation patients drawn from its training patients.
    """
    given = patients["split"]
    if given.notna().all():
        out = given.astype(object).copy()
        if not (out == "val").any():
            train = patients[out == "train"]
            if len(train) >= 2:
                sub = assign_splits(train, ratios=(1 - config.val_fraction, config.val_fraction, 0.0),
                                    seed=config.split_seed)
                out[sub.index] = sub
        return out
    if given.notna().any():
        missing = ", ".join(patients.loc[given.isna(), "patient_id"].astype(str).tolist()[:10])
        raise InputError(f"the manifest gives a split for some patients but not for: {missing}; "
                         "give every patient a split or none")
    t, v = config.test_fraction, config.val_fraction
    return assign_splits(patients, ratios=((1 - t) * (1 - v), (1 - t) * v, t), seed=config.split_seed)


def class_balance(index: pd.DataFrame) -> pd.DataFrame:
    """Per split: patients, patients with a lesion, slices, lesion slices and their share."""
    rows = []
    for split, group in index.groupby("split", sort=False):
        per_patient = group.groupby("patient_id")["label"].max()
        rows.append({"split": split, "patients": int(per_patient.size),
                     "patients_with_lesion": int((per_patient == 1).sum()), "slices": int(len(group)),
                     "lesion_slices": int((group["label"] == 1).sum()),
                     "no_lesion_slices": int((group["label"] == 0).sum()),
                     "lesion_fraction": float((group["label"] == 1).mean())})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------------


def cache_cohort(manifest: Manifest, root: str | Path, config: SliceConfig, *,
                 progress: Callable[[], None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cache every patient's slices under ``root``; return the slice rows and the patient rows (no split).

    Patients without a lesion mask get ``label`` NaN (usable for prediction, not training).
    """
    if manifest.kind != "ct":
        raise InputError(f"{manifest.path}: expected a CT manifest (ct, lesion_mask columns), got a {manifest.kind} one")
    rows, patients = [], []
    for record in manifest:
        status = cache_case(root, record.patient_id, record.ct, record.lesion_mask, config)
        _, meta = load_case(root, record.patient_id)
        labels = meta["labels"]
        for k in range(meta["n_slices"]):
            rows.append({"patient_id": record.patient_id, "slice": k,
                         "label": labels[k] if labels is not None else np.nan,
                         "lesion_voxels": meta["lesion_voxels"][k] if labels is not None else np.nan})
        patients.append({"patient_id": record.patient_id, "split": record.split, "centre": record.centre,
                         "label": (max(labels) if labels else 0) if labels is not None else np.nan,
                         "n_slices": meta["n_slices"], "status": status})
        if progress:
            progress()
    return pd.DataFrame(rows), pd.DataFrame(patients)


def build_slice_dataset(manifest: Manifest, root: str | Path, config: SliceConfig, *,
                        progress: Callable[[], None] | None = None) -> pd.DataFrame:
    """Cache every patient, split by patient, write ``index.csv``, ``patients.csv``, ``class_balance.csv``."""
    root = Path(root)
    slices, patient_table = cache_cohort(manifest, root, config, progress=progress)
    patient_table["split"] = patient_splits(patient_table, config)
    index = slices.merge(patient_table[["patient_id", "split"]], on="patient_id")
    check_patient_split(index)
    write_text_atomic(root / "patients.csv", patient_table.to_csv(index=False))
    write_text_atomic(root / "index.csv", index.to_csv(index=False))
    labelled = index.dropna(subset=["label"])
    if len(labelled):
        write_text_atomic(root / "class_balance.csv", class_balance(labelled).to_csv(index=False))
    return index


def read_index(root: str | Path) -> pd.DataFrame:
    """The slice index of a built dataset, checked for patients in two splits."""
    path = Path(root) / "index.csv"
    if not path.is_file():
        raise MissingInputError(f"{path}: no slice index; build the slice dataset first")
    index = pd.read_csv(path, dtype={"patient_id": str})
    check_patient_split(index)
    return index


class SliceStore:
    """Batches of cached slices by (patient, slice), memory-mapped: training reads only what it uses."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._cases: dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]] = {}

    def case(self, patient_id: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if patient_id not in self._cases:
            self._cases[patient_id] = load_case(self.root, patient_id)
        return self._cases[patient_id]

    def images(self, patient_ids: Any, slices: Any) -> np.ndarray:
        """float32 array (B, 1, N, N)."""
        return np.stack([self.case(p)[0]["image"][int(k)] for p, k in zip(patient_ids, slices)]
                        ).astype(np.float32)[:, None]

    def masks(self, patient_ids: Any, slices: Any) -> np.ndarray:
        """uint8 array (B, 1, N, N); patients without a mask raise."""
        out = []
        for p, k in zip(patient_ids, slices):
            arrays = self.case(p)[0]
            if "mask" not in arrays:
                raise InputError(f"patient {p!r}: no lesion mask in the slice cache {self.root}")
            out.append(arrays["mask"][int(k)])
        return np.stack(out).astype(np.uint8)[:, None]
