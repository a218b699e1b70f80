"""Lesion-to-bone assignment, weight-bearing and diffuse/focal: hand-built, real CT, synthetic cohort."""

from __future__ import annotations

from pathlib import Path

import cc3d
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from osteomet.ct.lesions.analysis import analyse_lesions
from osteomet.ct.lesions.bones import UnknownBoneLabelError, assign_bones, validate_bone_map
from osteomet.ct.lesions.cohort import LesionSettings, analyse_cohort, analyse_files
from osteomet.ct.lesions.labels import label_lesions
from tests.conftest import shared_path

L3, L4, HIP_LEFT, RIB, LIVER = 29, 28, 77, 110, 5


def _image(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 3.0))
    return image


def _vertebra(shape=(6, 30, 30), label=L3) -> np.ndarray:
    """A vertebra: a round body (most of the cross-section) and a thin posterior arch."""
    bones = np.zeros(shape, np.uint16)
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    body = (yy - 12) ** 2 + (xx - 15) ** 2 <= 7**2
    arch = (yy >= 20) & (yy <= 26) & (np.abs(xx - 15) <= 1)
    bones[1:5][:, body | arch] = label
    return bones


def test_lesion_filling_a_vertebral_body_is_diffuse_spine_weight_bearing() -> None:
    bones = _vertebra()
    mask = np.zeros_like(bones, dtype=np.uint8)
    body = (bones == L3) & (np.arange(30)[None, :, None] < 20)
    mask[2:4][body[2:4]] = 1
    row = analyse_lesions(_image(mask), _image(bones)).table.iloc[0]
    area = (bones[2] == L3).sum()
    assert row["max_bone_coverage"] == pytest.approx(body[2].sum() / area)
    assert row["max_bone_coverage"] > 0.5
    assert (row["kind"], row["bone_name"], row["bone_group"], row["weight_bearing"]) == \
        ("diffuse", "vertebrae_L3", "spine", True)
    assert row["bone_status"] == "assigned" and row["bone_fraction"] == 1.0


def test_small_nodule_is_focal_and_threshold_is_configurable() -> None:
    bones = _vertebra()
    mask = np.zeros_like(bones, dtype=np.uint8)
    mask[2, 10:13, 13:16] = 1  # 9 of the ~150 body pixels
    table = analyse_lesions(_image(mask), _image(bones)).table
    assert table.loc[0, "kind"] == "focal"
    coverage = table.loc[0, "max_bone_coverage"]
    assert coverage == pytest.approx(9 / (bones[2] == L3).sum())
    lower = analyse_lesions(_image(mask), _image(bones), diffuse_fraction=coverage * 0.9).table
    assert lower.loc[0, "kind"] == "diffuse"
    with pytest.raises(ValueError, match="diffuse_fraction"):
        analyse_lesions(_image(mask), _image(bones), diffuse_fraction=1.5)


def test_coverage_uses_the_whole_bone_cross_section_of_each_slice() -> None:
    """Bone area is counted over the whole slice, not only inside the lesion's box."""
    bones = np.zeros((3, 10, 40), np.uint16)
    bones[1, 2:8, 2:8] = HIP_LEFT  # 36 px, where the lesion is
    bones[1, 2:8, 30:36] = HIP_LEFT  # another 36 px of the same bone far away on the same slice
    mask = np.zeros_like(bones, dtype=np.uint8)
    mask[1, 2:8, 2:8] = 1
    row = analyse_lesions(_image(mask), _image(bones)).table.iloc[0]
    assert row["max_bone_coverage"] == pytest.approx(0.5)
    assert row["kind"] == "focal"  # exactly half is not "more than half"
    assert (row["bone_group"], row["weight_bearing"]) == ("pelvis", True)


