"""Import of reviewed masks: checked against the T2 grid, stored beside (never over) the automatic ones, with provenance."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import SimpleITK as sitk

from osteomet.data.geometry import Geometry
from osteomet.data.image_errors import ImageError
from osteomet.data.images import read_image, write_image
from osteomet.data.label_masks import MaskError, read_mask
from osteomet.data.manifest import Manifest, MRIRecord
from osteomet.data.masks import (
    REVIEWED_DIR,
    auto_mask_path,
    check_patient_id,
    effective_mask,
    provenance_path,
    read_provenance,
    reviewed_mask_path,
)
from osteomet.errors import InputError, MissingInputError, OutputExistsError
from osteomet.evaluation.segmentation import overlap
from osteomet.layout import REVIEW_EXPORT
from osteomet.mri.review.common import (
    IMAGE_FILES,
    REVIEW_DIR,
    PathLike,
    ReviewError,
    _now,
    _voxel_volume_ml,
    _with_patient,
    reviewed_candidates,
)
from osteomet.mri.review.seg_nrrd import read_reviewed_mask
from osteomet.utils.files import atomic_path, read_json, sha256_file, write_json_atomic

IMPORT_COLUMNS = ["patient_id", "status", "source", "review_file", "dice", "voxels_added", "voxels_removed",
                  "reviewed_voxels", "message"]


def _sheet_entries(folder: Path) -> dict[str, dict[str, str]]:
    """What the radiologist wrote in the review sheet(s), by patient (for provenance only)."""
    entries: dict[str, dict[str, str]] = {}
    for path in sorted(folder.glob("review_sheet*.csv")):
        try:
            frame = pd.read_csv(path, dtype=str, sep=None, engine="python", encoding="utf-8-sig", keep_default_na=False)
        except Exception:
            continue
        frame.columns = [str(c).strip().lower() for c in frame.columns]
        if "patient_id" not in frame:
            continue
        for row in frame.to_dict(orient="records"):
            kept = {k: str(row.get(k, "")).strip() for k in ("reviewed", "reviewer", "comment") if str(row.get(k, "")).strip()}
            if kept:
                entries[str(row["patient_id"]).strip()] = kept
    return entries


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def _next_version(segdir: Path, patient_id: str) -> Path:
    versions = segdir / REVIEWED_DIR / "versions"
    n = 1
    while (versions / f"{patient_id}.v{n}.nii.gz").exists():
        n += 1
    return versions / f"{patient_id}.v{n}.nii.gz"


def _same_mask(a: sitk.Image, b: sitk.Image) -> bool:
    return not Geometry.of(a).differences(Geometry.of(b)) and np.array_equal(
        sitk.GetArrayViewFromImage(a) != 0, sitk.GetArrayViewFromImage(b) != 0)


def _not_reviewed_note(folder: Path, patient_id: str) -> str:
    """Hints for the usual slips: saved over the auto file, or saved under Slicer's default name."""
    pdir = folder / patient_id
    notes = []
    seg = pdir / f"{patient_id}_auto.seg.nrrd"
    recorded = (read_json(pdir / REVIEW_EXPORT) or {}).get("files", {}).get(seg.name)
    if seg.exists() and recorded and sha256_file(seg) != recorded:
        notes.append(f"{seg.name} was changed after export; if it holds the corrections, rename it to "
                     f"{patient_id}_reviewed.seg.nrrd")
    if pdir.is_dir():
        known = {seg.name, REVIEW_EXPORT, *IMAGE_FILES.values()}
        stray = sorted(p.name for p in pdir.iterdir() if p.is_file() and p.name not in known and not p.name.startswith("."))
        if stray:
            notes.append(f"unrecognised file(s) {', '.join(stray)}; a reviewed mask must be named "
                         f"{patient_id}_reviewed.seg.nrrd or {patient_id}_reviewed.nii.gz")
    return "; ".join(notes)


