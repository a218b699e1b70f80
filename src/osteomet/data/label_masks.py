"""Reading tumour masks and label maps: integer labels checked, grid checked against the image.

Real annotations label lesions with integers (PI-CAI: each lesion's ISUP grade, 2-5; other
tools: 255, or 1..N per lesion); any positive label is tumour. A mask given with a reference
image must lie on its grid (:func:`osteomet.data.geometry.align_to_reference`).
"""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk

from osteomet.data.geometry import align_to_reference
from osteomet.data.image_errors import ImageError
from osteomet.data.images import PathLike, read_image

_logger = logging.getLogger(__name__)


class MaskError(ImageError):
    """A mask is empty, not binary, or otherwise unusable."""


def read_lesion_labels(path: PathLike, *, reference: sitk.Image | None = None,
                       reference_name: PathLike | str = "the reference image", allow_empty: bool = False) -> sitk.Image:
    """Read a tumour mask keeping its integer labels: 0 is background, any positive label is tumour.

    Real annotations label lesions with integers (PI-CAI: each lesion's ISUP grade, 2-5;
    other tools: 255, or 1..N per lesion), so integer masks are accepted as "non-zero =
    tumour". A float mask must hold only 0 and 1: other values mean a probability map or a
    resampled mask, whose threshold is the user's call. Negative labels are refused.
    """
    labels = read_image(path)
    array = sitk.GetArrayViewFromImage(labels)
    values = np.unique(array)
    if np.issubdtype(array.dtype, np.floating):
        extra = [v for v in values.tolist() if v not in (0, 1)]
        if extra:
            shown = ", ".join(f"{v:g}" for v in extra[:6]) + (" ..." if len(extra) > 6 else "")
            raise MaskError(f"{path}: mask is not binary: a float mask must hold only 0 and 1, this one has {shown}; "
                            f"threshold it (or store integer labels) first")
    if values.min() < 0:
        raise MaskError(f"{path}: mask has negative labels (min {values.min():g}); labels must be 0 (background) "
                        f"or positive (tumour)")
    if not allow_empty and values.max() <= 0:
        raise MaskError(f"{path}: mask is empty (no tumour voxel)")
    positive = [int(v) for v in values.tolist() if v > 0]
    if positive and positive != [1]:
        _logger.info("%s: mask labels %s read as tumour (non-zero = tumour)", path, positive[:10])
    labels = sitk.Cast(labels, sitk.sitkUInt8 if values.max() <= 255 else sitk.sitkUInt16)
    if reference is not None:
        labels = align_to_reference(labels, reference, name=path, reference_name=reference_name)
    return labels


def read_mask(path: PathLike, *, reference: sitk.Image | None = None, reference_name: PathLike | str = "the reference image",
              allow_empty: bool = False) -> sitk.Image:
    """Read a tumour mask as 0/1 (uint8), optionally checked against and aligned to a reference grid.

    Any positive integer label counts as tumour (see :func:`read_lesion_labels`).
    """
    labels = read_lesion_labels(path, reference=reference, reference_name=reference_name, allow_empty=allow_empty)
    return sitk.Cast(labels > 0, sitk.sitkUInt8)


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
        labels = align_to_reference(labels, reference, name=path, reference_name=reference_name)
    return labels
