"""The grid of an image in physical space: whether two images lie on the same one, and resampling onto one.

Matching is by world coordinates (origin, spacing, direction), never by array shape: DWI
and ADC usually have a coarser matrix and a different field of view than T2. A mask whose
header differs from its image by annotation-tool round-off is accepted and given the image's
header (:func:`align_to_reference`); anything further off is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from osteomet.data.image_errors import ImageError
from osteomet.data.images import PathLike

_logger = logging.getLogger(__name__)

#: Tolerances used to *name* which header fields differ (mm and direction cosines); whether
#: two grids count as the same is decided physically, by :data:`GEOMETRY_TOLERANCE_VOXELS`.
SPACING_TOL = 1e-3
ORIGIN_TOL = 1e-2
DIRECTION_TOL = 1e-4

#: Two grids of the same size are "the same" when no corner of the image box moves by more
#: than this fraction of the smallest voxel spacing between them. Annotation tools store
#: headers with small round-off (PI-CAI's ProstateX lesion masks have direction cosines about
#: 4e-4 off the DICOM T2: about 0.1 mm at the far corner of a 192 mm field of view, 0.22 of a
#: 0.5 mm voxel). Below half a voxel, copying the reference header places every mask voxel
#: exactly where nearest-neighbour resampling would; a quarter voxel keeps a 2x margin on that.
GEOMETRY_TOLERANCE_VOXELS = 0.25

#: Two volumes that must be brought onto one grid (DWI and ADC onto T2) must overlap by at least
#: this fraction of the reference grid: less almost always means a wrong file or a broken header.
MIN_OVERLAP = 0.05


class GeometryMismatchError(ImageError):
    """Two images that must share a grid do not."""


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

    def corners(self, size: Sequence[int] | None = None) -> np.ndarray:
        """World coordinates (8 x 3, mm) of the corners of the image box (outer voxel edges)."""
        size = np.asarray(self.size if size is None else size, float)
        spacing = np.asarray(self.spacing, float)
        direction = np.asarray(self.direction, float).reshape(3, 3)
        index = np.array([[-0.5 + size[a] * ((k >> a) & 1) for a in range(3)] for k in range(8)])
        return np.asarray(self.origin, float) + (index * spacing) @ direction.T

    def displacement_mm(self, other: "Geometry") -> float:
        """Largest distance (mm) between where the two grids put the same corner of this image's box.

        The index-to-world map is affine, so the largest displacement of any point of the
        image is at one of the 8 corners.
        """
        return float(np.linalg.norm(self.corners() - other.corners(self.size), axis=1).max())

    def differences(self, other: "Geometry", *, tolerance: float = GEOMETRY_TOLERANCE_VOXELS) -> list[str]:
        """Human-readable list of what differs (empty when the grids match).

        Sizes must be equal; beyond that the grids match when no corner of the image box moves
        by more than ``tolerance`` times the smallest voxel spacing (see
        :data:`GEOMETRY_TOLERANCE_VOXELS`). When they do not, the message gives the displacement
        in mm and names the header fields that differ.
        """
        out = []
        if self.size != other.size:
            out.append(f"size {self.size} vs {other.size}")
        moved = self.displacement_mm(other)
        limit = tolerance * min(min(self.spacing), min(other.spacing))
        if moved <= limit:
            return out
        if not np.allclose(self.spacing, other.spacing, atol=SPACING_TOL):
            out.append(f"spacing {_fmt(self.spacing)} vs {_fmt(other.spacing)} mm")
        if not np.allclose(self.origin, other.origin, atol=ORIGIN_TOL):
            out.append(f"origin {_fmt(self.origin)} vs {_fmt(other.origin)} mm")
        if not np.allclose(self.direction, other.direction, atol=DIRECTION_TOL):
            out.append(f"direction {_fmt(self.direction)} vs {_fmt(other.direction)}")
        out.append(f"image corners up to {moved:.3g} mm apart (limit {limit:.3g} mm = {tolerance:g} of the smallest voxel)")
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


def check_same_geometry(image: sitk.Image, reference: sitk.Image, *, name: PathLike | str, reference_name: PathLike | str) -> None:
    """Raise unless ``image`` lies on ``reference``'s grid (same size, corners within the tolerance)."""
    diffs = Geometry.of(image).differences(Geometry.of(reference))
    if diffs:
        raise GeometryMismatchError(f"{name}: not on the grid of {reference_name}: " + "; ".join(diffs)
                                    + "; resample it onto that grid, or check that it belongs to this image")


