"""Clusters of lesions along z: gap rule, units, transitivity, and through the full analysis."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from osteomet.ct.lesions.analysis import analyse_lesions
from osteomet.ct.lesions.clusters import assign_clusters, count_clusters


def _mask_with_blobs(ranges: list[tuple[int, int]], depth: int = 40) -> sitk.Image:
    mask = np.zeros((depth, 12, 40), np.uint8)
    for i, (z0, z1) in enumerate(ranges):
        mask[z0 : z1 + 1, 4:7, 3 * i + 1 + i : 3 * i + 3 + i] = 1  # separate columns in x
    image = sitk.GetImageFromArray(mask)
    image.SetSpacing((1.0, 1.0, 2.0))
    return image


def test_lesions_9_slices_apart_cluster_and_11_apart_do_not() -> None:
    # A: 0-2; B: 11-12 (first slice 9 after A's last); C: 24-25 (11 after B's last)
    analysis = analyse_lesions(_mask_with_blobs([(0, 2), (11, 12), (24, 25)]))
    table = analysis.table.sort_values("slice_first")
    assert table["slice_first"].tolist() == [0, 11, 24]
    assert table["cluster_id"].tolist() == [1, 1, 2]
    assert analysis.summary()["n_clusters"] == 2


def test_boundary_and_unit_mm() -> None:
    first, last = np.array([0, 12]), np.array([2, 12])  # gap of exactly 10 slices
    assert assign_clusters(first, last, max_gap=10).tolist() == [1, 1]
    assert assign_clusters(first, last, max_gap=9).tolist() == [1, 2]
    # 2 mm slices: 9 slices = 18 mm, 11 slices = 22 mm
    first, last = np.array([0, 11, 24]), np.array([2, 12, 25])
    assert assign_clusters(first, last, max_gap=20, unit="mm", slice_spacing_mm=2.0).tolist() == [1, 1, 2]
    assert assign_clusters(first, last, max_gap=17.9, unit="mm", slice_spacing_mm=2.0).tolist() == [1, 2, 3]
    analysis = analyse_lesions(_mask_with_blobs([(0, 2), (11, 12), (24, 25)]), cluster_gap=20, cluster_unit="mm")
    assert analysis.table.sort_values("slice_first")["cluster_id"].tolist() == [1, 1, 2]


def test_single_linkage_overlap_and_order() -> None:
    # given out of order; C overlaps A's range; D is 8 after B which is 8 after A's reach (transitive chain)
    first = np.array([30, 0, 1, 18, 45])
    last = np.array([31, 10, 3, 20, 46])
    ids = assign_clusters(first, last, max_gap=10)
    # sorted by first: [0-10], [1-3], [18-20] (gap 8), [30-31] (gap 10), [45-46] (gap 14)
    assert ids.tolist() == [1, 1, 1, 1, 2]
    assert count_clusters(ids) == 2 and count_clusters(np.array([], int)) == 0
    assert assign_clusters(np.array([], int), np.array([], int)).size == 0


def test_bad_cluster_settings() -> None:
    with pytest.raises(ValueError, match="slice spacing"):
        assign_clusters(np.array([0]), np.array([1]), unit="mm")
    with pytest.raises(ValueError, match="'slices' or 'mm'"):
        assign_clusters(np.array([0]), np.array([1]), unit="cm")
    with pytest.raises(ValueError, match="before its first"):
        assign_clusters(np.array([3]), np.array([1]))
    with pytest.raises(ValueError, match="max_gap"):
        assign_clusters(np.array([0]), np.array([1]), max_gap=-1)
