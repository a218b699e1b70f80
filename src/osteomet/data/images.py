"""Reading and writing image volumes through SimpleITK, geometry kept.

Every reader returns a ``SimpleITK.Image`` so spacing, origin and direction travel with
the voxels; arrays are only taken out once geometry has been settled. Errors name the
file and say what is wrong, because a cohort of hundreds of cases is otherwise hopeless
to debug.

Broken files are refused rather than repaired silently: a truncated NIfTI (ITK fills the
missing voxels with 0), NaN voxels (ITK's NIfTI reader turns them into 0) and DICOM series
with missing or unevenly spaced slices (ITK stacks them at one average spacing) are
checked before any voxel reaches a model (:mod:`osteomet.data.nifti_integrity`,
:mod:`osteomet.data.dicom_series`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from osteomet.data.dicom_series import read_dicom_series
from osteomet.data.formats import VOLUME_SUFFIXES
from osteomet.data.image_errors import ImageError, ImageReadError
from osteomet.data.nifti_integrity import check_nifti_file
from osteomet.utils.files import atomic_path, full_suffix

PathLike = str | os.PathLike[str]

#: File suffixes read as single volumes; a directory is read as a DICOM series.


def image_format(path: PathLike) -> str:
    """'dicom' for a directory, else the volume suffix; raises for anything else."""
    path = Path(path)
    if path.is_dir():
        return "dicom"
    suffix = full_suffix(path)
    if suffix in VOLUME_SUFFIXES:
        return suffix
    if suffix == ".dcm":
        return "dicom-file"
    raise ImageReadError(
        f"{path}: unsupported image format {suffix!r}; expected a DICOM series folder or one of "
        + ", ".join(VOLUME_SUFFIXES)
    )


def read_image(path: PathLike, *, pixel_type: int | None = None, series_uid: str | None = None,
               allow_gaps: bool = False) -> sitk.Image:
    """Read a DICOM series folder, NIfTI, MHA/MHD or NRRD file, keeping its geometry.

    A folder with more than one DICOM series needs ``series_uid``: guessing would silently
    mix sequences. A series whose slices are not evenly spaced (a file missing from the
    middle) is refused, or with ``allow_gaps`` resampled onto even slices with a warning.
    Truncated NIfTI files and non-finite voxels are refused here, before any cast, so that
    no later stage sees made-up zeros or NaN.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: file or folder does not exist")
    kind = image_format(path)
    if series_uid is not None and kind not in ("dicom", "dicom-file"):
        raise ImageReadError(f"{path}: a DICOM series UID ({series_uid}) was given, but this is not a DICOM series")
    try:
        if kind == "dicom":
            image = read_dicom_series(path, series_uid, allow_gaps)
        elif kind == "dicom-file":
            image = read_dicom_series(path.parent, series_uid, allow_gaps)
        else:
            if kind in (".nii", ".nii.gz"):
                check_nifti_file(path)
            image = sitk.ReadImage(str(path))
    except ImageError:
        raise
    except RuntimeError as exc:  # SimpleITK raises RuntimeError with ITK's text
        first = str(exc).strip().splitlines()
        detail = next((line for line in first if "ERROR" in line or "rror" in line), first[-1] if first else "")
        raise ImageReadError(f"{path}: cannot be read as an image ({detail.strip()})") from exc
    if image.GetDimension() != 3:
        raise ImageReadError(f"{path}: expected a 3D volume, got {image.GetDimension()}D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(f"{path}: expected a scalar image, got {image.GetNumberOfComponentsPerPixel()} components per voxel")
    spacing = image.GetSpacing()
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ImageReadError(f"{path}: voxel spacing {tuple(round(s, 4) for s in spacing)} mm is not a physical grid "
                             f"(zero, negative or not a number); re-export the image with its true spacing")
    check_finite(image, path)  # before the cast: NaN cast to an integer type becomes a number
    if pixel_type is not None:
        image = sitk.Cast(image, pixel_type)
    return image


def check_finite(image: sitk.Image, path: PathLike | str = "image") -> None:
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0][::-1])
            raise ImageError(f"{path}: {int(bad.sum())} voxels are NaN or infinite (first at voxel x,y,z={first})")


def write_image(image: sitk.Image, path: PathLike, *, compress: bool = True) -> Path:
    """Write atomically (temporary name, then rename); the format follows the suffix."""
    path = Path(path)
    image_format(path)  # refuse unknown suffixes before writing anything
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
    return path
