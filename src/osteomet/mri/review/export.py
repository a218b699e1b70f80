"""Export of UNETR proposals for review: sequences on the T2 grid, the proposal as a Slicer segmentation, a sheet."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import SimpleITK as sitk

from osteomet.data.image_errors import ImageError
from osteomet.data.images import write_image
from osteomet.data.label_masks import read_mask
from osteomet.data.manifest import Manifest, MRIRecord
from osteomet.data.masks import AUTO_DIR, auto_mask_path, check_patient_id
from osteomet.errors import InputError, MissingInputError
from osteomet.layout import REVIEW_EXPORT, REVIEW_SHEET
from osteomet.mri.review.common import (
    IMAGE_FILES,
    README_NAME,
    REVIEW_DIR,
    SHEET_COLUMNS,
    Log,
    PathLike,
    ReviewError,
    _default_log,
    _now,
    _voxel_volume_ml,
    _with_patient,
    reviewed_candidates,
)
from osteomet.mri.review.seg_nrrd import write_seg_nrrd
from osteomet.utils.files import read_json, sha256_file, write_json_atomic, write_text_atomic


def _sheet_row(patient_id: str, mask: sitk.Image) -> dict[str, Any]:
    voxels = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
    return {
        "patient_id": patient_id,
        "t2": f"{patient_id}/{IMAGE_FILES['t2']}",
        "auto_mask": f"{patient_id}/{patient_id}_auto.seg.nrrd",
        "auto_voxels": voxels,
        "auto_volume_ml": round(voxels * _voxel_volume_ml(mask), 4),
        "reviewed": "", "reviewer": "", "comment": "",
    }




def _export_patient(record: MRIRecord, segdir: Path, folder: Path, log: Log) -> dict[str, Any]:
    from osteomet.data.case import load_mri_case

    pid = record.patient_id
    auto = auto_mask_path(segdir, pid)
    pdir = folder / pid
    reviewed = reviewed_candidates(folder, pid)
    if reviewed:
        log(f"patient {pid!r}: already reviewed ({', '.join(p.name for p in reviewed)}); its folder was left untouched")
        return _sheet_row(pid, read_mask(auto, allow_empty=True))

    case = load_mri_case(record.model_copy(update={"mask": None}))  # the manifest's own mask is not needed here
    mask = read_mask(auto, reference=case.t2, reference_name=record.t2, allow_empty=True)
    previous = (read_json(pdir / REVIEW_EXPORT) or {}).get("files", {})
    files: dict[str, str] = {}
    for key, image in (("t2", case.t2), ("highb", case.dwi), ("adc", case.adc)):
        target = write_image(image, pdir / IMAGE_FILES[key])
        files[target.name] = sha256_file(target)
    seg = pdir / f"{pid}_auto.seg.nrrd"
    if seg.exists() and sha256_file(seg) != previous.get(seg.name):
        log(f"patient {pid!r}: {seg} was changed after export (saved over in Slicer?); left untouched. If it holds "
            f"the corrections, rename it to {pid}_reviewed.seg.nrrd")
        if previous.get(seg.name):
            files[seg.name] = previous[seg.name]
    else:
        write_seg_nrrd(mask, seg)
        files[seg.name] = sha256_file(seg)
    write_json_atomic(pdir / REVIEW_EXPORT, {
        "patient_id": pid, "exported_at": _now(), "auto_mask": str(auto), "auto_sha256": sha256_file(auto),
        "t2": str(record.t2), "files": files,
    })
    return _sheet_row(pid, mask)


def _sheet_ids(path: Path) -> set[str]:
    """Patient ids in an existing sheet, tolerant of what a spreadsheet program does to a CSV."""
    try:
        frame = pd.read_csv(path, dtype=str, sep=None, engine="python", encoding="utf-8-sig", keep_default_na=False)
    except Exception:  # unreadable: treat as holding nobody, we still never touch it
        return set()
    column = next((c for c in frame.columns if str(c).strip().lower() == "patient_id"), None)
    return set() if column is None else {str(v).strip() for v in frame[column]}


def _new_name(path: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    candidate = path.with_name(f"{path.stem}.{stamp}{path.suffix}")
    counter = 1
    while candidate.exists():
        counter += 1
        candidate = path.with_name(f"{path.stem}.{stamp}-{counter}{path.suffix}")
    return candidate


README_TEXT = """\
Tumour segmentation review (exported {created})

