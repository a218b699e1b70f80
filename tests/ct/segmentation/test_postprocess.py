"""Post-processing of CT lesion probabilities: threshold, component confidence and volume, chosen on validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from osteomet.ct.lesions.labels import label_lesions
from osteomet.ct.segmentation.postprocess import (
    Postprocessing,
    as_probability,
    candidates,
    choose_postprocessing,
    lesion_mask,
    read_postprocessing,
    write_postprocessing,
)
from osteomet.evaluation.segmentation import overlap


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
    def by_volume(min_ml: float) -> np.ndarray:  # a binary mask: plain thresholding, volume only
        return lesion_mask(mask.astype(np.float32), voxel_ml, Postprocessing(0.5, 0.5, min_ml))

    kept = by_volume(0.03)
    assert np.array_equal(kept, big | small)
    assert np.array_equal(by_volume(0.05), big)
    assert np.array_equal(by_volume(0.0), mask)
    assert not by_volume(1.0).any()


def test_postprocessing_removes_the_lesions_the_per_lesion_analysis_counts():
    """One definition of a lesion (osteomet.data.lesions): on a mask where 6-, 10- and 26-connectivity disagree,
    post-processing keeps or removes exactly the components that label_lesions counts."""
    from scipy import ndimage

    shape = (6, 12, 12)
    mask = np.zeros(shape, bool)
    mask[1, 1:3, 1:3] = True   # 4 voxels
    mask[2, 3, 3] = True       # touches the block above only at a corner: 26- yes, 6- and 10-connectivity no
    mask[2, 4, 4] = True       # touches (2, 3, 3) only along an in-plane diagonal: 26- and 10- yes, 6- no
    mask[4, 8:10, 8:10] = True  # a separate 4-voxel lesion
    assert ndimage.label(mask)[1] == 4  # 6-connectivity: four pieces
    lesions = label_lesions(mask)
    assert lesions.n == 2 and sorted(int(m.sum()) for m in lesions.masks) == [4, 6]
    voxel_ml = 0.01
    for min_ml in (0.0, 0.05, 0.06):  # 0.05 ml removes the 4-voxel lesion, keeps the 6-voxel one whole
        kept = lesion_mask(mask.astype(np.float32), voxel_ml, Postprocessing(0.5, 0.5, min_ml))
        expected = [m for m in lesions.masks if m.sum() * voxel_ml >= min_ml]
        assert label_lesions(kept).n == len(expected)
        assert int(kept.sum()) == sum(int(m.sum()) for m in expected)
    assert np.array_equal(lesion_mask(mask.astype(np.float32), voxel_ml, Postprocessing(0.5, 0.5, 0.05)),
                          lesions.to_array() == 1)


def _case():
    """A lesion patient (confident core, faint rim, a faint halo outside the lesion, a faint false blob) and a
    lesion-free patient with the same false blob; voxels of 0.01 ml."""
    shape = (8, 30, 30)
    core = _blob(shape, (2, 6, 6), (3, 4, 4))                 # 48 voxels at 0.9
    lesion = _blob(shape, (2, 5, 5), (3, 6, 6))               # 108 voxels: the core and its rim
    halo = _blob(shape, (2, 4, 4), (3, 8, 8)) & ~lesion       # 84 voxels at 0.35, outside the lesion
    blob = _blob(shape, (5, 20, 20), (2, 3, 3))               # 18 voxels = 0.18 ml, peak 0.65
    p1 = np.full(shape, 0.05, np.float32)
    p1[halo], p1[lesion], p1[core], p1[blob] = 0.35, 0.45, 0.9, 0.65
    p2 = np.full(shape, 0.05, np.float32)
    p2[blob] = 0.65
    return [p1, p2], [lesion, np.zeros(shape, bool)]


def test_hysteresis_keeps_a_confident_lesion_with_its_faint_rim_and_drops_a_faint_blob():
    (p1, _), (lesion, _) = _case()
    kept = lesion_mask(p1, 0.01, Postprocessing(threshold=0.4, min_confidence=0.7))
    assert np.array_equal(kept, lesion)                       # rim at 0.45 kept through the core's 0.9
    assert lesion_mask(p1, 0.01, Postprocessing()).sum() == 48 + 18  # plain >= 0.5: core and blob
    assert np.array_equal(lesion_mask(p1, 0.01, Postprocessing(0.5, 0.5, 0.25)), lesion_mask(p1, 0.01, Postprocessing(0.5, 0.8)))
    assert not lesion_mask(p1, 0.01, Postprocessing(0.3, 0.95)).any()  # nothing reaches 0.95
    soft = as_probability(p1, kept)
    assert np.array_equal(soft >= 0.5, kept) and soft.dtype == np.float32


def test_the_setting_is_chosen_by_validation_dice_and_ties_go_to_the_least_change(tmp_path):
    probabilities, references = _case()
    grid = candidates((0.5, 0.4, 0.3), (0.5, 0.6, 0.7, 0.8, 0.9), (0.0, 0.25))
    assert all(s.min_confidence >= s.threshold for s in grid)
    choice = choose_postprocessing(probabilities, references, [0.01, 0.01], settings=grid)
    # every setting's mean Dice, recomputed with the project's overlap on the masks themselves
    for s in grid:
        expected = np.mean([overlap(lesion_mask(p, 0.01, s), r)["dice"] for p, r in zip(probabilities, references)])
        assert choice["candidates"][s.key()] == pytest.approx(expected, abs=1e-6), s
    # by hand: t=0.4 takes the rim (0.3 adds the halo), c>=0.7 or 0.25 ml drops the blob: Dice 1 and 1;
    # plain >= 0.5 keeps core and blob: 2*48/(66+108) on the lesion patient, 0 on the other
    assert choice["candidates"]["t=0.5,c=0.5,v=0"] == round((2 * 48 / (66 + 108)) / 2, 6)
    assert choice["candidates"]["t=0.4,c=0.7,v=0"] == 1.0 and choice["candidates"]["t=0.4,c=0.5,v=0.25"] == 1.0
    assert choice["candidates"]["t=0.3,c=0.7,v=0"] == round((2 * 108 / (192 + 108) + 1) / 2, 6)
    # two perfect settings: removing by volume changes more than a confidence cut-off, so c=0.7 wins
    assert (choice["threshold"], choice["min_confidence"], choice["min_lesion_ml"]) == (0.4, 0.7, 0.0)
    write_postprocessing(tmp_path, choice)
    assert read_postprocessing(tmp_path) == Postprocessing(0.4, 0.7, 0.0)


def test_a_small_gain_does_not_buy_a_change():
    probabilities, references = _case()
    grid = [Postprocessing(0.5, 0.5, 0.0), Postprocessing(0.5, 0.5, 0.25)]
    # the lesion patient alone: the blob costs 2*48/(48+108) - 2*48/(66+108) = 0.064 Dice
    lenient = choose_postprocessing(probabilities[:1], references[:1], [0.01], settings=grid, tolerance=0.1)
    strict = choose_postprocessing(probabilities[:1], references[:1], [0.01], settings=grid, tolerance=0.005)
    assert lenient["min_lesion_ml"] == 0.0 and strict["min_lesion_ml"] == 0.25


def test_runs_recorded_before_the_threshold_and_confidence_read_as_plain_thresholding(tmp_path):
    assert read_postprocessing(tmp_path / "missing") == Postprocessing()
    (tmp_path / "postprocessing.json").write_text(json.dumps({"min_lesion_ml": 0.25, "candidates": {}}))
    assert read_postprocessing(tmp_path) == Postprocessing(0.5, 0.5, 0.25)


def test_components_on_too_few_slices_go_and_validation_keeps_the_rule_only_when_it_helps():
    shape = (8, 30, 30)
    lesion = _blob(shape, (2, 5, 5), (3, 5, 5))        # 3 slices, 75 voxels
    flat = _blob(shape, (6, 20, 20), (1, 6, 6))        # one slice, 36 voxels, as confident as the lesion
    step = np.zeros(shape, bool)                       # 2 voxels on 2 slices, touching at a corner: 2 slices
    step[0, 0, 0] = step[1, 1, 1] = True
    p = np.full(shape, 0.02, np.float32)
    p[lesion | flat | step] = 0.97
    assert np.array_equal(lesion_mask(p, 0.01, Postprocessing(min_slices=2)), lesion | step)
    assert np.array_equal(lesion_mask(p, 0.01, Postprocessing(min_slices=3)), lesion)
    assert lesion_mask(p, 0.01, Postprocessing()).sum() == 75 + 36 + 2
    assert Postprocessing(min_slices=2).key() == "t=0.5,c=0.5,v=0,s=2" and Postprocessing().key() == "t=0.5,c=0.5,v=0"
    # no confidence or volume cut-off separates the flat blob from the lesion: only the slice rule does
    choice = choose_postprocessing([p], [lesion | step], [0.01])
    assert choice["min_slices"] == 2 and choice["candidates"]["t=0.5,c=0.5,v=0,s=2"] == 1.0
    assert choice["candidates"]["t=0.5,c=0.95,v=0.25"] == round(2 * 75 / (75 + 36 + 77), 6)
    # a lesion on one slice only: the rule would delete it, so validation keeps every component
    thin = _blob(shape, (4, 5, 5), (1, 8, 8))
    q = np.full(shape, 0.02, np.float32)
    q[thin] = 0.9
    assert choose_postprocessing([q], [thin], [0.01])["min_slices"] == 1
