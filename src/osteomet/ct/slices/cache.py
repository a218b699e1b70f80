"""The per-patient slice cache: bone-windowed axial slices at native resolution, cropped to the bone region.

Per patient (cached, so training never re-reads volumes):

1. the CT, lesion mask and bone map are loaded by :func:`osteomet.data.case.load_ct_case`
   (HU check, masks checked to lie on the CT's grid) and reoriented to LPS, so the third
   array axis is always the axial slice axis (a pure permutation/flip: no interpolation);
2. slices keep the CT's own in-plane pixel size, or are resampled to ``inplane_spacing_mm``
   when set (same field of view, Gaussian anti-aliasing when shrinking); slice positions
   never change;
3. every slice is cropped to one in-plane box per patient: the bounding box of bone (the
   TotalSegmentator map's bone labels, or HU >= ``bone_hu`` without one) over all slices,
   plus ``crop_margin_mm``; then mapped through the bone window to [0, 1];
4. the lesion mask labels each slice: lesion when the original mask's slice holds at least
   ``min_lesion_voxels`` lesion voxels.

A cache folder given by the user (``--cache``, default ``OUT/slices``) holds one *settings
folder* per version of the arrays (:func:`settings_root`: window, pixel size, crop margin,
bone threshold, lesion-voxel minimum), so detection and segmentation, whose windows differ,
can share one cache folder without re-caching each other's patients or, run at once,
training on each other's window.

Files: ``ROOT/cases/<patient_id>/image.npy`` (float16, Z x H x W), ``mask.npy`` (uint8, the
lesions), ``bone.npy`` (uint8, the bone region used for patch sampling) and
``slices.json`` (geometries, crop, labels, settings and the cache key: content hash of the
input files, the chosen CT series and the settings; written last, so it marks the case complete).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import SimpleITK as sitk

from osteomet.ct.slices.config import SliceConfig
from osteomet.ct.slices.window import bone_window
from osteomet.data.case import CTCase, load_ct_case
from osteomet.data.geometry import Geometry, resample_to
from osteomet.data.grids import array_on, mask_to, same_extent_grid
from osteomet.data.manifest import CTRecord, Manifest
from osteomet.data.totalsegmentator import TOTALSEG_BONES
from osteomet.errors import InputError
from osteomet.layout import SLICE_RECORD
from osteomet.utils.case_cache import CaseCache
from osteomet.utils.case_cache import cache_key as case_cache_key

SLICES_VERSION = "2"


def settings_root(cache: str | Path, config: SliceConfig) -> Path:
    """The folder, inside a cache folder, of the slices made with ``config`` (named by window and a settings digest)."""
    digest = hashlib.sha256(f"{config.cache_settings()};slices={SLICES_VERSION}".encode()).hexdigest()[:10]
    return Path(cache) / f"window{config.window_level:g}_{config.window_width:g}-{digest}"


def slice_grid(oriented: sitk.Image, spacing_mm: float | None) -> Geometry:
    """The CT's own grid, or ``spacing_mm`` pixels over the same in-plane field of view; slices unchanged."""
    if spacing_mm is None:
        return Geometry.of(oriented)
    size, spacing = oriented.GetSize(), oriented.GetSpacing()
    n = [max(1, int(round(size[i] * spacing[i] / spacing_mm))) for i in range(2)]
    return same_extent_grid(oriented, (n[0], n[1], size[2]))


def _antialias(image: sitk.Image, grid: Geometry) -> sitk.Image:
    """Gaussian smoothing before shrinking in-plane (sigma = half the new pixel size where it grows)."""
    old = np.asarray(image.GetSpacing(), float)
    new = np.asarray(grid.spacing, float)
    sigma = [float(0.5 * np.sqrt(max(n * n - o * o, 0.0))) if i < 2 else 0.0
             for i, (o, n) in enumerate(zip(old, new))]
    if max(sigma) == 0:
        return image
    return sitk.DiscreteGaussian(image, variance=[s * s for s in sigma], maximumKernelWidth=64, useImageSpacing=True)


def crop_box(region: np.ndarray, spacing_mm: tuple[float, float], margin_mm: float) -> list[int]:
    """[y0, y1, x0, x1]: the in-plane bounding box of ``region`` (Z x Y x X) over all slices plus a margin.

    An empty region keeps the whole slice (nothing to crop to is not a reason to lose the slice).
    """
    _, ny, nx = region.shape
    ys, xs = np.flatnonzero(region.any(axis=(0, 2))), np.flatnonzero(region.any(axis=(0, 1)))
    if ys.size == 0:
        return [0, int(ny), 0, int(nx)]
    my, mx = int(np.ceil(margin_mm / spacing_mm[1])), int(np.ceil(margin_mm / spacing_mm[0]))
    return [max(0, int(ys[0]) - my), min(ny, int(ys[-1]) + 1 + my), max(0, int(xs[0]) - mx), min(nx, int(xs[-1]) + 1 + mx)]


