"""3D lesions from a binary CT lesion mask, with geometry and HU statistics per lesion.

Definition of a lesion
----------------------
A lesion is a 26-connected component of the mask (:mod:`osteomet.data.lesions`, the one
definition shared with CT post-processing and the MRI steps, which says why): voxels touching by
a face, an edge or a corner belong to one lesion.

For speed on large volumes labelling runs only inside the bounding boxes of 26-connected
components of a coarse (8-voxel block) copy of the mask: two touching voxels lie in the same or
touching blocks, so every lesion lies within one such coarse component and the result is exact,
while most of the volume is never visited twice and no dense label volume is built.

Lesion ids are 1..N in the order of each lesion's first voxel in (z, y, x) raster order,
so they do not depend on how the work was split.
"""


from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from osteomet.data.lesions import STRUCTURE, label_components
from osteomet.errors import InputError

_BLOCK = 8

#: Columns of the per-lesion geometry table (bone, kind and cluster columns are added by :func:`analyse_lesions`).
GEOMETRY_COLUMNS = [
    "lesion_id", "n_voxels", "volume_ml", "slice_first", "slice_last", "n_slices",
    "centroid_x_vox", "centroid_y_vox", "centroid_z_vox", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm",
    "mean_hu", "max_hu",
]


@dataclass
class LesionLabels:
    """Labelled lesions, stored sparsely: each lesion's bounding box and its boolean mask inside it.

    A dense label volume of a 512x512x300 scan is 300 MB whose pages the kernel must zero
    on first touch; the analysis never needs it, so it is only built on request
    (:meth:`to_array`, e.g. to write a label map).
    """

    shape: tuple[int, int, int]
    boxes: list[tuple[slice, slice, slice]]
    masks: list[np.ndarray]

    @property
    def n(self) -> int:
        return len(self.boxes)

    def local_mask(self, lesion_id: int) -> np.ndarray:
        """Boolean mask of one lesion (id 1..n) inside its bounding box."""
        return self.masks[lesion_id - 1]

    def to_array(self, dtype: type = np.int32) -> np.ndarray:
        """Dense (z, y, x) label volume: 0 background, lesion ids 1..n."""
        labels = np.zeros(self.shape, dtype=dtype)
        for lesion_id, (box, piece) in enumerate(zip(self.boxes, self.masks), start=1):
            labels[box][piece] = lesion_id
        return labels


def _coarse_boxes(mask: np.ndarray) -> tuple[np.ndarray, list[tuple[slice, ...]]]:
    """26-connected components of the mask pooled over 8x8x8 blocks, and their boxes in voxel units."""
    shape = mask.shape
    coarse = np.zeros(tuple(-(-s // _BLOCK) for s in shape), dtype=bool)
    z, y, x = np.unravel_index(np.flatnonzero(mask), shape)  # sparse: far cheaper than pooling every voxel
    coarse[z // _BLOCK, y // _BLOCK, x // _BLOCK] = True
    coarse_labels, _ = ndimage.label(coarse, structure=STRUCTURE)
    boxes = []
    for box in ndimage.find_objects(coarse_labels):
        boxes.append(tuple(slice(s.start * _BLOCK, min(s.stop * _BLOCK, n)) for s, n in zip(box, shape)))
    return coarse_labels, boxes


def label_lesions(mask: np.ndarray) -> LesionLabels:
    """Label 3D lesions (:func:`osteomet.data.lesions.label_components`) in a (z, y, x) binary array."""
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise InputError(f"lesion mask must be 3D, got shape {mask.shape}")
    mask = mask.astype(bool, copy=False)
    shape = tuple(int(n) for n in mask.shape)
    if not mask.any():
        return LesionLabels(shape, [], [])  # type: ignore[arg-type]
    coarse_labels, coarse_boxes = _coarse_boxes(mask)
    found: list[tuple[tuple[int, ...], np.ndarray, tuple[slice, ...]]] = []
    for k, box in enumerate(coarse_boxes, start=1):
        index = [np.arange(s.start, s.stop) // _BLOCK for s in box]
        owner = coarse_labels[np.ix_(*index)] == k
        local, _ = label_components(mask[box] & owner)
        for j, sub in enumerate(ndimage.find_objects(local), start=1):
            if sub is None:
                continue
            piece = local[sub] == j
            first = np.unravel_index(int(np.argmax(piece)), piece.shape)
            start = tuple(int(f + s.start + b.start) for f, s, b in zip(first, sub, box))
            global_box = tuple(slice(b.start + s.start, b.start + s.stop) for s, b in zip(sub, box))
            found.append((start, piece, global_box))
    found.sort(key=lambda item: item[0])
    return LesionLabels(shape, [f[2] for f in found], [f[1] for f in found])  # type: ignore[misc]


def _index_to_world(image: sitk.Image, index_xyz: np.ndarray) -> np.ndarray:
    """Continuous (x, y, z) voxel indices to world mm (LPS) with the image's direction."""
    if len(index_xyz) == 0:
        return np.zeros((0, 3))
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    spacing = np.asarray(image.GetSpacing(), float)
    origin = np.asarray(image.GetOrigin(), float)
    return origin + (index_xyz * spacing) @ direction.T


def lesion_geometry(lesions: LesionLabels, reference: sitk.Image, ct: np.ndarray | None = None) -> pd.DataFrame:
    """One row per lesion: size, slice range, centroid (voxel x, y, z and world mm), mean/max HU.

    Slices are z indices of the array (0-based); the centroid's voxel coordinates are in
    SimpleITK's (x, y, z) index order, so ``TransformContinuousIndexToPhysicalPoint`` of
    them gives the world centroid. Statistics are computed inside each lesion's bounding
    box only, never with a pass over the whole volume per lesion.
    """
    voxel_ml = float(np.prod(reference.GetSpacing())) / 1000.0
    rows = []
    centroids = np.zeros((lesions.n, 3))
    for lesion_id, (box, local) in enumerate(zip(lesions.boxes, lesions.masks), start=1):
        idx = np.nonzero(local)
        n = int(idx[0].size)
        centre_zyx = np.array([i.mean() + s.start for i, s in zip(idx, box)])
        centroids[lesion_id - 1] = centre_zyx[::-1]
        if ct is not None:
            values = ct[box][local]
            mean_hu, max_hu = float(values.mean()), float(values.max())
        else:
            mean_hu = max_hu = float("nan")
        rows.append({"lesion_id": lesion_id, "n_voxels": n, "volume_ml": n * voxel_ml,
                     "slice_first": int(box[0].start + idx[0].min()), "slice_last": int(box[0].start + idx[0].max()),
                     "mean_hu": mean_hu, "max_hu": max_hu})
    table = pd.DataFrame(rows, columns=["lesion_id", "n_voxels", "volume_ml", "slice_first", "slice_last",
                                        "mean_hu", "max_hu"])
    table["n_slices"] = table["slice_last"] - table["slice_first"] + 1
    world = _index_to_world(reference, centroids)
    for axis, name in enumerate("xyz"):
        table[f"centroid_{name}_vox"] = centroids[:, axis]
        table[f"centroid_{name}_mm"] = world[:, axis]
    return table[GEOMETRY_COLUMNS].astype({"lesion_id": int, "n_voxels": int, "slice_first": int,
                                           "slice_last": int, "n_slices": int})
