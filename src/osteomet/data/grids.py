"""Invertible grid changes: a fixed-size segmentation grid over the T2 extent, and ROI grids.

Everything is defined in physical space from the T2 geometry, and the geometry of every
derived grid is recorded, so a prediction on any grid goes back onto the original T2 grid
by resampling (never by array reshaping). When a mask holds several lesions, the ROI is
centred on one of them, chosen by :data:`INDEX_LESION_RULE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from osteomet.data.geometry import Geometry, resample_to
from osteomet.data.lesions import label_components
from osteomet.errors import InputError


def same_extent_grid(reference: sitk.Image, size: Sequence[int]) -> Geometry:
    """A grid of ``size`` voxels covering exactly the physical box of ``reference`` (voxel edges aligned)."""
    old_size = np.asarray(reference.GetSize(), float)
    old_spacing = np.asarray(reference.GetSpacing(), float)
    new_size = np.asarray(size, float)
    new_spacing = old_spacing * old_size / new_size
    direction = np.asarray(reference.GetDirection(), float).reshape(3, 3)
    origin = np.asarray(reference.GetOrigin(), float) + direction @ ((new_spacing - old_spacing) / 2.0)
    return Geometry(tuple(int(s) for s in size), tuple(new_spacing), tuple(origin), tuple(direction.ravel()))


def centred_grid(reference: sitk.Image, centre_mm: Sequence[float], size: Sequence[int],
                 spacing: Sequence[float] | None) -> Geometry:
    """A grid of ``size`` voxels centred on a world point, oriented like ``reference``."""
    spacing_v = np.asarray(spacing if spacing is not None else reference.GetSpacing(), float)
    direction = np.asarray(reference.GetDirection(), float).reshape(3, 3)
    half = (np.asarray(size, float) - 1.0) / 2.0 * spacing_v
    origin = np.asarray(centre_mm, float) - direction @ half
    return Geometry(tuple(int(s) for s in size), tuple(spacing_v), tuple(origin), tuple(direction.ravel()))


def mask_to(mask: sitk.Image, geometry: Geometry) -> sitk.Image:
    """Binary mask onto another grid: linear interpolation of the 0/1 mask, then >= 0.5.

    Thresholding the interpolated mask keeps its shape better than nearest neighbour when
    the grid is much coarser or finer, which is what makes the round trip faithful.
    """
    soft = resample_to(sitk.Cast(mask, sitk.sitkFloat32), geometry, interpolator=sitk.sitkLinear)
    return sitk.Cast(soft >= 0.5, sitk.sitkUInt8)


def array_on(geometry: Geometry, array: np.ndarray) -> sitk.Image:
    """Wrap a numpy array (z, y, x) as an image on ``geometry``."""
    if tuple(array.shape[::-1]) != tuple(geometry.size):
        raise InputError(f"array of shape {array.shape} does not fit grid size {geometry.size} (x, y, z)")
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


def mask_bbox_centre(mask: sitk.Image) -> tuple[float, float, float]:
    """World coordinates of the centre of the mask's bounding box."""
    array = sitk.GetArrayViewFromImage(mask)
    where = np.argwhere(array > 0)
    if where.size == 0:
        raise InputError("mask is empty: no bounding box")
    lo, hi = where.min(0), where.max(0)
    centre_index = ((lo + hi) / 2.0)[::-1]  # to x, y, z
    return tuple(mask.TransformContinuousIndexToPhysicalPoint([float(c) for c in centre_index]))


#: How the ROI's lesion is chosen when a mask holds several (recorded in ``transform.json``).
#: The index lesion of prostate MRI is the one of highest grade; PI-CAI masks store each
#: lesion's ISUP grade (2-5) as its label, and a binary mask (all labels 1) falls back on size.
INDEX_LESION_RULE = "highest label (the ISUP grade in PI-CAI masks), then most voxels"


@dataclass(frozen=True)
class Lesion:
    """One connected lesion of a tumour mask."""

    component: int  # its value in the component image
    label: int  # highest mask label inside it
    voxels: int
    centre_mm: tuple[float, float, float]  # centre of its bounding box, world coordinates

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "voxels": self.voxels, "centre_mm": list(self.centre_mm)}


def split_lesions(labels: sitk.Image) -> tuple[sitk.Image, list[Lesion]]:
    """Lesions (non-zero voxels, :func:`osteomet.data.lesions.label_components`) of a label mask, and their
    component image.

    Lesions are listed largest first. A lesion's label is the highest label inside it, so
    two touching lesions of different grade count as one of the higher grade.
    """
    label_array = sitk.GetArrayViewFromImage(labels)
    component_array = label_components(label_array > 0)[0].astype(np.uint32)
    components = sitk.GetImageFromArray(component_array)
    components.CopyInformation(labels)
    lesions = []
    for number, box in enumerate(ndimage.find_objects(component_array), start=1):
        if box is None:
            continue
        inside = component_array[box] == number
        lo = np.array([s.start for s in box], float)
        hi = np.array([s.stop - 1 for s in box], float)
        centre_index = ((lo + hi) / 2.0)[::-1]  # to x, y, z
        centre = components.TransformContinuousIndexToPhysicalPoint([float(c) for c in centre_index])
        lesions.append(Lesion(number, int(label_array[box][inside].max()), int(inside.sum()),
                              tuple(float(c) for c in centre)))
    if not lesions:
        raise InputError("mask is empty: no lesion")
    lesions.sort(key=lambda lesion: (-lesion.voxels, lesion.component))
    return components, lesions


def index_lesion(lesions: Sequence[Lesion]) -> int:
    """Position in ``lesions`` of the lesion the ROI is centred on (:data:`INDEX_LESION_RULE`)."""
    return max(range(len(lesions)), key=lambda i: (lesions[i].label, lesions[i].voxels, -i))