def align_to_reference(image: sitk.Image, reference: sitk.Image, *, name: PathLike | str,
                       reference_name: PathLike | str) -> sitk.Image:
    """``image`` with ``reference``'s exact header, after checking the two grids agree physically.

    Masks from annotation tools carry headers that differ from their image by round-off;
    once :func:`check_same_geometry` accepts them, the reference header is copied (and the
    displacement logged) so every later step sees one grid.
    """
    check_same_geometry(image, reference, name=name, reference_name=reference_name)
    own, ref = Geometry.of(image), Geometry.of(reference)
    if own == ref:
        return image
    moved = own.displacement_mm(ref)
    out = sitk.Image(image)
    out.CopyInformation(reference)
    level = logging.INFO if moved < 0.01 * min(ref.spacing) else logging.WARNING
    _logger.log(level, "%s: header differs from %s by at most %.3g mm at the image corners (within %g voxel); "
                "copied the reference geometry onto it", name, reference_name, moved, GEOMETRY_TOLERANCE_VOXELS)
    return out


def resample_to(image: sitk.Image, geometry: Geometry, *, interpolator: int = sitk.sitkLinear,
                default: float = 0.0, min_overlap: float = 0.0, name: PathLike | str = "image",
                reference_name: PathLike | str = "reference") -> sitk.Image:
    """``image`` resampled onto ``geometry`` in physical space (identity transform); ``default`` outside it.

    Matching is by world coordinates (origin, spacing, direction), never by array shape:
    DWI and ADC usually have a coarser matrix and a different field of view than T2.
    Nearest neighbour keeps the pixel type; any other interpolator gives float32. With
    ``min_overlap`` (e.g. :data:`MIN_OVERLAP`), an image covering less of the grid than that
    is refused (:func:`check_overlap`, whose message names ``name`` and ``reference_name``).
    """
    if min_overlap > 0:
        check_overlap(image, geometry, min_overlap=min_overlap, name=name, reference_name=reference_name)
    pixel = sitk.sitkFloat32 if interpolator != sitk.sitkNearestNeighbor else image.GetPixelID()
    return sitk.Resample(image, geometry.blank(pixel), sitk.Transform(), interpolator, default, pixel)


def coverage_mask(source: sitk.Image, grid: Geometry) -> sitk.Image:
    """The voxels of ``grid`` whose centre lies inside ``source``'s field of view (1), the rest 0 (uint8)."""
    ones = sitk.Image(source.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(source)
    return resample_to(ones, grid, interpolator=sitk.sitkNearestNeighbor)


def physical_overlap_fraction(moving: sitk.Image, grid: Geometry) -> float:
    """Fraction of the voxels of ``grid`` whose centre falls inside ``moving``'s extent."""
    inside = coverage_mask(moving, grid)  # kept alive while its array view is read
    return float(sitk.GetArrayViewFromImage(inside).mean())


def check_overlap(moving: sitk.Image, grid: Geometry, *, min_overlap: float = MIN_OVERLAP,
                  name: PathLike | str = "image", reference_name: PathLike | str = "reference") -> None:
    """Raise when ``moving`` covers less than ``min_overlap`` of ``grid`` in physical space.

    Two acquisitions of one patient that barely overlap almost always mean a wrong file or a
    broken header rather than a real acquisition.
    """
    overlap = physical_overlap_fraction(moving, grid)
    if overlap < min_overlap:
        raise GeometryMismatchError(
            f"{name}: covers only {overlap:.1%} of {reference_name} in physical space "
            f"(origin {_fmt(moving.GetOrigin())} vs {_fmt(grid.origin)} mm); wrong series or header?"
        )
