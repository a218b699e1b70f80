"""TotalSegmentator v2 bone table: ids and names as in domain-facts.md, groups, lookups."""

import pytest

from osteomet.data.totalsegmentator import (
    APPENDICULAR_BONES,
    BONE_GROUPS,
    TOTALSEG_BONES,
    Bone,
    bone_by_name,
    bone_group,
    bone_name,
    ids_in_group,
    is_bone_id,
    is_weight_bearing,
)


@pytest.mark.parametrize("bone_id, name", [
    (25, "sacrum"), (26, "vertebrae_S1"), (27, "vertebrae_L5"), (31, "vertebrae_L1"), (32, "vertebrae_T12"),
    (43, "vertebrae_T1"), (44, "vertebrae_C7"), (50, "vertebrae_C1"), (69, "humerus_left"), (70, "humerus_right"),
    (71, "scapula_left"), (72, "scapula_right"), (73, "clavicula_left"), (74, "clavicula_right"),
    (75, "femur_left"), (76, "femur_right"), (77, "hip_left"), (78, "hip_right"), (91, "skull"),
    (92, "rib_left_1"), (103, "rib_left_12"), (104, "rib_right_1"), (115, "rib_right_12"), (116, "sternum"),
    (117, "costal_cartilages"),
])
def test_ids_match_domain_facts(bone_id, name):
    assert bone_name(bone_id) == name
    assert TOTALSEG_BONES[bone_id] == Bone(bone_id, name, bone_group(bone_id), is_weight_bearing(bone_id))
    assert bone_by_name(name).id == bone_id


def test_table_is_complete_and_contiguous():
    assert sorted(TOTALSEG_BONES) == list(range(25, 51)) + list(range(69, 79)) + [91] + list(range(92, 118))
    assert len({b.name for b in TOTALSEG_BONES.values()}) == len(TOTALSEG_BONES)
    assert [bone_name(i) for i in range(32, 44)] == [f"vertebrae_T{k}" for k in range(12, 0, -1)]
    assert [bone_name(i) for i in range(44, 51)] == [f"vertebrae_C{k}" for k in range(7, 0, -1)]


def test_groups():
    assert ids_in_group("spine") == list(range(25, 51))
    assert ids_in_group("pelvis") == [77, 78]
    assert ids_in_group("ribs") == list(range(92, 116)) + [117]  # costal cartilages counted with the rib cage
    assert ids_in_group("extremities") == [69, 70, 75, 76]
    assert ids_in_group("shoulder_girdle") == [71, 72, 73, 74]
    assert ids_in_group("sternum") == [116]
    assert ids_in_group("skull") == [91]
    assert sum(len(ids_in_group(g)) for g in BONE_GROUPS) == len(TOTALSEG_BONES)


def test_weight_bearing():
    assert {i for i in TOTALSEG_BONES if is_weight_bearing(i)} == set(range(25, 51)) | {75, 76, 77, 78}
    assert not is_weight_bearing(69) and not is_weight_bearing(92) and not is_weight_bearing(91)


def test_unknown_ids_and_groups_are_named():
    for bad in (0, 1, 24, 51, 79, 90, 118, 999):
        with pytest.raises(KeyError, match=str(bad)):
            bone_name(bad)
        assert not is_bone_id(bad)
    with pytest.raises(KeyError, match="'banana'"):
        bone_by_name("banana")
    with pytest.raises(ValueError, match="legs"):
        ids_in_group("legs")


def test_appendicular_task_is_separate():
    assert [APPENDICULAR_BONES[i].name for i in range(1, 12)] == [
        "patella", "tibia", "fibula", "tarsal", "metatarsal", "phalanges_feet",
        "ulna", "radius", "carpal", "metacarpal", "phalanges_hand"]
    assert all(b.group == "extremities" for b in APPENDICULAR_BONES.values())
    assert not set(b.name for b in APPENDICULAR_BONES.values()) & set(b.name for b in TOTALSEG_BONES.values())