def prepare_ct(case: CTCase, config: SliceConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Windowed, cropped slices (lesion mask and bone region too) plus the geometry record (no file I/O)."""
    oriented = sitk.DICOMOrient(case.ct, "LPS")
    grid = slice_grid(oriented, config.inplane_spacing_mm)
    native = Geometry.of(oriented) == grid
    hu_image = oriented if native else resample_to(_antialias(oriented, grid), grid, default=-1024.0)
    hu = sitk.GetArrayFromImage(hu_image)
    if case.bone_map is not None:
        bones = sitk.DICOMOrient(case.bone_map, "LPS")
        if not native:
            bones = resample_to(bones, grid, interpolator=sitk.sitkNearestNeighbor)
        region = np.isin(sitk.GetArrayViewFromImage(bones), list(TOTALSEG_BONES))
    else:
        region = hu >= config.bone_hu
    y0, y1, x0, x1 = box = crop_box(region, grid.spacing[:2], config.crop_margin_mm)
    arrays = {"image": bone_window(hu[:, y0:y1, x0:x1], config.window_level, config.window_width).astype(np.float16),
              "bone": region[:, y0:y1, x0:x1].astype(np.uint8)}
    meta: dict[str, Any] = {"ct_geometry": Geometry.of(case.ct).to_dict(), "slice_geometry": grid.to_dict(),
                            "crop": box, "n_slices": int(grid.size[2]), "labels": None, "lesion_voxels": None}
    if case.lesion_mask is not None:
        mask_oriented = sitk.DICOMOrient(case.lesion_mask, "LPS")
        voxels = sitk.GetArrayViewFromImage(mask_oriented).reshape(grid.size[2], -1).sum(axis=1)
        on_grid = mask_oriented if native else mask_to(mask_oriented, grid)
        arrays["mask"] = sitk.GetArrayFromImage(on_grid)[:, y0:y1, x0:x1].astype(np.uint8)
        meta["lesion_voxels"] = [int(v) for v in voxels]
        meta["labels"] = [int(v >= config.min_lesion_voxels) for v in voxels]
    return arrays, meta


def uncrop(cropped: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """A (Z x H x W) array on the crop -> (Z x Y x X) on the whole slice grid, zero outside the crop."""
    grid = Geometry.from_dict(meta["slice_geometry"])
    y0, y1, x0, x1 = meta["crop"]
    full = np.zeros((grid.size[2], grid.size[1], grid.size[0]), np.float32)
    full[:, y0:y1, x0:x1] = cropped
    return full


def to_ct_geometry(probabilities: np.ndarray, meta: dict[str, Any]) -> sitk.Image:
    """Cropped (Z x H x W) lesion probabilities -> 0/1 mask on the CT's own grid (linear, >= 0.5)."""
    grid = Geometry.from_dict(meta["slice_geometry"])
    target = Geometry.from_dict(meta["ct_geometry"])
    soft = resample_to(array_on(grid, uncrop(probabilities, meta)), target)
    return sitk.Cast(soft >= 0.5, sitk.sitkUInt8)


def cache_key(record: CTRecord, config: SliceConfig) -> str:
    """The case's key (:func:`osteomet.utils.case_cache.cache_key`: input contents, the chosen CT series, settings)."""
    inputs = [(name, getattr(record, name), record.series_uid(name)) for name in ("ct", "lesion_mask", "bone_map")]
    return case_cache_key(inputs, config.cache_settings(), f"slices={SLICES_VERSION}")




def cache_case(root: str | Path, record: CTRecord, config: SliceConfig) -> str:
    """Write (or keep) one patient's cached slices; returns 'cached' or 'processed'."""
    cache = CaseCache(root, SLICE_RECORD)
    key = cache_key(record, config)
    if cache.is_current(record.patient_id, key):
        return "cached"
    arrays, meta = prepare_ct(load_ct_case(record), config)
    meta.update({"patient_id": record.patient_id, "ct": str(record.ct),
                 "lesion_mask": str(record.lesion_mask) if record.lesion_mask else None,
                 "bone_map": str(record.bone_map) if record.bone_map else None,
                 "config": json.loads(config.cache_settings())})
    cache.write(record.patient_id, arrays, meta, key)
    return "processed"


def load_case(root: str | Path, patient_id: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Cached arrays (memory-mapped) and geometry record of one patient."""
    return CaseCache(root, SLICE_RECORD).load(patient_id)


def cache_cohort(manifest: Manifest, root: str | Path, config: SliceConfig, *,
                 progress: Callable[[], None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cache every patient's slices under ``root``; return the slice rows and the patient rows (no split).

    Patients without a lesion mask get ``label`` NaN (usable for prediction, not training).
    """
    if manifest.kind != "ct":
        raise InputError(f"{manifest.path}: expected a CT manifest (ct, lesion_mask columns), got a {manifest.kind} one")
    rows, patients = [], []
    for record in manifest:
        status = cache_case(root, record, config)
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


class SliceStore:
    """The cached patients of one slice root, opened once each (memory-mapped: training reads only what it uses)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._cases: dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]] = {}

    def case(self, patient_id: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if patient_id not in self._cases:
            self._cases[patient_id] = load_case(self.root, patient_id)
        return self._cases[patient_id]

    def array(self, patient_id: str, name: str) -> np.ndarray:
        """One cached array (image, mask, bone) of a patient; a missing lesion mask is refused by name."""
        arrays = self.case(patient_id)[0]
        if name not in arrays:
            raise InputError(f"patient {patient_id!r}: no {'lesion mask' if name == 'mask' else name} "
                             f"in the slice cache {self.root}")
        return arrays[name]

    def spacing(self, patient_id: str) -> tuple[float, float]:
        """In-plane pixel size (x, y) of the cached slices (mm)."""
        spacing = self.case(patient_id)[1]["slice_geometry"]["spacing"]
        return float(spacing[0]), float(spacing[1])

    def voxel_ml(self, patient_id: str) -> float:
        """Volume of one cached voxel (ml): lesion sizes in physical units whatever the pixel size."""
        return voxel_ml(self.case(patient_id)[1])


def voxel_ml(meta: dict[str, Any]) -> float:
    """Voxel volume (ml) of a case's cached slice grid."""
    return float(np.prod(np.asarray(meta["slice_geometry"]["spacing"], float)[:3])) / 1000.0