def _import_patient(record: MRIRecord, segdir: Path, folder: Path, *, reviewer: str, overwrite: bool,
                    provenance: dict[str, Any], sheet: dict[str, str] | None, time: str) -> dict[str, Any]:
    pid = record.patient_id
    row: dict[str, Any] = {"patient_id": pid}
    candidates = reviewed_candidates(folder, pid)
    if not candidates:
        row.update(status="not reviewed", message=_not_reviewed_note(folder, pid))
        return row
    if len(candidates) > 1:
        raise MaskError(f"several reviewed files ({', '.join(str(p) for p in candidates)}); keep only one")
    source = candidates[0]
    t2 = read_image(record.t2)
    mask, info = read_reviewed_mask(source, t2, reference_name=record.t2)
    reviewed = sitk.GetArrayFromImage(mask).astype(bool)

    auto_path = auto_mask_path(segdir, pid)
    target = reviewed_mask_path(segdir, pid)
    if target.resolve() == auto_path.resolve():  # defensive: the proposal must never be replaced
        raise RuntimeError(f"reviewed and auto mask paths coincide for patient {pid!r}")
    stats: dict[str, Any] = {"dice": None, "voxels_added": None, "voxels_removed": None, "auto_voxels": None}
    if auto_path.is_file():
        auto = sitk.GetArrayFromImage(read_mask(auto_path, reference=t2, reference_name=record.t2,
                                                allow_empty=True)).astype(bool)
        stats = {
            "dice": round(float(overlap(reviewed, auto)["dice"]), 6),
            "voxels_added": int(np.count_nonzero(reviewed & ~auto)),
            "voxels_removed": int(np.count_nonzero(auto & ~reviewed)),
            "auto_voxels": int(np.count_nonzero(auto)),
        }

    previous = provenance["patients"].get(pid)
    status = "imported"
    kept_version = None
    if target.exists():
        if _same_mask(read_image(target), mask):
            status = "unchanged"
        elif not overwrite:
            who = f" (by {previous.get('reviewer')} at {previous.get('time')})" if previous and previous.get("reviewer") else ""
            raise OutputExistsError(
                f"a different reviewed mask was already imported{who} as {target}; {source.name} would replace it. "
                "Pass --overwrite (overwrite=True) to replace it; the old one is then kept as a numbered version"
            )
        else:
            kept_version = _next_version(segdir, pid)
            with atomic_path(kept_version) as tmp:
                shutil.copy2(target, tmp)
            status = "replaced"
    if status != "unchanged":
        write_image(mask, target)
    if status != "unchanged" or not previous or previous.get("source") != "reviewed":
        entry: dict[str, Any] = {
            "source": "reviewed",
            "reviewer": reviewer,
            "time": time,
            "mask": _relative(target, segdir),
            "reviewed_sha256": sha256_file(target),
            "review_file": str(source.resolve()),
            "review_file_sha256": sha256_file(source),
            "auto_mask": _relative(auto_path, segdir) if auto_path.is_file() else None,
            "auto_sha256": sha256_file(auto_path) if auto_path.is_file() else None,
            "t2": str(record.t2),
            "reviewed_voxels": int(np.count_nonzero(reviewed)),
            "reviewed_volume_ml": round(int(np.count_nonzero(reviewed)) * _voxel_volume_ml(mask), 4),
            **stats,
        }
        if info:
            entry.update(info)
        if sheet:
            entry["sheet"] = sheet
        history = list((previous or {}).get("history", []))
        if previous:
            history.append({k: v for k, v in previous.items() if k != "history"})
        if kept_version is not None and history:
            history[-1]["kept_as"] = _relative(kept_version, segdir)
        if history:
            entry["history"] = history
        provenance["patients"][pid] = entry
    row.update(status=status, review_file=str(source), reviewed_voxels=int(np.count_nonzero(reviewed)),
               dice=stats["dice"], voxels_added=stats["voxels_added"], voxels_removed=stats["voxels_removed"],
               message=(f"old mask kept as {_relative(kept_version, segdir)}" if kept_version else
                        (f"ignored segment(s): {', '.join(info['ignored_segments'])}" if info.get("ignored_segments") else "")))
    return row


