"""Masks as annotation tools write them: integer lesion labels (PI-CAI: ISUP grade 2-5) and
headers a few 1e-4 off their DICOM image are accepted; a real misalignment is refused in mm."""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from osteomet.data.case import CaseError, load_mri_case
from osteomet.data.geometry import GEOMETRY_TOLERANCE_VOXELS, Geometry, GeometryMismatchError, check_same_geometry
from osteomet.data.images import read_image
from osteomet.data.label_masks import read_label_map, read_lesion_labels, read_mask
from osteomet.data.manifest import validate_frame
from tests.data.annotations import corner_displacement_mm, picai_like_labels, rotation, write_nifti_mask


@pytest.mark.parametrize("case", ["ProstateX-0000", "ProstateX-0001"])
def test_real_t2_with_picai_like_mask_a_few_1e4_off_loads(prostatex: Path, tmp_path: Path, case: str, caplog):
    folder = prostatex / case
    t2 = read_image(folder / "t2w")
    labels = picai_like_labels(t2, [((0.5, 0.55, 0.5), 7.0, 3), ((0.42, 0.6, 0.55), 4.0, 5)])
    # 4e-4 rad about the slice normal: the worst axis for this 192 x 192 x 57 mm grid
    mask_path = write_nifti_mask(tmp_path / f"{case}.nii.gz", labels, t2, rotation([0, 0, 1], 4e-4))
    as_written = sitk.ReadImage(str(mask_path))
    off = np.abs(np.array(as_written.GetDirection()) - np.array(t2.GetDirection())).max()
    assert 2e-4 < off < 6e-4  # "direction cosines about 4e-4 off", as in PI-CAI's ProstateX masks
    moved = corner_displacement_mm(as_written, t2)
    assert moved < GEOMETRY_TOLERANCE_VOXELS * min(t2.GetSpacing())  # about 0.11 mm, under a quarter of 0.5 mm
    record = validate_frame(pd.DataFrame([{"patient_id": case, "t2": str(folder / "t2w"), "dwi": str(folder / "hbv"),
                                           "adc": str(folder / "adc"), "mask": str(mask_path)}]), base_dir=folder).records[0]
    with caplog.at_level(logging.INFO, logger="osteomet.data.geometry"):
        loaded = load_mri_case(record, require_mask=True)
    assert Geometry.of(loaded.mask) == Geometry.of(loaded.t2)  # the T2 header, exactly
    assert "copied the reference geometry" in caplog.text and f"{moved:.3g} mm" in caplog.text
    np.testing.assert_array_equal(sitk.GetArrayFromImage(loaded.mask), (labels > 0).astype(np.uint8))
    assert sorted(np.unique(sitk.GetArrayFromImage(loaded.mask_labels)).tolist()) == [0, 3, 5]


def test_mask_1e2_off_is_refused_with_the_displacement_in_mm(prostatex: Path, tmp_path: Path):
    t2 = read_image(prostatex / "ProstateX-0000" / "t2w")
    labels = picai_like_labels(t2, [((0.5, 0.55, 0.5), 7.0, 2)])
    path = write_nifti_mask(tmp_path / "turned.nii.gz", labels, t2, rotation([0, 0, 1], 1e-2))
    moved = corner_displacement_mm(sitk.ReadImage(str(path)), t2)
    assert moved > 2.0
    with pytest.raises(GeometryMismatchError, match=rf"turned.nii.gz: not on the grid of T2: .*image corners up to {moved:.3g} mm apart"):
        read_mask(path, reference=t2, reference_name="T2")
    folder = prostatex / "ProstateX-0000"
    record = validate_frame(pd.DataFrame([{"patient_id": "P0", "t2": str(folder / "t2w"), "dwi": str(folder / "hbv"),
                                           "adc": str(folder / "adc"), "mask": str(path)}]), base_dir=folder).records[0]
    with pytest.raises(CaseError, match=r"patient 'P0': .*turned.nii.gz: not on the grid of .* mm apart"):
        load_mri_case(record)


@pytest.mark.parametrize("axis", [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])
def test_tolerance_is_a_fraction_of_the_smallest_voxel(axis):
    """Accepted exactly when ITK's corners move by at most a quarter of the smallest voxel."""
    grid = sitk.Image([60, 50, 12], sitk.sitkUInt8)
    grid.SetSpacing((0.8, 0.6, 3.0))
    grid.SetOrigin((-20.0, 10.0, -30.0))
    grid.SetDirection(tuple(rotation([0.2, 1, 0.1], 0.3).ravel()))
    outcomes = set()
    for angle in np.geomspace(1e-5, 3e-2, 25):
        turned = sitk.Image(grid)
        turned.SetDirection(tuple((rotation(axis, angle) @ np.array(grid.GetDirection()).reshape(3, 3)).ravel()))
        moved = corner_displacement_mm(turned, grid)
        if abs(moved - 0.25 * 0.6) < 1e-3:
            continue  # too close to the limit to call
        accepted = Geometry.of(turned).differences(Geometry.of(grid)) == []
        assert accepted == (moved <= 0.25 * 0.6), (angle, moved)
        outcomes.add(accepted)
    assert outcomes == {True, False}


def test_label_map_and_same_geometry_use_the_physical_rule(tmp_path: Path):
    """TotalSegmentator-style label maps and CT lesion checks follow the same rule."""
    ct = sitk.Image([40, 30, 20], sitk.sitkInt16)
    ct.SetSpacing((1.5, 1.5, 3.0))
    bones = np.zeros((20, 30, 40), np.uint8)
    bones[5:10, 10:20, 10:30] = 26  # vertebra L5
    path = write_nifti_mask(tmp_path / "bones.nii.gz", bones, ct, rotation([1, 0, 0], 3e-4))
    label_map = read_label_map(path, reference=ct, reference_name="ct.nii.gz")
    assert Geometry.of(label_map) == Geometry.of(ct)
    assert np.unique(sitk.GetArrayFromImage(label_map)).tolist() == [0, 26]
    far = sitk.ReadImage(str(write_nifti_mask(tmp_path / "far.nii.gz", bones, ct, rotation([1, 0, 0], 2e-2))))
    with pytest.raises(GeometryMismatchError, match="far: not on the grid of ct: .*mm apart"):
        check_same_geometry(far, ct, name="far", reference_name="ct")


def test_integer_labels_are_tumour_and_kept(tmp_path: Path):
    grid = sitk.Image([20, 20, 6], sitk.sitkUInt8)
    labels = np.zeros((6, 20, 20), np.uint8)
    labels[2, 2:5, 2:5] = 2
    labels[3, 10:14, 10:14] = 5
    path = write_nifti_mask(tmp_path / "picai.nii.gz", labels, grid)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_mask(path)), (labels > 0).astype(np.uint8))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_lesion_labels(path)), labels)
