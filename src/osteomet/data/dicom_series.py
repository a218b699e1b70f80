"""Assembling one DICOM series into a volume: choosing the series, ordering slices, refusing gaps.

A folder with several series needs the series UID (guessing would mix sequences). Slices are
ordered by their position along the slice normal; a series whose slices are not evenly spaced
(a file missing from the middle, duplicated files) is refused, because ITK would stack it at
one average spacing, or with ``allow_gaps`` resampled onto even slices with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from osteomet.data.image_errors import ImageReadError

_logger = logging.getLogger(__name__)

#: Slices of a DICOM series are evenly spaced when every step between neighbours is within
#: this fraction of the typical (median) step, or within ``SLICE_STEP_TOL_MM``.
SLICE_STEP_TOL = 0.02
SLICE_STEP_TOL_MM = 0.01


#: Where a user chooses one series of a folder, by command (shown when a folder holds several).
SERIES_CHOICE = ("the manifest column <image>_series_uid (t2_series_uid, dwi_series_uid, adc_series_uid, "
                 "ct_series_uid), `osteomet predict mri --t2-series/--dwi-series/--adc-series`, or "
                 "`osteomet image info --series-uid`")


def list_series(folder: Path) -> list[tuple[str, str, int]]:
    """UID, SeriesDescription (empty when absent) and file count of every DICOM series in ``folder``.

    The description is read from one header per series, so listing stays cheap.
    """
    reader = sitk.ImageSeriesReader()
    found = []
    for uid in reader.GetGDCMSeriesIDs(str(folder)):
        files = reader.GetGDCMSeriesFileNames(str(folder), uid)
        description = ""
        if files:
            header = sitk.ImageFileReader()
            header.SetFileName(str(files[0]))
            try:
                header.ReadImageInformation()
                if header.HasMetaDataKey("0008|103e"):
                    description = header.GetMetaData("0008|103e").strip()
            except RuntimeError:
                pass
        found.append((uid, description, len(files)))
    return found


def describe_series(series: Sequence[tuple[str, str, int]]) -> str:
    """``UID ('T2 TSE ax', 19 files); ...`` for a message that asks the user to choose one."""
    return "; ".join(f"{uid or '<no UID>'} ({repr(description) + ', ' if description else ''}{n} files)"
                     for uid, description, n in series)


def read_dicom_series(folder: Path, series_uid: str | None, allow_gaps: bool = False) -> sitk.Image:
    """The series ``series_uid`` (or the folder's only series) of ``folder``, slices in position order."""
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise ImageReadError(f"{folder}: no DICOM series found in this folder")
    if series_uid is None:
        if len(series) > 1:
            raise ImageReadError(
                f"{folder}: {len(series)} DICOM series in one folder: {describe_series(list_series(folder))}; "
                f"pass the series UID to choose one ({SERIES_CHOICE})"
            )
        series_uid = series[0]
    elif series_uid not in series:
        raise ImageReadError(f"{folder}: DICOM series {series_uid} not found (found {', '.join(s or '<no UID>' for s in series)})")
    files = list(reader.GetGDCMSeriesFileNames(str(folder), series_uid))
    positions = dicom_slice_positions(files)
    if positions is not None:  # GDCM falls back to file-name order when its own position sort fails
        order = np.argsort(positions, kind="stable")
        files, positions = [files[i] for i in order], positions[order]
    gaps = _uneven_steps(positions, files) if positions is not None else []
    if gaps and allow_gaps and not _strictly_monotonic(positions):
        raise ImageReadError(f"{folder}: slice spacing is not uniform: " + "; ".join(gaps)
                             + ". Two files share a slice position (duplicates?), so the series cannot be resampled "
                               "either; remove the duplicated files")
    if gaps and not allow_gaps:
        in_series = {Path(f).name for uid in series for f in reader.GetGDCMSeriesFileNames(str(folder), uid)}
        unread = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in in_series)
        hint = (f" ({len(unread)} file(s) in the folder could not be read as part of a series: "
                f"{', '.join(unread[:5])}{' ...' if len(unread) > 5 else ''}; damaged?)" if unread else "")
        raise ImageReadError(f"{folder}: slice spacing is not uniform: " + "; ".join(gaps) + hint
                             + ". Restore the missing DICOM files, or read the series with allow_gaps=True "
                               "to resample it onto evenly spaced slices")
    reader.SetFileNames(files)
    image = reader.Execute()
    if gaps:
        assert positions is not None
        image = _onto_even_slices(image, positions)
        _logger.warning("%s: slice spacing is not uniform: %s. Resampled onto %d evenly spaced slices %.4g mm apart "
                        "by linear interpolation along the slice normal", folder, "; ".join(gaps),
                        image.GetSize()[2], image.GetSpacing()[2])
    return image


