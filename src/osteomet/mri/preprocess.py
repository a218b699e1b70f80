"""bpMRI preprocessing stage (cached): the inputs of segmentation and of the classifiers.

Per patient, from the manifest (with the effective mask: reviewed > auto > manifest):
1. T2, high-b DWI and ADC on the T2 grid in physical space (``osteomet.data.case``);
2. per-channel z-score over the body / field-of-view region, clipped at +/-3 SD
   (``osteomet.mri.normalize``); channel order (DWI, T2, ADC) as the UNETR sees them;
3. the three channels (and mask) resampled to a fixed segmentation grid (224x224x64 by
   default) over the same physical extent as T2;
4. when a mask exists, a 64x64x32 tumour ROI centred on the bounding box of the mask's index
   lesion (highest label, e.g. ISUP grade, then largest; recorded as ``roi_lesion``), on a
   grid of fixed physical spacing (1 x 1 x 3 mm by default; zero = channel mean outside).

Output per patient in ``OUT/cases/<patient_id>/``: ``seg_image.npy`` (float16, C x Z x Y x X),
``seg_mask.npy``, ``roi_image.npy`` (float32), ``roi_mask.npy``, and ``transform.json`` with
every geometry (T2, segmentation grid, ROI), the normalisation statistics, the settings
and the cache key (content hash of the input files and settings). A rerun whose key is
unchanged does no work.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import SimpleITK as sitk
from pydantic import BaseModel, ConfigDict, Field

from osteomet.data.case import load_mri_case
from osteomet.data.geometry import Geometry, coverage_mask, resample_to
from osteomet.data.grids import (
    INDEX_LESION_RULE,
    array_on,
    centred_grid,
    index_lesion,
    mask_to,
    same_extent_grid,
    split_lesions,
)
from osteomet.data.manifest import Manifest, MRIRecord
from osteomet.errors import InputError
from osteomet.layout import INDEX, TRANSFORM
from osteomet.mri.normalize import body_mask, zscore_clip
from osteomet.utils.case_cache import CaseCache
from osteomet.utils.case_cache import cache_key as case_cache_key
from osteomet.utils.files import write_text_atomic
from osteomet.utils.parallel import map_tasks

PREPROCESS_VERSION = "2"  # 2: ROI centred on the index lesion (several lesions), roi_lesion recorded
CHANNELS = ("dwi", "t2", "adc")  # the UNETR's input order: high-b DWI, T2, ADC


class PreprocessConfig(BaseModel):
    """Settings of the MRI preprocessing stage (part of the cache key)."""

    model_config = ConfigDict(extra="forbid")

    seg_size: tuple[int, int, int] = Field((224, 224, 64), description="segmentation grid, x y z voxels")
    roi_size: tuple[int, int, int] = Field((64, 64, 32), description="tumour ROI, x y z voxels")
    roi_spacing: tuple[float, float, float] | None = Field((1.0, 1.0, 3.0), description="ROI spacing in mm; null = T2 spacing")
    clip_sd: float = Field(3.0, gt=0)


def cache_key(record: MRIRecord, config: PreprocessConfig) -> str:
    """The case's key (:func:`osteomet.utils.case_cache.cache_key`: input contents, chosen series UIDs, settings)."""
    inputs = [(name, getattr(record, name), record.series_uid(name)) for name in ("t2", "dwi", "adc", "mask")]
    return case_cache_key(inputs, config.model_dump_json(), f"preprocess={PREPROCESS_VERSION}")