def test_lesion_straddling_two_bones_majority_and_tie() -> None:
    bones = np.zeros((4, 10, 20), np.uint16)
    bones[:, :, :10] = L4
    bones[:, :, 10:] = L3
    mask = np.zeros_like(bones, dtype=np.uint8)
    mask[1:3, 3:6, 6:12] = 1  # 4 columns in L4, 2 in L3
    row = analyse_lesions(_image(mask), _image(bones)).table.iloc[0]
    assert (row["bone_name"], row["bone_status"]) == ("vertebrae_L4", "assigned")
    assert row["bone_fraction"] == pytest.approx(4 / 6)
    mask[:] = 0
    mask[1:3, 3:6, 7:13] = 1  # 3 and 3: a tie
    row = analyse_lesions(_image(mask), _image(bones)).table.iloc[0]
    assert row["bone_status"] == "tie" and pd.isna(row["bone_id"]) and row["bone_group"] is None
    assert row["tied_bones"] == "vertebrae_L4;vertebrae_L3" and row["bone_fraction"] == pytest.approx(0.5)


def test_outside_bone_and_organ_voxels_do_not_vote() -> None:
    bones = np.zeros((3, 10, 20), np.uint16)
    bones[:, :, :5] = LIVER  # an organ label of the 'total' task: valid, but not bone
    bones[:, :, 15:] = RIB
    mask = np.zeros_like(bones, dtype=np.uint8)
    mask[1, 2:4, 0:4] = 1  # liver only
    mask[1, 6:8, 3:17] = 1  # mostly liver/background, 2 columns of rib
    table = analyse_lesions(_image(mask), _image(bones)).table
    assert list(table["bone_status"]) == ["outside_bone", "assigned"]
    assert table.loc[0, "kind"] == "unknown" and pd.isna(table.loc[0, "bone_id"])
    assert table.loc[1, "bone_name"] == "rib_right_7" and table.loc[1, "weight_bearing"] is False
    assert table.loc[1, "bone_fraction"] == pytest.approx(4 / 28)


def test_unknown_bone_ids_are_refused() -> None:
    bones = np.zeros((3, 5, 5), np.uint16)
    bones[1, 1, 1] = 200
    bones[1, 2, 2] = 29
    with pytest.raises(UnknownBoneLabelError, match=r"bones\.nii\.gz: label ids 200 are not TotalSegmentator"):
        validate_bone_map(bones, name="bones.nii.gz")
    mask = np.zeros((3, 5, 5), np.uint8)
    mask[1, 2, 2] = 1
    with pytest.raises(UnknownBoneLabelError, match="patient 'P7'"):
        analyse_lesions(_image(mask), _image(bones), patient_id="P7")
    with pytest.raises(UnknownBoneLabelError, match="integer"):
        validate_bone_map(bones.astype(float))
    assert validate_bone_map(np.array([[[0, 5, 29, 77, 117]]], np.uint16)) == [29, 77, 117]
    with pytest.raises(ValueError, match="shape"):
        assign_bones(label_lesions(mask), bones[:2])


def _deep_voxel(bones: np.ndarray, label: int) -> np.ndarray:
    """The voxel of a bone farthest from its surface (so an inserted lesion stays inside)."""
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(bones == label)
    return np.array(np.unravel_index(int(np.argmax(depth)), bones.shape))