One folder per patient: t2.nrrd, highb.nrrd (high-b DWI) and adc.nrrd, all resampled onto
the T2 grid so they overlay exactly, and <patient>_auto.seg.nrrd: the automatic (UNETR)
tumour proposal as a 3D Slicer segmentation with one segment named "tumour".

3D Slicer (5.x)
  1. Drag the four files of one patient folder into Slicer (or File > Add Data).
  2. Segment Editor: Segmentation = <patient>_auto, Source volume = t2. Check the segment
     "tumour" on T2, DWI and ADC and correct it (Paint, Erase, Scissors, Islands ...).
     Keep one segment named "tumour"; do not change the segmentation geometry.
  3. File > Save Data: untick everything except the segmentation and set its file name to
     <patient>_reviewed.seg.nrrd in the same patient folder.
     Do NOT save over <patient>_auto.seg.nrrd: it is the record of what the model proposed.

ITK-SNAP
  Open t2.nrrd as main image, Segmentation > Open Segmentation: <patient>_auto.seg.nrrd,
  correct label 1, then Segmentation > Save Segmentation Image As:
  <patient>_reviewed.nii.gz in the same patient folder (label 1 = tumour, nothing else).

If the automatic mask needs no change, save it unchanged as <patient>_reviewed.seg.nrrd:
that records your approval. Tick review_sheet.csv (reviewed = yes, reviewer, comment).

When done, import the reviewed masks (they are checked against each patient's T2 grid):
  osteomet segment import-review --manifest MANIFEST --segdir SEGDIR --reviewer NAME
"""


def export_review(manifest: Manifest, segdir: PathLike, out: PathLike | None = None, *,
                  progress: Callable[[], None] | None = None, log: Log | None = None) -> Path:
    """Write the review folder (default ``SEGDIR/review``) for every patient with an auto mask.

    Per patient: ``t2.nrrd``, ``highb.nrrd``, ``adc.nrrd`` on the T2 grid and
    ``<patient>_auto.seg.nrrd``; for the folder: ``review_sheet.csv`` and ``README.txt``.
    Rerunning is safe: patients already reviewed are skipped, an auto segmentation edited in
    place and an existing sheet are left untouched (rows for new patients go to a new,
    time-stamped sheet). Problems are collected and raised together as :class:`ReviewError`
    after the other patients were written. Returns the review folder.
    """
    if manifest.kind != "mri":
        raise InputError(f"the review loop is for bpMRI manifests, not {manifest.kind!r}")
    log = log or _default_log
    segdir = Path(segdir)
    if not (segdir / AUTO_DIR).is_dir():
        raise MissingInputError(f"{segdir / AUTO_DIR}: no auto masks; run `osteomet segment predict` first")
    folder = Path(out) if out is not None else segdir / REVIEW_DIR
    rows, problems, missing = [], [], []
    for record in manifest:
        try:
            check_patient_id(record.patient_id)
            if not auto_mask_path(segdir, record.patient_id).is_file():
                missing.append(record.patient_id)
            else:
                rows.append(_export_patient(record, segdir, folder, log))
        except (ImageError, ValueError, OSError) as exc:
            problems.append(_with_patient(record.patient_id, exc))
        if progress:
            progress()
    if missing:
        log(f"{len(missing)} patient(s) without an auto mask in {segdir / AUTO_DIR}: {', '.join(missing[:10])}"
            + (" ..." if len(missing) > 10 else ""))
    if rows:
        folder.mkdir(parents=True, exist_ok=True)
        sheet = pd.DataFrame(rows, columns=SHEET_COLUMNS)
        sheet_path = folder / REVIEW_SHEET
        if not sheet_path.exists():
            write_text_atomic(sheet_path, sheet.to_csv(index=False))
        else:
            new = sheet[~sheet["patient_id"].isin(_sheet_ids(sheet_path))]
            if len(new):
                extra = _new_name(sheet_path)
                write_text_atomic(extra, new.to_csv(index=False))
                log(f"{sheet_path} already exists and was left untouched; rows for {len(new)} patient(s) not in it "
                    f"are in {extra.name}")
        write_text_atomic(folder / README_NAME, README_TEXT.format(created=_now()))
    if problems:
        raise ReviewError(folder, problems)
    return folder