def preprocess_case(record: MRIRecord, config: PreprocessConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and transform record of one patient (no file writing)."""
    case = load_mri_case(record)
    t2_geometry = Geometry.of(case.t2)
    body = sitk.GetArrayFromImage(body_mask(case.t2)).astype(bool)
    sources = {"t2": None, "dwi": record.dwi, "adc": record.adc}
    channels, stats = [], {}
    for name in CHANNELS:
        image = getattr(case, name)
        array = sitk.GetArrayFromImage(image)
        if name == "t2":
            covered = np.ones_like(body)
        else:
            from osteomet.data.images import read_image

            covered = sitk.GetArrayFromImage(coverage_mask(read_image(sources[name], series_uid=record.series_uid(name)),
                                                           Geometry.of(case.t2))).astype(bool)
        try:
            normalised, stats[name] = zscore_clip(array, body & covered, config.clip_sd)
        except ValueError as exc:
            raise InputError(f"patient {record.patient_id!r}: {name}: {exc}") from None
        normalised[~covered] = 0.0
        channels.append(array_on(t2_geometry, normalised))

    seg_geometry = same_extent_grid(case.t2, config.seg_size)
    arrays = {"seg_image": np.stack([sitk.GetArrayFromImage(resample_to(c, seg_geometry)) for c in channels])
              .astype(np.float16)}
    transform: dict[str, Any] = {
        "patient_id": record.patient_id, "channels": list(CHANNELS), "t2_geometry": t2_geometry.to_dict(),
        "seg_geometry": seg_geometry.to_dict(), "normalisation": stats, "config": config.model_dump(mode="json"),
        "mask": str(record.mask) if record.mask else None, "roi_geometry": None,
    }
    if case.mask is not None:
        arrays["seg_mask"] = sitk.GetArrayFromImage(mask_to(case.mask, seg_geometry)).astype(np.uint8)
        # several lesions: centre on the index lesion (INDEX_LESION_RULE); roi_mask keeps every lesion in view
        components, lesions = split_lesions(case.mask_labels if case.mask_labels is not None else case.mask)
        chosen = lesions[index_lesion(lesions)]
        centre = chosen.centre_mm
        roi_geometry = centred_grid(case.t2, centre, config.roi_size, config.roi_spacing)
        arrays["roi_image"] = np.stack([sitk.GetArrayFromImage(resample_to(c, roi_geometry)) for c in channels]
                                       ).astype(np.float32)
        arrays["roi_mask"] = sitk.GetArrayFromImage(mask_to(case.mask, roi_geometry)).astype(np.uint8)
        transform["roi_geometry"] = roi_geometry.to_dict()
        transform["roi_centre_mm"] = list(centre)
        transform["roi_lesion"] = {"rule": INDEX_LESION_RULE, "chosen": lesions.index(chosen), "n_lesions": len(lesions),
                                   "lesions": [lesion.to_dict() for lesion in lesions]}
        in_roi = sitk.GetArrayFromImage(mask_to(components == chosen.component, roi_geometry)).sum()
        transform["roi_mask_coverage"] = float(in_roi * np.prod(roi_geometry.spacing)  # of the chosen lesion
                                               / (chosen.voxels * np.prod(t2_geometry.spacing)))
    return arrays, transform


def to_t2_geometry(seg_prediction: np.ndarray, transform: dict[str, Any], *, probabilities: bool = False) -> sitk.Image:
    """Bring a segmentation-grid prediction back onto the patient's original T2 grid.

    ``probabilities``: a foreground probability map, resampled linearly then cut at 0.5;
    otherwise a 0/1 label map, handled the same way (linear on the mask, >= 0.5).
    """
    seg_geometry = Geometry.from_dict(transform["seg_geometry"])
    t2_geometry = Geometry.from_dict(transform["t2_geometry"])
    image = array_on(seg_geometry, np.asarray(seg_prediction, dtype=np.float32))
    soft = resample_to(image, t2_geometry, interpolator=sitk.sitkLinear)
    return sitk.Cast(soft >= 0.5, sitk.sitkUInt8)


def _cache(out: str | Path) -> CaseCache:
    return CaseCache(out, TRANSFORM)


def _case_task(args: tuple) -> dict[str, Any]:
    record, config, out, key = args
    start = time.perf_counter()
    try:
        arrays, transform = preprocess_case(record, config)
    except Exception as exc:  # reported per patient; the others go on
        return {"patient_id": record.patient_id, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                "seconds": time.perf_counter() - start}
    _cache(out).write(record.patient_id, arrays, transform, key)
    return {"patient_id": record.patient_id, "status": "processed", "error": None,
            "seconds": time.perf_counter() - start}


def preprocess_cohort(manifest: Manifest, out: str | Path, config: PreprocessConfig | None = None, *,
                      jobs: int = 1, progress: Callable[[], None] | None = None) -> pd.DataFrame:
    """Preprocess every patient, skipping those whose cache key is unchanged; return the index."""
    config = config or PreprocessConfig()
    out = Path(out)
    cache = _cache(out)
    rows: dict[str, dict[str, Any]] = {}
    tasks = []
    for record in manifest:
        try:
            key = cache_key(record, config)
        except OSError as exc:
            rows[record.patient_id] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "seconds": 0.0}
            if progress:
                progress()
            continue
        if cache.is_current(record.patient_id, key):
            rows[record.patient_id] = {"status": "cached", "error": None, "seconds": 0.0}
            if progress:
                progress()
        else:
            tasks.append((record, config, out, key))
    for result in map_tasks(_case_task, tasks, jobs=jobs, progress=progress):
        rows[result["patient_id"]] = result
    meta = manifest.to_frame().set_index("patient_id")
    index = pd.DataFrame([{
        "patient_id": pid, "status": rows[pid]["status"], "error": rows[pid]["error"],
        "seconds": round(rows[pid]["seconds"], 3), "label": meta.loc[pid, "label"], "split": meta.loc[pid, "split"],
        "centre": meta.loc[pid, "centre"], "has_mask": cache.has_array(pid, "roi_mask"),
        "folder": str(cache.folder(pid).relative_to(out)),
    } for pid in manifest.patient_ids])
    write_text_atomic(out / INDEX, index.to_csv(index=False))
    return index


def load_case(out: str | Path, patient_id: str, *, mmap: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and transform of a preprocessed patient (memory-mapped: training reads only what it uses)."""
    return _cache(out).load(patient_id, mmap=mmap)