def test_real_totalsegmentator_ct_with_inserted_lesions(tmp_path: Path) -> None:
    folder = shared_path("ct", "totalseg_example")
    ct_image = sitk.ReadImage(str(folder / "ct.nii.gz"))
    bones = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "bones_totalsegmentator.nii.gz")))
    ct = sitk.GetArrayFromImage(ct_image)
    rng = np.random.default_rng(4)
    mask = np.zeros(bones.shape, np.uint8)
    zz, yy, xx = np.indices(bones.shape, sparse=True)
    inserted = {}
    for label, radius in ((L3, 1.5), (HIP_LEFT, 2.5)):
        c = _deep_voxel(bones, label)
        ball = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= radius**2) & (bones == label)
        mask[ball] = 1
        ct[ball] = rng.integers(400, 901, int(ball.sum()))
        inserted[label] = ct[ball]
    paths = {}
    for name, array in (("ct", ct), ("mask", mask)):
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(ct_image)
        paths[name] = tmp_path / f"{name}.nii.gz"
        sitk.WriteImage(image, str(paths[name]))
    analysis, _, _ = analyse_files(paths["mask"], folder / "bones_totalsegmentator.nii.gz", ct=paths["ct"],
                                   patient_id="s0011")
    table = analysis.table.set_index("bone_name")
    assert sorted(table.index) == ["hip_left", "vertebrae_L3"]
    assert table.loc["vertebrae_L3", "bone_group"] == "spine" and table.loc["hip_left", "bone_group"] == "pelvis"
    assert table["weight_bearing"].tolist() == [True, True]
    assert set(table["kind"]) == {"focal"}
    for label, name in ((L3, "vertebrae_L3"), (HIP_LEFT, "hip_left")):
        assert table.loc[name, "mean_hu"] == pytest.approx(inserted[label].mean())
        assert table.loc[name, "max_hu"] == inserted[label].max()
        assert 400 <= table.loc[name, "mean_hu"] <= 900
    assert 29 in analysis.bones_present and 5 not in analysis.bones_present  # organs are not bones
    # the same vertebra replaced on two slices is diffuse
    z = int(np.median(np.nonzero(bones == L3)[0]))
    mask[:] = 0
    mask[z : z + 2][bones[z : z + 2] == L3] = 1
    image = sitk.GetImageFromArray(mask)
    image.CopyInformation(ct_image)
    sitk.WriteImage(image, str(paths["mask"]))
    row = analyse_files(paths["mask"], folder / "bones_totalsegmentator.nii.gz")[0].table.iloc[0]
    assert (row["bone_name"], row["kind"], row["max_bone_coverage"]) == ("vertebrae_L3", "diffuse", pytest.approx(1.0))


@pytest.fixture(scope="module")
def synthetic_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort

    config = CTSynthConfig(inplane_size=64, region="abdomen_pelvis", mean_lesions=4.0, diffuse_fraction=0.3)
    return generate_ct_cohort(tmp_path_factory.mktemp("ct_cohort"), 8, seed=11, config=config)


def test_bone_and_kind_agree_with_the_synthetic_truth(synthetic_cohort: Path) -> None:
    """Each truth lesion (a 26-connected component) vs the largest of our lesions inside it."""
    truth = pd.read_csv(synthetic_cohort.parent / "lesions_truth.csv")
    result = analyse_cohort(synthetic_cohort, settings=LesionSettings())
    assert len(truth) >= 15 and (truth["kind"] == "diffuse").sum() >= 3
    bone_ok = kind_ok = total = 0
    for analysis in result.analyses:
        pid = analysis.patient_id
        mask_image = sitk.ReadImage(str(synthetic_cohort.parent / "labels" / f"{pid}_lesions.nii.gz"))
        components = cc3d.connected_components(sitk.GetArrayFromImage(mask_image), connectivity=26)
        rows = truth[truth["patient_id"] == pid]
        assert components.max() == len(rows)
        ours = analysis.table
        ours_map = analysis.lesions.to_array()
        for k in range(1, components.max() + 1):
            z, y, x = np.nonzero(components == k)
            centre = mask_image.TransformContinuousIndexToPhysicalPoint((x.mean(), y.mean(), z.mean()))
            distance = np.linalg.norm(rows[["centre_x_mm", "centre_y_mm", "centre_z_mm"]].to_numpy() - centre, axis=1)
            expected = rows.iloc[int(np.argmin(distance))]
            assert distance.min() < 1.0
            # our lesions (10-connected) are pieces of the truth's 26-connected components: those in this one
            inside = ours[ours["lesion_id"].isin(np.unique(ours_map[components == k]))]
            assert len(inside), f"{pid}: truth lesion {expected['lesion_id']} not found"
            best = inside.sort_values("n_voxels").iloc[-1]
            total += 1
            bone_ok += int(best["bone_id"] == expected["bone_id"])
            kind_ok += int(best["kind"] == expected["kind"])
            assert best["bone_group"] == expected["group"] or best["bone_id"] != expected["bone_id"]
    print(f"synthetic truth agreement: bone {bone_ok}/{total}, kind {kind_ok}/{total}")
    assert bone_ok / total >= 0.95
    assert kind_ok / total >= 0.85

