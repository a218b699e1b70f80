"""Which bone a lesion sits in, its group, weight-bearing status, and diffuse vs focal.

The bone map is a TotalSegmentator v2 ``total`` label map (ids 1..117) on the lesion
mask's grid; the id/name/group table is :mod:`osteomet.data.totalsegmentator`. Organ ids
(1..24, 51..68, 79..90) are valid in such a map but are not bone: voxels there count as
outside bone. Ids above 117 are not ``total`` classes at all (often a map of another task,
or a file that is not a label map) and raise :class:`UnknownBoneLabelError`.

Rules (documented because a paper reports them):

* **Bone**: the majority bone label under the lesion (background and organ voxels are not
  votes). No bone voxel at all: ``bone_status = "outside_bone"``. Two or more bones with
  the same top count: ``bone_status = "tie"`` with ``tied_bones`` listing them and no
  bone id. ``bone_fraction`` is the share of the lesion's voxels in its bone.
* **Weight-bearing**: spine, pelvis and lower limbs (femora), from the table.
* **Diffuse vs focal**: on each slice of the lesion, *coverage* = lesion voxels inside its
  bone / that bone's voxels on the slice (the bone's whole cross-section on that slice).
  The lesion is ``diffuse`` when the largest coverage exceeds ``diffuse_fraction``
  (default 0.5), otherwise ``focal``; ``unknown`` when it has no bone. For a tie the
  larger coverage of the tied bones is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import ndimage

from osteomet.data.totalsegmentator import TOTALSEG_BONES
from osteomet.errors import InputError

if TYPE_CHECKING:
    from osteomet.ct.lesions.labels import LesionLabels

#: Highest class id of TotalSegmentator v2's ``total`` task.
MAX_TOTAL_ID = 117

BONE_COLUMNS = ["lesion_id", "bone_id", "bone_name", "bone_group", "weight_bearing", "bone_status",
                "bone_fraction", "tied_bones", "max_bone_coverage", "kind"]


class UnknownBoneLabelError(InputError):
    """A bone map holds ids that are not TotalSegmentator v2 ``total`` classes."""


def _bone_lut() -> np.ndarray:
    lut = np.zeros(MAX_TOTAL_ID + 1, dtype=bool)
    lut[list(TOTALSEG_BONES)] = True
    return lut


_IS_BONE = _bone_lut()


def validate_bone_map(bones: np.ndarray, *, name: str = "bone map") -> list[int]:
    """Check the ids of a bone map; return the bone ids present (sorted).

    Raises :class:`UnknownBoneLabelError` naming the unknown ids: guessing what they mean
    would silently assign lesions to the wrong bones.
    """
    bones = np.asarray(bones)
    if not np.issubdtype(bones.dtype, np.integer):
        raise UnknownBoneLabelError(f"{name}: bone map must hold integer labels, got {bones.dtype}")
    if bones.size == 0:
        return []
    top = int(bones.max())
    if top > MAX_TOTAL_ID or int(bones.min()) < 0:
        bad = np.unique(bones[(bones > MAX_TOTAL_ID) | (bones < 0)])
        shown = ", ".join(str(v) for v in bad[:10].tolist()) + (" ..." if bad.size > 10 else "")
        raise UnknownBoneLabelError(
            f"{name}: label ids {shown} are not TotalSegmentator v2 'total' classes (expected 0-{MAX_TOTAL_ID}; "
            f"bones are 25-50, 69-78, 91-117). Is this a bone map of another task?")
    present = np.flatnonzero(np.bincount(bones.ravel(), minlength=top + 1)) if bones.dtype.itemsize <= 2 \
        else np.unique(bones)
    return [int(i) for i in present if i <= MAX_TOTAL_ID and _IS_BONE[i]]


class _BoneSlices:
    """Per-slice cross-section area of each bone, computed lazily inside the bone's bounding box."""

    def __init__(self, bones: np.ndarray):
        self.bones = bones
        self._boxes: list | None = None
        self._areas: dict[int, np.ndarray] = {}

    def area(self, bone_id: int, z0: int, z1: int) -> np.ndarray:
        """Voxels of ``bone_id`` on slices z0..z1-1 (the whole slice, not only near the lesion)."""
        if bone_id not in self._areas:
            if self._boxes is None:
                self._boxes = ndimage.find_objects(self.bones, max_label=MAX_TOTAL_ID)
            box = self._boxes[bone_id - 1]
            area = np.zeros(self.bones.shape[0], dtype=np.int64)
            if box is not None:
                area[box[0]] = (self.bones[box] == bone_id).sum(axis=(1, 2))
            self._areas[bone_id] = area
        return self._areas[bone_id][z0:z1]


def assign_bones(lesions: "LesionLabels", bones: np.ndarray, *, diffuse_fraction: float = 0.5) -> pd.DataFrame:
    """One row per lesion: bone id, name, group, weight-bearing, status, coverage and diffuse/focal kind."""
    if not 0 < diffuse_fraction < 1:
        raise InputError(f"diffuse_fraction must be between 0 and 1, got {diffuse_fraction}")
    if tuple(bones.shape) != tuple(lesions.shape):
        raise InputError(f"bone map shape {bones.shape} differs from the lesion mask's {lesions.shape}")
    slices = _BoneSlices(bones)
    rows = []
    for lesion_id, (box, local) in enumerate(zip(lesions.boxes, lesions.masks), start=1):
        under = bones[box][local].astype(np.int64)
        counts = np.bincount(under, minlength=MAX_TOTAL_ID + 1)[: MAX_TOTAL_ID + 1]
        counts[~_IS_BONE] = 0
        n = int(local.sum())
        row: dict[str, object] = {"lesion_id": lesion_id, "bone_id": pd.NA, "bone_name": None, "bone_group": None,
                                  "weight_bearing": None, "bone_fraction": 0.0, "tied_bones": None,
                                  "max_bone_coverage": float("nan"), "kind": "unknown"}
        top = int(counts.max())
        if top == 0:
            row["bone_status"] = "outside_bone"
            rows.append(row)
            continue
        winners = [int(i) for i in np.flatnonzero(counts == top)]
        row["bone_fraction"] = top / n
        coverage = 0.0
        z0, z1 = box[0].start, box[0].stop
        for bone_id in winners:
            inside = (local & (bones[box] == bone_id)).sum(axis=(1, 2))
            area = slices.area(bone_id, z0, z1)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(area > 0, inside / np.maximum(area, 1), 0.0)
            coverage = max(coverage, float(ratio.max()))
        row["max_bone_coverage"] = coverage
        row["kind"] = "diffuse" if coverage > diffuse_fraction else "focal"
        if len(winners) > 1:
            row["bone_status"] = "tie"
            row["tied_bones"] = ";".join(TOTALSEG_BONES[i].name for i in winners)
        else:
            bone = TOTALSEG_BONES[winners[0]]
            row.update(bone_status="assigned", bone_id=bone.id, bone_name=bone.name, bone_group=bone.group,
                       weight_bearing=bone.weight_bearing)
        rows.append(row)
    table = pd.DataFrame(rows, columns=BONE_COLUMNS)
    table["bone_id"] = table["bone_id"].astype("Int64")
    return table
