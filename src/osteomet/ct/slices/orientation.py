"""Which cached axial slice a voxel of the CT's own grid lies on.

Why: the slice cache (:func:`osteomet.ct.slices.cache.prepare_ct`) orients every CT to LPS before
cutting it into slices, so a detector's slice index is the LPS-oriented grid's z, while a lesion
mask written back on the CT's own grid (a DICOM series stored feet-first, a NIfTI in RAS, a
sagittal acquisition) indexes its voxels in the file's order. Orientation to LPS only permutes
and flips axes, so the slice index is an exact affine function of the voxel index; this module
computes it from the two grids' geometry, without touching voxel data.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def _affine(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """(M, origin): physical point = origin + M @ (x, y, z) index."""
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    return direction @ np.diag(np.asarray(image.GetSpacing(), float)), np.asarray(image.GetOrigin(), float)


def slice_index_map(image: sitk.Image) -> tuple[float, np.ndarray]:
    """(offset, coefficients): a voxel at array index (z, y, x) of ``image`` lies on LPS slice
    ``offset + coefficients @ (z, y, x)`` (integers, one coefficient +-1, the others 0)."""
    # DICOMOrient's output axes depend only on the direction cosines: ask a one-voxel image of the same direction
    probe = sitk.Image([1, 1, 1], sitk.sitkUInt8)
    probe.SetDirection(image.GetDirection())
    axis_z = np.asarray(sitk.DICOMOrient(probe, "LPS").GetDirection(), float).reshape(3, 3)[:, 2]
    m, origin = _affine(image)
    along = m.T @ axis_z  # mm along the oriented z axis per step of each (x, y, z) index
    step = float(np.abs(along).max())  # the oriented slice spacing
    corners = np.array([[i, j, k] for i in (0, image.GetSize()[0] - 1) for j in (0, image.GetSize()[1] - 1)
                        for k in (0, image.GetSize()[2] - 1)], float)
    first = float((corners @ along).min())  # the oriented grid starts at the lowest corner along its z
    return -first / step, (along / step)[::-1].copy()  # reordered for (z, y, x) array indices


def lps_slices(image: sitk.Image, zyx: np.ndarray) -> np.ndarray:
    """The LPS slice indices (int) of voxels given as an (N, 3) array of (z, y, x) indices of ``image``."""
    offset, coefficients = slice_index_map(image)
    return np.rint(offset + np.asarray(zyx, float).reshape(-1, 3) @ coefficients).astype(np.int64)


__all__ = ["lps_slices", "slice_index_map"]
