"""The one definition of a lesion (osteomet.data.lesions): 26-connectivity, minimum size, largest component."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from osteomet.data.grids import split_lesions
from osteomet.data.lesions import STRUCTURE, label_components, largest_component


def _corner_touching() -> np.ndarray:
    mask = np.zeros((4, 8, 8), np.uint8)
    mask[1, 1:3, 1:3] = 1  # 4 voxels
    mask[2, 3, 3] = 1  # touches the block only at a corner (26-connected, not 6- or 18-connected)
    mask[3, 6, 6] = 1  # a lesion of one voxel
    return mask


def test_corner_neighbours_are_one_lesion_in_raster_order() -> None:
    labels, n = label_components(_corner_touching())
    assert n == 2
    assert labels[1, 1, 1] == labels[2, 3, 3] == 1 and labels[3, 6, 6] == 2


@pytest.mark.parametrize("seed", range(5))
def test_labels_equal_scipy_with_the_structure(seed: int) -> None:
    mask = np.random.default_rng(seed).random((9, 17, 13)) < 0.3
    labels, n = label_components(mask)
    reference, m = ndimage.label(mask, structure=STRUCTURE)
    assert n == m and np.array_equal(labels, reference)


def test_minimum_size_drops_small_lesions_and_renumbers() -> None:
    labels, n = label_components(_corner_touching(), min_voxels=2)
    assert n == 1 and int((labels == 1).sum()) == 5 and labels[3, 6, 6] == 0


def test_largest_component() -> None:
    kept = largest_component(_corner_touching())
    assert kept.dtype == np.uint8 and int(kept.sum()) == 5 and kept[3, 6, 6] == 0
    assert not largest_component(np.zeros((2, 3, 4), bool)).any()


def test_mri_lesions_follow_the_same_definition() -> None:
    """split_lesions (the MRI ROI's index lesion) counts the lesions label_components finds."""
    image = sitk.GetImageFromArray(_corner_touching())
    components, lesions = split_lesions(image)
    assert [lesion.voxels for lesion in lesions] == [5, 1]
    assert np.array_equal(sitk.GetArrayFromImage(components), label_components(_corner_touching())[0])


def test_not_3d_is_refused() -> None:
    with pytest.raises(ValueError, match="3D"):
        label_components(np.zeros((4, 4)))
