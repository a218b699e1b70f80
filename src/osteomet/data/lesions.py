"""What a lesion is, in one place: a 26-connected component of a binary mask, of at least ``min_voxels`` voxels.

Every step that splits a mask into lesions uses this module: CT post-processing (which removes
predicted components), the per-lesion CT analysis (which counts and matches them), the MRI
ROI's index lesion and the MRI largest-component step. So the "lesion" post-processing removes
is the one the per-lesion analysis counts.

Why 26-connectivity (voxels touching by a face, an edge or a corner are one lesion):

* it is what the reference tools do: ``picai_eval`` labels both the ground-truth lesions and
  the detection map's candidates with ``scipy.ndimage.label(..., structure=np.ones((3, 3, 3)))``,
  and nnU-Net v2's post-processing (``remove_all_but_largest_component`` in ``acvl_utils``) calls
  ``skimage.measure.label`` with its default, full connectivity (26 in 3D);
* the synthetic CT cohorts define their truth this way (each lesion one 26-connected
  component, lesions never touching), so the analysis counts exactly the lesions generated;
* a lesion is one object in space: a metastasis whose edge steps diagonally from one slice to
  the next, or a thin segmentation that touches itself at a corner, is still one lesion. A
  stricter rule (6-connectivity, or the 8-in-plane-plus-2-through-plane rule used before)
  splits such a lesion into several, which inflates lesion counts and false positives.

``MIN_LESION_VOXELS`` (1) keeps every component; a caller that drops small components (CT
post-processing by volume in ml, chosen on validation) does so on the components of this module.
"""

from __future__ import annotations

import numpy as np

from osteomet.errors import InputError

#: Neighbours per voxel that join it to a lesion (faces, edges and corners).
CONNECTIVITY = 26
#: The same neighbourhood as a ``scipy.ndimage`` structuring element (z, y, x).
STRUCTURE = np.ones((3, 3, 3), dtype=bool)
#: Smallest lesion, in voxels, unless a caller asks for more.
MIN_LESION_VOXELS = 1


def label_components(mask: np.ndarray, *, min_voxels: int = MIN_LESION_VOXELS) -> tuple[np.ndarray, int]:
    """Lesions of a 3D binary (z, y, x) array: a label array (0 background, 1..n) and n.

    Labels follow the raster order of each lesion's first voxel (as ``scipy.ndimage.label`` and
    SimpleITK's ``ConnectedComponent`` number them). Components smaller than ``min_voxels`` are
    dropped and the others renumbered in the same order.
    """
    import cc3d

    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise InputError(f"lesion mask must be 3D, got shape {mask.shape}")
    labels, n = cc3d.connected_components(mask.astype(bool, copy=False).astype(np.uint8), connectivity=CONNECTIVITY,
                                          return_N=True)
    if min_voxels > 1 and n:
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        keep = sizes >= min_voxels
        keep[0] = False
        renumber = np.zeros(n + 1, labels.dtype)
        renumber[keep] = np.arange(1, int(keep.sum()) + 1)
        labels, n = renumber[labels], int(keep.sum())
    return labels, int(n)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest lesion of a binary mask (uint8 0/1; the first in raster order on a tie; empty stays empty)."""
    labels, n = label_components(mask)
    if n <= 1:
        return (labels > 0).astype(np.uint8)
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    return (labels == int(np.argmax(counts))).astype(np.uint8)
