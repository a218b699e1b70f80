"""Spatial clusters of lesions along the body axis.

Metastases often come in runs of neighbouring vertebrae; readers describe them as one
cluster. Rule: sort lesions by first slice; the *gap* between two lesions is
``first slice of the later one - last slice of the earlier one`` (0 or less when their
slice ranges overlap). Lesions whose gap is at most ``max_gap`` are in one cluster, and
the relation is transitive (single linkage along z): A-B 8 slices apart and B-C 8 apart
make one cluster even if A-C are 20 apart. With ``unit="mm"`` the gap is
``slices x slice spacing`` and compared with ``max_gap`` in mm. In-plane position is not
used: the issue defines clusters by slice ranges.

Cluster ids are 1..K in order of each cluster's first slice.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from osteomet.errors import InputError

ClusterUnit = Literal["slices", "mm"]


def assign_clusters(first: np.ndarray, last: np.ndarray, *, max_gap: float = 10.0, unit: ClusterUnit | str = "slices",
                    slice_spacing_mm: float | None = None) -> np.ndarray:
    """Cluster id (1..K) per lesion from its slice range [first, last] (inclusive slice indices)."""
    first = np.asarray(first, dtype=np.int64)
    last = np.asarray(last, dtype=np.int64)
    if first.shape != last.shape:
        raise InputError("first and last slice arrays must have the same length")
    if np.any(last < first):
        raise InputError("a lesion's last slice is before its first slice")
    if max_gap < 0:
        raise InputError(f"max_gap must be >= 0, got {max_gap}")
    if unit == "mm":
        if not slice_spacing_mm or slice_spacing_mm <= 0:
            raise InputError("unit='mm' needs a positive slice spacing in mm")
        scale = float(slice_spacing_mm)
    elif unit == "slices":
        scale = 1.0
    else:
        raise InputError(f"cluster gap unit must be 'slices' or 'mm', got {unit!r}")
    ids = np.zeros(first.size, dtype=np.int64)
    if first.size == 0:
        return ids
    order = np.lexsort((last, first))
    cluster, reach = 1, last[order[0]]
    ids[order[0]] = cluster
    for i in order[1:]:
        if (first[i] - reach) * scale > max_gap + 1e-9:
            cluster += 1
            reach = last[i]
        else:
            reach = max(reach, last[i])
        ids[i] = cluster
    return ids


def count_clusters(cluster_ids: np.ndarray) -> int:
    """Number of distinct clusters (0 for a patient without lesions)."""
    return int(np.unique(np.asarray(cluster_ids)).size)