def _auto_entry(segdir: Path, patient_id: str, time: str, sheet: dict[str, str] | None) -> dict[str, Any]:
    auto = auto_mask_path(segdir, patient_id)
    entry: dict[str, Any] = {"source": "auto", "time": time, "mask": _relative(auto, segdir),
                             "auto_sha256": sha256_file(auto), "reviewer": None}
    if sheet:
        entry["sheet"] = sheet
    return entry


def import_review(manifest: Manifest, segdir: PathLike, source: PathLike | None = None, *, reviewer: str,
                  overwrite: bool = False, progress: Callable[[], None] | None = None) -> pd.DataFrame:
    """Import the radiologist's refined masks into ``SEGDIR/reviewed/`` and update ``provenance.json``.

    Looks for ``<patient>_reviewed.seg.nrrd`` (or ``.nii.gz``/``.nrrd``/``.nii``) in the review
    folder (``SEGDIR/review`` unless ``source`` is given), per patient subfolder or flat.
    Each is checked against the patient's T2 grid, must be non-empty and binary, and is
    compared with the auto mask (Dice, voxels added/removed). The auto masks are never
    written. A patient whose reviewed mask was already imported is left as it is when the
    file is unchanged, and refused when it differs unless ``overwrite`` (the old mask is
    then kept as ``reviewed/versions/<patient>.vN.nii.gz``).

    Returns one row per manifest patient. Problems are collected over all patients and
    raised together as :class:`ReviewError` (its ``table`` has the results) after the good
    patients were imported and the provenance written.
    """
    if manifest.kind != "mri":
        raise InputError(f"the review loop is for bpMRI manifests, not {manifest.kind!r}")
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise InputError("name the reviewer (--reviewer): provenance must say who approved the masks")
    segdir = Path(segdir)
    folder = Path(source) if source is not None else segdir / REVIEW_DIR
    if not folder.is_dir():
        raise MissingInputError(f"{folder}: review folder not found"
                                + ("" if source is not None else "; run `osteomet segment export-review` first"))
    provenance = read_provenance(segdir)
    provenance.setdefault("version", 1)
    sheets = _sheet_entries(folder)
    time = _now()
    rows, problems = [], []
    ids = set()
    for record in manifest:
        pid = record.patient_id
        ids.add(pid)
        try:
            check_patient_id(pid)
            row = _import_patient(record, segdir, folder, reviewer=reviewer, overwrite=overwrite,
                                  provenance=provenance, sheet=sheets.get(pid), time=time)
        except (ImageError, ValueError, OSError) as exc:
            problems.append(_with_patient(pid, exc))
            row = {"patient_id": pid, "status": "error", "message": _with_patient(pid, exc)}
        try:
            _, row["source"] = effective_mask(pid, segdir, fallback=record.mask, provenance=provenance)
        except (ImageError, ValueError) as exc:
            problems.append(_with_patient(pid, exc))
            row.update(status="error", source="reviewed", message=_with_patient(pid, exc))
        if row["source"] == "auto":
            previous = provenance["patients"].get(pid)
            if not previous or previous.get("source") != "auto" or previous.get("auto_sha256") != sha256_file(
                    auto_mask_path(segdir, pid)):
                entry = _auto_entry(segdir, pid, time, sheets.get(pid))
                if previous:
                    entry["history"] = [*previous.get("history", []), {k: v for k, v in previous.items() if k != "history"}]
                provenance["patients"][pid] = entry
        rows.append(row)
        if progress:
            progress()
    for stray in sorted(folder.glob("*_reviewed.*")) + sorted(folder.glob("*/*_reviewed.*")):
        pid = re.sub(r"_reviewed\..*$", "", stray.name)
        if pid not in ids:
            problems.append(f"{stray}: patient {pid!r} is not in the manifest (misspelt file name?)")
    provenance["updated"] = time
    segdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(provenance_path(segdir), provenance)
    table = pd.DataFrame(rows, columns=IMPORT_COLUMNS)
    if problems:
        raise ReviewError(folder, problems, table)
    return table

