"""Post-processing of CT lesion masks: small components dropped by volume, the volume chosen on validation."""

from __future__ import annotations

import numpy as np

from osteomet.ct.segmentation.postprocess import (
    choose_min_volume,
    read_min_volume,
    remove_small_components,
    write_postprocessing,
)


def _blob(shape, corner, size):
    mask = np.zeros(shape, bool)
    z, y, x = corner
    mask[z:z + size[0], y:y + size[1], x:x + size[2]] = True
    return mask


def test_components_below_the_volume_are_removed_and_the_rest_kept_whole():
    shape = (10, 40, 40)
    big = _blob(shape, (1, 2, 2), (3, 5, 5))       # 75 voxels
    small = _blob(shape, (6, 30, 30), (1, 2, 2))   # 4 voxels
    diagonal = np.zeros(shape, bool)               # two voxels touching at a corner: one 26-connected component
    diagonal[8, 10, 10] = diagonal[9, 11, 11] = True
    mask = big | small | diagonal
    voxel_ml = 0.01  # 10 mm^3 voxels: big 0.75 ml, small 0.04 ml, diagonal 0.02 ml
    kept = remove_small_components(mask, voxel_ml, 0.03)
    assert np.array_equal(kept, big | small)
    assert np.array_equal(remove_small_components(mask, voxel_ml, 0.05), big)
    assert np.array_equal(remove_small_components(mask, voxel_ml, 0.0), mask)
    assert not remove_small_components(mask, voxel_ml, 1.0).any()


def test_the_volume_is_chosen_by_validation_dice_and_ties_go_to_the_smallest(tmp_path):
    shape = (8, 30, 30)
    lesion = _blob(shape, (2, 5, 5), (3, 6, 6))           # 108 voxels = 1.08 ml at 0.01 ml
    false_blob = _blob(shape, (5, 20, 20), (2, 3, 3))     # 18 voxels = 0.18 ml
    # patient 1: lesion found plus one false blob; patient 2: lesion-free with the same blob
    predictions = [lesion | false_blob, false_blob]
    references = [lesion, np.zeros(shape, bool)]
    choice = choose_min_volume(predictions, references, [0.01, 0.01], candidates=(0.0, 0.1, 0.25, 0.5, 2.0))
    # by hand: 0 and 0.1 ml keep the blob: Dice 2*108/(126+108) = 0.923 and 0 -> mean 0.4615;
    # 0.25 and 0.5 ml drop it: 1 and 1; 2 ml drops the lesion too: 0 and 1
    assert choice["candidates"]["0.0"] == round((2 * 108 / 234 + 0) / 2, 6)
    assert choice["candidates"]["0.5"] == 1.0 and choice["candidates"]["2.0"] == 0.5
    assert choice["min_lesion_ml"] == 0.25
    # a gain below the tolerance does not buy a larger cut-off: the blob costs the lesion patient 0.077 Dice,
    # and with only that patient (no lesion-free one) a tolerance of 0.1 keeps everything
    lenient = choose_min_volume(predictions[:1], references[:1], [0.01], candidates=(0.0, 0.25), tolerance=0.1)
    assert lenient["min_lesion_ml"] == 0.0
    strict = choose_min_volume(predictions[:1], references[:1], [0.01], candidates=(0.0, 0.25), tolerance=0.005)
    assert strict["min_lesion_ml"] == 0.25
    write_postprocessing(tmp_path, choice)
    assert read_min_volume(tmp_path) == 0.25
    assert read_min_volume(tmp_path / "missing") == 0.0
