"""Bring nnU-Net's predictions back into osteomet and score them like the MONAI models.

nnU-Net names its outputs by case id and writes them in the geometry of the image it was
given (the exported copy of the CT). Each one is checked against the patient's original CT,
written as ``OUT/<model>/masks/<patient_id>.nii.gz`` on that CT's grid, and scored per
patient in 3D against the reference lesion mask with
:func:`osteomet.evaluation.segmentation.overlap` into ``OUT/<model>/metrics.csv``: the same
layout and long table as ``osteomet ct segment predict`` (patient_id, split, model, mask,
predicted_voxels, dice, precision, recall), so :mod:`osteomet.ct.segmentation.compare` puts
nnU-Net beside the MONAI networks patient by patient.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import SimpleITK as sitk

from osteomet.ct.nnunet.export import ExportedCase, read_exported_cases, replace_folder
from osteomet.ct.nnunet.layout import FILE_ENDING, NnunetLayout
from osteomet.data.geometry import Geometry, GeometryMismatchError
from osteomet.data.images import read_image, write_image
from osteomet.data.label_masks import MaskError, read_mask
from osteomet.data.manifest import Manifest, read_manifest
from osteomet.errors import InputError, MissingInputError, OutputExistsError
from osteomet.layout import METRICS, open_run_dir
from osteomet.utils.files import write_text_atomic

#: Columns of the per-patient table: the MONAI segmentation's, then the reference size and nnU-Net's case id.
PER_PATIENT_COLUMNS = ("patient_id", "split", "model", "mask", "predicted_voxels", "dice", "precision", "recall",
                       "reference_voxels", "nnunet_case")


def prediction_files(prediction_dir: str | os.PathLike[str], cases: list[ExportedCase]) -> dict[str, Path]:
    """Case id -> nnU-Net prediction file; a file for an unknown case is an error (wrong folder or dataset)."""
    prediction_dir = Path(prediction_dir)
    if not prediction_dir.is_dir():
        raise MissingInputError(f"{prediction_dir}: prediction folder does not exist")
    known = {c.case_id for c in cases}
    found: dict[str, Path] = {}
    for path in sorted(prediction_dir.glob(f"*{FILE_ENDING}")):
        if path.name.startswith("."):
            continue
        case = path.name[: -len(FILE_ENDING)]
        if case not in known:
            raise InputError(f"{path}: prediction for case {case!r}, which is not in the exported dataset "
                             f"(wrong prediction folder or dataset?)")
        found[case] = path
    if not found:
        raise MissingInputError(f"{prediction_dir}: no nnU-Net predictions (<case>{FILE_ENDING})")
    return found


def read_prediction(path: Path, ct: sitk.Image, ct_name: str | os.PathLike[str]) -> sitk.Image:
    """nnU-Net's label map as a 0/1 mask on the CT's exact grid (refused when not on that grid)."""
    prediction = read_image(path)
    values = np.unique(sitk.GetArrayViewFromImage(prediction))
    extra = [v for v in values.tolist() if v not in (0, 1)]
    if extra:
        raise MaskError(f"{path}: nnU-Net prediction has labels other than 0 and 1 ({', '.join(map(str, extra[:6]))}); "
                        f"the exported dataset has one lesion label")
    differences = Geometry.of(prediction).differences(Geometry.of(ct))
    if differences:
        raise GeometryMismatchError(f"{path}: prediction is not on the grid of the patient's CT {ct_name}: "
                                    + "; ".join(differences))
    prediction = sitk.Cast(prediction, sitk.sitkUInt8)
    prediction.CopyInformation(ct)  # equal within tolerance: store the CT's exact geometry
    return prediction


def import_predictions(prediction_dir: str | os.PathLike[str], nnunet_root: str | os.PathLike[str],
                       out: str | os.PathLike[str], *, dataset_id: int | None = None, model: str = "nnunet",
                       manifest: Manifest | str | os.PathLike[str] | None = None, overwrite: bool = False,
                       progress: Callable[[], None] | None = None) -> pd.DataFrame:
    """Check, copy and score every prediction in ``prediction_dir``; write ``out/<model>/metrics.csv``.

    The original CT and reference mask of each patient come from ``manifest`` when given
    (files may have moved since the export), else from the paths the export recorded.
    Patients without a reference mask get a mask but NaN metrics.
    """
    layout = NnunetLayout.find(nnunet_root, dataset_id)
    prediction_files(prediction_dir, read_exported_cases(layout))  # a wrong folder is refused before --out is made
    out = open_run_dir(out, "nnunet-import")
    masks = out / _file_safe(model) / "masks"
    if masks.exists() and not overwrite:
        raise OutputExistsError(f"{masks}: predictions were already imported here; choose another --out or pass "
                              f"--overwrite")
    return import_into(prediction_dir, layout, out / model, model=model, manifest=manifest, progress=progress)


def import_into(prediction_dir: str | os.PathLike[str], layout: NnunetLayout, folder: str | os.PathLike[str], *,
                model: str = "nnunet", manifest: Manifest | str | os.PathLike[str] | None = None,
                progress: Callable[[], None] | None = None) -> pd.DataFrame:
    """Write ``folder/masks/<patient_id>.nii.gz`` and ``folder/metrics.csv``, replacing masks already there.

    The masks are written beside under a hidden name and renamed into place at the end, so an
    interrupted import never leaves a partial set that a later stage would read as complete.
    """
    cases = read_exported_cases(layout)
    files = prediction_files(prediction_dir, cases)
    by_case = {c.case_id: c for c in cases}
    if manifest is not None and not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest, kind="ct")
    folder = Path(folder)
    masks = folder / "masks"
    _file_safe(model)
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".masks.tmp-{uuid.uuid4().hex[:8]}"
    try:
        table = _import_all(files, by_case, manifest, staging, model, progress)
        replace_folder(staging, masks)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    table["mask"] = [str(masks / Path(m).name) for m in table["mask"]]
    write_text_atomic(folder / METRICS, table.to_csv(index=False))
    return table


def _import_all(files: dict[str, Path], by_case: dict[str, ExportedCase], manifest: Manifest | None,
                masks: Path, model: str, progress: Callable[[], None] | None) -> pd.DataFrame:
    rows = []
    for case_id, path in files.items():
        case = by_case[case_id]
        ct_path, ref_path = _sources(case, manifest)
        target = masks / f"{_file_safe(case.patient_id)}{FILE_ENDING}"
        ct = read_image(ct_path)
        prediction = read_prediction(path, ct, ct_path)
        metrics = {"dice": np.nan, "precision": np.nan, "recall": np.nan}
        ref_voxels = np.nan
        pred_array = sitk.GetArrayViewFromImage(prediction)
        if ref_path is not None:
            from osteomet.evaluation.segmentation import overlap

            reference = read_mask(ref_path, reference=ct, reference_name=ct_path, allow_empty=True)
            ref_array = sitk.GetArrayViewFromImage(reference)
            metrics = overlap(pred_array, ref_array)
            ref_voxels = int(np.count_nonzero(ref_array))
        write_image(prediction, target)
        rows.append({"patient_id": case.patient_id, "split": case.split, "model": model, "mask": str(target),
                     "predicted_voxels": int(np.count_nonzero(pred_array)), **metrics,
                     "reference_voxels": ref_voxels, "nnunet_case": case_id})
        if progress:
            progress()
    return pd.DataFrame(rows, columns=list(PER_PATIENT_COLUMNS))


def _sources(case: ExportedCase, manifest: Manifest | None) -> tuple[Path, Path | None]:
    if manifest is None:
        return Path(case.source_ct), None if case.source_mask is None else Path(case.source_mask)
    try:
        record = manifest.get(case.patient_id)
    except KeyError:
        raise InputError(f"patient {case.patient_id!r} (nnU-Net case {case.case_id!r}) is not in manifest "
                         f"{manifest.path}") from None
    return Path(record.ct), None if record.lesion_mask is None else Path(record.lesion_mask)


def _file_safe(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise InputError(f"{name!r} (patient id or model name) cannot be used as a file name")
    return name