def dicom_slice_positions(files: Sequence[str]) -> np.ndarray | None:
    """Position (mm) of each DICOM file's slice along the series' slice normal, in file order.

    From ImagePositionPatient and ImageOrientationPatient, read from the headers only. None
    when a file lacks them (nothing to check against) or for a single file.
    """
    if len(files) < 2:
        return None
    positions, normal = [], None
    for name in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(name))
        try:
            reader.ReadImageInformation()
            ipp = [float(v) for v in reader.GetMetaData("0020|0032").split("\\")]
            iop = [float(v) for v in reader.GetMetaData("0020|0037").split("\\")]
        except (RuntimeError, ValueError):
            return None
        if len(ipp) != 3 or len(iop) != 6:
            return None
        this_normal = np.cross(iop[:3], iop[3:])
        if normal is None:
            normal = this_normal
        elif np.abs(this_normal - normal).max() > 1e-3:
            raise ImageReadError(f"{Path(name).parent}: slices of one series have different orientations "
                                 f"({Path(files[0]).name} vs {Path(name).name}); not a single volume")
        positions.append(float(np.dot(ipp, normal)))
    return np.asarray(positions)


def _uneven_steps(positions: np.ndarray, files: Sequence[str]) -> list[str]:
    """One line per step between neighbouring slices that differs from the typical step."""
    steps = np.diff(positions)
    step = float(np.median(steps))
    tol = max(SLICE_STEP_TOL * abs(step), SLICE_STEP_TOL_MM)
    problems = []
    if abs(step) <= tol:
        return [f"most slices share one position (typical step {step:.3g} mm): duplicated files?"]
    for i in np.flatnonzero(np.abs(steps - step) > tol):
        a, b = Path(files[i]).name, Path(files[i + 1]).name
        text = f"{steps[i]:.4g} mm between {a} and {b} instead of {abs(step):.4g} mm"
        missing = round(steps[i] / step) - 1
        if missing >= 1 and abs(steps[i] - (missing + 1) * step) <= tol * (missing + 1):
            where = ", ".join(f"{positions[i] + m * step:.2f}" for m in range(1, missing + 1))
            text += f" ({missing} slice(s) missing, at {where} mm along the slice normal)"
        problems.append(text)
    return problems


def _strictly_monotonic(positions: np.ndarray | None) -> bool:
    """True when every slice lies beyond the previous one, in one direction (no duplicates)."""
    if positions is None:
        return True
    steps = np.diff(positions) * np.sign(np.median(np.diff(positions)))
    return bool(np.all(steps > SLICE_STEP_TOL_MM))


def _onto_even_slices(image: sitk.Image, positions: np.ndarray) -> sitk.Image:
    """Resample the stacked slices onto evenly spaced ones, linearly along the slice normal.

    ITK stacked the slices in file order at one average spacing; their true positions are
    ``positions``. The new grid keeps the first and last slice and the typical step.
    """
    array = sitk.GetArrayFromImage(image).astype(np.float32)  # z, y, x in file order
    step = float(np.median(np.diff(positions)))
    n = round((positions[-1] - positions[0]) / step) + 1
    targets = positions[0] + np.arange(n) * (positions[-1] - positions[0]) / (n - 1)
    order = np.argsort(positions)
    sorted_pos = positions[order]
    upper = np.clip(np.searchsorted(sorted_pos, targets, side="left"), 1, len(sorted_pos) - 1)
    lower = upper - 1
    weight = (targets - sorted_pos[lower]) / (sorted_pos[upper] - sorted_pos[lower])
    weight = np.where(np.abs(weight) < 1e-6, 0.0, np.where(np.abs(weight - 1) < 1e-6, 1.0, weight))  # real slices kept exactly
    weight = weight[:, None, None]
    resampled = (1 - weight) * array[order[lower]] + weight * array[order[upper]]
    out = sitk.GetImageFromArray(resampled.astype(np.float32))
    out.SetOrigin(image.GetOrigin())
    out.SetDirection(image.GetDirection())
    out.SetSpacing((*image.GetSpacing()[:2], abs(positions[-1] - positions[0]) / (n - 1)))
    return out
