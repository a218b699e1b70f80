"""TotalSegmentator v2 bone labels: ids, exact class names, anatomical groups.

Bone maps in osteomet are TotalSegmentator v2 outputs of the ``total`` task (or synthetic
maps that use the same ids), so a lesion can be assigned to a bone by looking up the
label under it. The per-lesion analysis and the reports group bones the way the
bone-metastasis literature does:

* ``spine``: vertebrae C1..L5, vertebrae_S1 and the sacrum;
* ``pelvis``: the two hip bones (ilium, ischium, pubis);
* ``ribs``: the 24 ribs **and the costal cartilages** (TotalSegmentator segments them as
  part of the rib cage, and a lesion at the costochondral junction is reported as a rib
  lesion; the cartilages have no marrow, so synthetic lesions are never placed there);
* ``sternum``; ``shoulder_girdle``: scapulae and claviculae; ``skull``;
* ``extremities``: femora, humeri and the appendicular-bones task's limb bones.

``weight_bearing`` marks the spine, pelvis and lower limbs (femora; patella, tibia, fibula
and foot bones in the appendicular table): a lesion there carries a fracture risk that
matters clinically, so reports count it separately.

The ``appendicular_bones`` task is a *different* TotalSegmentator model with its own id
space (1..11); its ids collide with ``total`` ids (1 is the spleen there), so it lives in
the separate table :data:`APPENDICULAR_BONES` and is never mixed into
:data:`TOTALSEG_BONES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from osteomet.errors import InputError

BoneGroup = Literal["skull", "ribs", "spine", "pelvis", "extremities", "shoulder_girdle", "sternum"]
BONE_GROUPS: tuple[str, ...] = get_args(BoneGroup)
GROUPS = BONE_GROUPS  # alias
WEIGHT_BEARING_GROUPS = ("spine", "pelvis")  # plus the lower-limb bones, by name


@dataclass(frozen=True)
class Bone:
    """One bone class of a TotalSegmentator task."""

    id: int
    name: str
    group: str
    weight_bearing: bool


def _table() -> dict[int, Bone]:
    rows: list[tuple[int, str, str]] = [(25, "sacrum", "spine"), (26, "vertebrae_S1", "spine")]
    rows += [(27 + i, f"vertebrae_L{5 - i}", "spine") for i in range(5)]  # L5=27 .. L1=31
    rows += [(32 + i, f"vertebrae_T{12 - i}", "spine") for i in range(12)]  # T12=32 .. T1=43
    rows += [(44 + i, f"vertebrae_C{7 - i}", "spine") for i in range(7)]  # C7=44 .. C1=50
    rows += [
        (69, "humerus_left", "extremities"), (70, "humerus_right", "extremities"),
        (71, "scapula_left", "shoulder_girdle"), (72, "scapula_right", "shoulder_girdle"),
        (73, "clavicula_left", "shoulder_girdle"), (74, "clavicula_right", "shoulder_girdle"),
        (75, "femur_left", "extremities"), (76, "femur_right", "extremities"),
        (77, "hip_left", "pelvis"), (78, "hip_right", "pelvis"),
        (91, "skull", "skull"),
    ]
    rows += [(92 + i, f"rib_left_{i + 1}", "ribs") for i in range(12)]
    rows += [(104 + i, f"rib_right_{i + 1}", "ribs") for i in range(12)]
    rows += [(116, "sternum", "sternum"), (117, "costal_cartilages", "ribs")]
    table = {}
    for bone_id, name, group in rows:
        weight_bearing = group in WEIGHT_BEARING_GROUPS or name.startswith("femur")
        table[bone_id] = Bone(bone_id, name, group, weight_bearing)
    return table


#: Bone classes of the TotalSegmentator v2 ``total`` task, by label id.
TOTALSEG_BONES: dict[int, Bone] = _table()
#: Label id by exact class name (``"vertebrae_L3" -> 29``).
BONE_IDS_BY_NAME: dict[str, int] = {b.name: b.id for b in TOTALSEG_BONES.values()}

_LOWER_LIMB = ("patella", "tibia", "fibula", "tarsal", "metatarsal", "phalanges_feet")
#: Bone classes of the separate ``appendicular_bones`` task (own id space, 1..11).
APPENDICULAR_BONES: dict[int, Bone] = {
    i + 1: Bone(i + 1, name, "extremities", name in _LOWER_LIMB)
    for i, name in enumerate(list(_LOWER_LIMB) + ["ulna", "radius", "carpal", "metacarpal", "phalanges_hand"])
}


def get_bone(bone_id: int) -> Bone:
    """The ``total``-task bone with this label id; KeyError naming the id otherwise."""
    try:
        return TOTALSEG_BONES[int(bone_id)]
    except (KeyError, TypeError, ValueError):
        raise KeyError(
            f"label id {bone_id!r} is not a TotalSegmentator v2 'total' bone id (bones are 25-50, 69-78, 91-117)"
        ) from None


bone = get_bone  # alias


def bone_by_name(name: str) -> Bone:
    """Look a bone up by its exact TotalSegmentator class name (e.g. ``vertebrae_L3``)."""
    try:
        return TOTALSEG_BONES[BONE_IDS_BY_NAME[name]]
    except KeyError:
        raise KeyError(f"{name!r} is not a TotalSegmentator v2 'total' bone class name") from None


def bone_name(bone_id: int) -> str:
    return get_bone(bone_id).name


def bone_group(bone_id: int) -> str:
    return get_bone(bone_id).group


def is_weight_bearing(bone_id: int) -> bool:
    return get_bone(bone_id).weight_bearing


def ids_in_group(group: str) -> list[int]:
    """Sorted label ids of one group; ValueError for an unknown group name."""
    if group not in BONE_GROUPS:
        raise InputError(f"unknown bone group {group!r}; expected one of {', '.join(BONE_GROUPS)}")
    return sorted(i for i, b in TOTALSEG_BONES.items() if b.group == group)


def is_bone_id(bone_id: int) -> bool:
    """True for a ``total``-task bone id (0 = background and organ ids are not bones)."""
    try:
        return int(bone_id) in TOTALSEG_BONES
    except (TypeError, ValueError):
        return False
