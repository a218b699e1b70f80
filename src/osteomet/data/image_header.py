"""Checking an image from its header alone: what a study checks for every patient before its first stage.

Reading every voxel of a cohort takes the preprocessing stage minutes; the header says in
milliseconds whether a file is an image at all, a 3D scalar volume on a physical grid, and
(for a DICOM folder) which series it holds. So `run mri` refuses a manifest whose images
fail here before anything is written, naming every patient and file, instead of failing one
patient at a time stages later. What only the voxels tell (NaN, a truncated gzip stream,
missing DICOM slices) is left to :func:`osteomet.data.images.read_image`.
"""

from __future__ import annotations

import os
from pathlib import Path

import SimpleITK as sitk

from osteomet.data.image_errors import ImageReadError
from osteomet.data.images import image_format

PathLike = str | os.PathLike[str]


def check_image_header(path: PathLike, series_uid: str | None = None) -> None:
    """Raise :class:`ImageReadError` naming ``path`` when its header is not that of a usable 3D volume."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: file or folder does not exist")
    kind = image_format(path)
    if kind in ("dicom", "dicom-file"):
        _check_dicom_folder(path if kind == "dicom" else path.parent, series_uid)
        return
    if series_uid is not None:
        raise ImageReadError(f"{path}: a DICOM series UID ({series_uid}) was given, but this is not a DICOM series")
    if kind in (".nii", ".nii.gz"):
        _check_nifti_spacing(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        detail = next((line for line in lines if "rror" in line), lines[-1] if lines else "")
        raise ImageReadError(f"{path}: cannot be read as an image ({detail.strip()})") from exc
    _check_shape(path, reader.GetDimension(), reader.GetNumberOfComponents(), reader.GetSpacing())


def _check_shape(path: Path, dimension: int, components: int, spacing: tuple[float, ...]) -> None:
    if dimension != 3:
        raise ImageReadError(f"{path}: expected a 3D volume, got {dimension}D")
    if components != 1:
        raise ImageReadError(f"{path}: expected a scalar image, got {components} components per voxel")
    if not all(s == s and s > 0 for s in spacing):
        raise ImageReadError(f"{path}: voxel spacing {tuple(round(s, 4) for s in spacing)} mm is not a physical grid "
                             f"(zero, negative or not a number); re-export the image with its true spacing")


def _check_nifti_spacing(path: Path) -> None:
    """ITK reads a zero NIfTI ``pixdim`` as 1 mm, so the header's own values are checked."""
    from osteomet.data.nifti_integrity import _check_pixdim, _raw_pixdim

    try:
        pixdim = _raw_pixdim(path)
    except (OSError, EOFError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot be read as an image (not a readable NIfTI header: {exc})") from exc
    _check_pixdim(path, pixdim)


def _check_dicom_folder(folder: Path, series_uid: str | None) -> None:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise ImageReadError(f"{folder}: no DICOM series found in this folder")
    if series_uid is None and len(series) > 1:
        raise ImageReadError(f"{folder}: {len(series)} DICOM series in one folder ({', '.join(s or '<no UID>' for s in series)}); "
                             f"choose one with the manifest column <image>_series_uid")
    if series_uid is not None and series_uid not in series:
        raise ImageReadError(f"{folder}: DICOM series {series_uid} not found (found {', '.join(series)})")
