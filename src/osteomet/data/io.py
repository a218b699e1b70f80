"""Image I/O through SimpleITK with geometry kept and checked.

Every reader returns a ``SimpleITK.Image`` so spacing, origin and direction travel with
the voxels; arrays are only taken out once geometry has been settled. Errors name the
file and say what is wrong, because a cohort of hundreds of cases is otherwise hopeless
to debug.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from osteomet.errors import InputError
from osteomet.utils.files import atomic_path, full_suffix

PathLike = str | os.PathLike[str]

#: File suffixes read as single volumes; a directory is read as a DICOM series.
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".seg.nrrd")

#: Default tolerances when two grids must be "the same" (mm and direction cosines).
SPACING_TOL = 1e-3
ORIGIN_TOL = 1e-2
DIRECTION_TOL = 1e-4


class ImageError(InputError):
    """Base class for image problems; the message always names the file."""


class ImageReadError(ImageError):
    """A file or folder could not be read as an image."""


class GeometryMismatchError(ImageError):
    """Two images that must share a grid do not."""


class MaskError(ImageError):
    """A mask is empty, not binary, or otherwise unusable."""


@dataclass(frozen=True)
class Geometry:
    """Grid of an image in physical space (SimpleITK/LPS conventions, x-y-z order)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> "Geometry":
        return cls(
            tuple(int(s) for s in image.GetSize()),
            tuple(float(s) for s in image.GetSpacing()),
            tuple(float(o) for o in image.GetOrigin()),
            tuple(float(d) for d in image.GetDirection()),
        )

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        return {
            "size": list(self.size),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": list(self.direction),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Geometry":
        return cls(
            tuple(int(v) for v in data["size"]),
            tuple(float(v) for v in data["spacing"]),
            tuple(float(v) for v in data["origin"]),
            tuple(float(v) for v in data["direction"]),
        )

    def differences(self, other: "Geometry") -> list[str]:
        """Human-readable list of what differs (empty when the grids match)."""
        out = []
        if self.size != other.size:
            out.append(f"size {self.size} vs {other.size}")
        if not np.allclose(self.spacing, other.spacing, atol=SPACING_TOL):
            out.append(f"spacing {_fmt(self.spacing)} vs {_fmt(other.spacing)} mm")
        if not np.allclose(self.origin, other.origin, atol=ORIGIN_TOL):
            out.append(f"origin {_fmt(self.origin)} vs {_fmt(other.origin)} mm")
        if not np.allclose(self.direction, other.direction, atol=DIRECTION_TOL):
            out.append(f"direction {_fmt(self.direction)} vs {_fmt(other.direction)}")
        return out

    def blank(self, pixel_type: int = sitk.sitkFloat32) -> sitk.Image:
        """An all-zero image on this grid."""
        image = sitk.Image([int(s) for s in self.size], pixel_type)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


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


def read_image(path: PathLike, *, pixel_type: int | None = None, series_uid: str | None = None) -> sitk.Image:
    """Read a DICOM series folder, NIfTI, MHA/MHD or NRRD file, keeping its geometry.

    A folder with more than one DICOM series needs ``series_uid``: guessing would silently
    mix sequences. Non-finite voxels are rejected here so that no later stage sees NaN.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: file or folder does not exist")
    kind = image_format(path)
    try:
        if kind == "dicom":
            image = _read_dicom_series(path, series_uid)
        elif kind == "dicom-file":
            image = _read_dicom_series(path.parent, series_uid)
        else:
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
    if pixel_type is not None:
        image = sitk.Cast(image, pixel_type)
    check_finite(image, path)
    return image


def _read_dicom_series(folder: Path, series_uid: str | None) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise ImageReadError(f"{folder}: no DICOM series found in this folder")
    if series_uid is None:
        if len(series) > 1:
            raise ImageReadError(
                f"{folder}: {len(series)} DICOM series in one folder ({', '.join(series)}); pass the series UID to choose one"
            )
        series_uid = series[0]
    elif series_uid not in series:
        raise ImageReadError(f"{folder}: DICOM series {series_uid} not found (found {', '.join(series)})")
    files = reader.GetGDCMSeriesFileNames(str(folder), series_uid)
    reader.SetFileNames(files)
    return reader.Execute()


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


def check_same_geometry(image: sitk.Image, reference: sitk.Image, *, name: PathLike | str, reference_name: PathLike | str) -> None:
    diffs = Geometry.of(image).differences(Geometry.of(reference))
    if diffs:
        raise GeometryMismatchError(f"{name}: not on the grid of {reference_name}: " + "; ".join(diffs))


def read_mask(path: PathLike, *, reference: sitk.Image | None = None, reference_name: PathLike | str = "the reference image",
              allow_empty: bool = False) -> sitk.Image:
    """Read a binary mask (values 0/1 only), optionally checked against a reference grid.

    A mask whose values are 0/255 or labels 0..N is refused rather than silently
    binarised: which label means tumour is the user's call, not ours.
    """
    mask = read_image(path)
    values = np.unique(sitk.GetArrayViewFromImage(mask))
    extra = [v for v in values.tolist() if v not in (0, 1)]
    if extra:
        shown = ", ".join(f"{v:g}" for v in extra[:6]) + (" ..." if len(extra) > 6 else "")
        raise MaskError(f"{path}: mask is not binary: it contains values other than 0 and 1 ({shown})")
    if not allow_empty and 1 not in values.tolist():
        raise MaskError(f"{path}: mask is empty (no voxel is 1)")
    mask = sitk.Cast(mask, sitk.sitkUInt8)
    if reference is not None:
        check_same_geometry(mask, reference, name=path, reference_name=reference_name)
    return mask


def read_label_map(path: PathLike, *, reference: sitk.Image | None = None,
                   reference_name: PathLike | str = "the reference image") -> sitk.Image:
    """Read an integer label map (e.g. TotalSegmentator bones), checked for integer values and grid."""
    labels = read_image(path)
    array = sitk.GetArrayViewFromImage(labels)
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.mod(array, 1) == 0):
        raise MaskError(f"{path}: label map has non-integer values")
    if array.min() < 0:
        raise MaskError(f"{path}: label map has negative labels (min {array.min():g})")
    labels = sitk.Cast(labels, sitk.sitkUInt16)
    if reference is not None:
        check_same_geometry(labels, reference, name=path, reference_name=reference_name)
    return labels


def physical_overlap_fraction(moving: sitk.Image, reference: sitk.Image) -> float:
    """Fraction of the reference grid's voxels whose centre falls inside ``moving``'s extent."""
    ones = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving)
    inside = sitk.Resample(ones, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return float(sitk.GetArrayViewFromImage(inside).mean())


def resample_to_reference(moving: sitk.Image, reference: sitk.Image, *, interpolator: int = sitk.sitkLinear,
                          default_value: float = 0.0, name: PathLike | str = "image",
                          reference_name: PathLike | str = "reference", min_overlap: float = 0.05) -> sitk.Image:
    """Resample ``moving`` onto the grid of ``reference`` in physical space (identity transform).

    Matching is by world coordinates (origin, spacing, direction), never by array shape:
    DWI and ADC usually have a coarser matrix and a different field of view than T2.
    Raises when the two volumes barely overlap, which almost always means a wrong file
    or a broken header rather than a real acquisition.
    """
    overlap = physical_overlap_fraction(moving, reference)
    if overlap < min_overlap:
        raise GeometryMismatchError(
            f"{name}: covers only {overlap:.1%} of {reference_name} in physical space "
            f"(origin {_fmt(moving.GetOrigin())} vs {_fmt(reference.GetOrigin())} mm); wrong series or header?"
        )
    pixel = sitk.sitkFloat32 if interpolator != sitk.sitkNearestNeighbor else moving.GetPixelID()
    return sitk.Resample(moving, reference, sitk.Transform(), interpolator, default_value, pixel)
