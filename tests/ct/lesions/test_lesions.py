"""3D lesion labelling (26-connectivity, :mod:`osteomet.data.lesions`) and per-lesion geometry/HU against scipy and
SimpleITK."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from osteomet.ct.lesions.analysis import analyse_lesions
from osteomet.ct.lesions.labels import label_lesions, lesion_geometry
from osteomet.data.geometry import GeometryMismatchError
from osteomet.data.lesions import CONNECTIVITY, STRUCTURE


def _image(array: np.ndarray, spacing=(0.8, 0.7, 2.5), origin=(-10.0, 5.0, 30.0), direction=None) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def test_a_lesion_is_26_connected() -> None:
    assert CONNECTIVITY == 26 and STRUCTURE.shape == (3, 3, 3) and STRUCTURE.all()


def test_blobs_touching_only_diagonally_across_slices_are_one_lesion() -> None:
    """The one definition of a lesion (26-connectivity): a lesion whose edge steps diagonally to the next slice is one
    lesion, as CT post-processing, picai_eval and nnU-Net count it (the former 10-connectivity counted two)."""
    mask = np.zeros((4, 10, 10), np.uint8)
    mask[1, 2:4, 2:4] = 1  # 2x2 blob on slice 1
    mask[2, 4:6, 4:6] = 1  # next slice, touching only at the corner (3,3)-(4,4)
    lesions = label_lesions(mask)
    assert lesions.n == 1 and int(lesions.local_mask(1).sum()) == 8
    assert [b[0].start for b in lesions.boxes] == [1]
    # one empty voxel between them in-plane separates them
    mask[2, 4:6, 4:6] = 0
    mask[2, 5:7, 5:7] = 1
    assert label_lesions(mask).n == 2


def test_in_plane_diagonal_pixels_are_one_lesion() -> None:
    mask = np.zeros((1, 6, 6), np.uint8)
    mask[0, 1, 1] = mask[0, 2, 2] = mask[0, 3, 3] = 1
    assert label_lesions(mask).n == 1


@pytest.mark.parametrize("shape,p", [((13, 29, 35), 0.08), ((17, 40, 21), 0.3), ((9, 9, 9), 0.5), ((1, 33, 17), 0.4)])
def test_labelling_equals_scipy_label_with_the_structure(shape: tuple[int, int, int], p: float) -> None:
    """The block-wise labelling is exact: the same partition as a whole-volume scipy label."""
    rng = np.random.default_rng(sum(shape))
    mask = rng.random(shape) < p
    reference, n = ndimage.label(mask, structure=STRUCTURE)
    lesions = label_lesions(mask)
    labels = lesions.to_array()
    assert lesions.n == n
    assert np.array_equal(labels > 0, mask)
    assert len(set(zip(labels[mask].tolist(), reference[mask].tolist()))) == n  # one-to-one relabelling
    # ids follow the raster order of each lesion's first voxel
    firsts = [np.flatnonzero(labels.ravel() == i)[0] for i in range(1, n + 1)]
    assert firsts == sorted(firsts)


def test_lesion_spanning_many_blocks_is_one_lesion() -> None:
    mask = np.zeros((40, 40, 40), np.uint8)
    mask[2:38, 20, 20] = 1  # a thin column through five 8-voxel blocks
    mask[37, 5:35, 20] = 1
    lesions = label_lesions(mask)
    assert lesions.n == 1 and int(lesions.local_mask(1).sum()) == int(mask.sum())


def test_geometry_and_hu_against_simpleitk_and_numpy() -> None:
    rng = np.random.default_rng(0)
    mask = np.zeros((12, 20, 24), np.uint8)
    mask[2:5, 3:7, 4:9] = 1
    mask[8:10, 12:15, 15:20] = 1
    mask[8, 12, 15] = 0
    ct = rng.integers(-100, 1200, mask.shape).astype(np.int16)
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # rotated in-plane
    image = _image(mask, direction=direction)
    table = lesion_geometry(label_lesions(mask), image, ct)
    assert list(table["lesion_id"]) == [1, 2]
    labels, _ = ndimage.label(mask, structure=STRUCTURE)
    for _, row in table.iterrows():
        sel = labels == row["lesion_id"]
        z, y, x = np.nonzero(sel)
        assert row["n_voxels"] == sel.sum()
        assert row["volume_ml"] == pytest.approx(sel.sum() * 0.8 * 0.7 * 2.5 / 1000)
        assert (row["slice_first"], row["slice_last"], row["n_slices"]) == (z.min(), z.max(), z.max() - z.min() + 1)
        centre = (x.mean(), y.mean(), z.mean())
        assert (row["centroid_x_vox"], row["centroid_y_vox"], row["centroid_z_vox"]) == pytest.approx(centre)
        world = image.TransformContinuousIndexToPhysicalPoint(centre)
        assert (row["centroid_x_mm"], row["centroid_y_mm"], row["centroid_z_mm"]) == pytest.approx(world)
        assert row["mean_hu"] == pytest.approx(ct[sel].mean())
        assert row["max_hu"] == ct[sel].max()


def test_analyse_without_ct_or_bones_and_empty_mask() -> None:
    empty = analyse_lesions(_image(np.zeros((5, 6, 7), np.uint8)))
    assert len(empty.table) == 0 and empty.summary()["n_lesions"] == 0 and empty.summary()["n_clusters"] == 0
    mask = np.zeros((5, 6, 7), np.uint8)
    mask[1:3, 1:3, 1:3] = 1
    table = analyse_lesions(_image(mask)).table
    assert len(table) == 1 and np.isnan(table.loc[0, "mean_hu"]) and "bone_id" not in table


def test_bad_inputs_give_clear_errors() -> None:
    mask = np.zeros((5, 6, 7), np.uint8)
    mask[1, 1, 1] = 1
    bones = np.zeros((5, 6, 7), np.uint16)
    with pytest.raises(GeometryMismatchError, match="bones.nii.gz.*spacing"):
        analyse_lesions(_image(mask), _image(bones, spacing=(1.0, 1.0, 2.5)),
                        names=("mask.nii.gz", "bones.nii.gz", "ct"))
    with pytest.raises(GeometryMismatchError, match="size"):
        analyse_lesions(_image(mask), _image(np.zeros((5, 6, 8), np.uint16)))
    with pytest.raises(GeometryMismatchError, match="CT"):
        analyse_lesions(_image(mask), ct=_image(np.zeros((5, 6, 7), np.int16), origin=(0.0, 0.0, 0.0)))
    mask[2, 2, 2] = 2
    with pytest.raises(ValueError, match="patient 'P1'.*not binary"):
        analyse_lesions(_image(mask), patient_id="P1")
    with pytest.raises(ValueError, match="3D"):
        label_lesions(np.zeros((4, 4)))
