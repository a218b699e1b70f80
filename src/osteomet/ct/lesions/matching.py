"""Match predicted lesions to reference lesions, one patient at a time.

Matching follows picai_eval (Saha et al., PI-CAI): overlap is measured between every
predicted and every reference lesion, pairs that pass the *hit criterion* are eligible, and
a one-to-one assignment maximising IoU over eligible pairs is found with the Hungarian
algorithm (``scipy.optimize.linear_sum_assignment``). Criteria:

* ``"iou"``: IoU = |P n R| / |P u R| >= ``iou_threshold`` (default 0.1, picai_eval's
  ``min_overlap`` default; picai_eval compares with a strict ``>``, osteomet with ``>=``
  as the method states; the two differ only for an IoU exactly at the threshold);
* ``"any"``: any overlap, i.e. at least one shared voxel.

A reference lesion with a match is *detected* (a true positive); one without is a false
negative. A predicted lesion without a match is a *false positive*, including a second
fragment of a reference lesion that another fragment already matched (as in picai_eval;
``overlaps_reference`` in the predicted table marks such fragments so they can be reviewed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from osteomet.ct.lesions.labels import LesionLabels
from osteomet.errors import InputError

Criterion = Literal["iou", "any"]
CRITERIA: tuple[str, ...] = ("iou", "any")


def check_criterion(criterion: str, iou_threshold: float) -> None:
    """Refuse an unknown criterion or an IoU threshold outside (0, 1]."""
    if criterion not in CRITERIA:
        raise InputError(f"unknown match criterion {criterion!r}; use 'iou' or 'any'")
    if criterion == "iou" and not 0.0 < iou_threshold <= 1.0:
        raise InputError(f"iou_threshold must be in (0, 1], got {iou_threshold}")


def overlap_counts(pred: LesionLabels, ref: LesionLabels) -> np.ndarray:
    """(n_pred, n_ref) shared voxel counts, computed only where bounding boxes intersect."""
    if tuple(pred.shape) != tuple(ref.shape):
        raise InputError(f"predicted mask shape {pred.shape} differs from the reference's {ref.shape}")
    counts = np.zeros((pred.n, ref.n), dtype=np.int64)
    if pred.n == 0 or ref.n == 0:
        return counts
    lo_p = np.array([[s.start for s in b] for b in pred.boxes])
    hi_p = np.array([[s.stop for s in b] for b in pred.boxes])
    lo_r = np.array([[s.start for s in b] for b in ref.boxes])
    hi_r = np.array([[s.stop for s in b] for b in ref.boxes])
    lo = np.maximum(lo_p[:, None, :], lo_r[None, :, :])
    hi = np.minimum(hi_p[:, None, :], hi_r[None, :, :])
    for i, j in zip(*np.nonzero((hi > lo).all(axis=2))):
        a = tuple(slice(lo_ - s, hi_ - s) for lo_, hi_, s in zip(lo[i, j], hi[i, j], lo_p[i]))
        b = tuple(slice(lo_ - s, hi_ - s) for lo_, hi_, s in zip(lo[i, j], hi[i, j], lo_r[j]))
        counts[i, j] = int(np.count_nonzero(pred.masks[i][a] & ref.masks[j][b]))
    return counts


@dataclass
class LesionMatch:
    """Result for one patient: matched pairs and per-lesion match columns for both sides."""

    pairs: pd.DataFrame  # pred_id, ref_id, overlap_voxels, iou
    reference: pd.DataFrame  # lesion_id, matched_pred_id, iou, detected
    predicted: pd.DataFrame  # lesion_id, matched_ref_id, iou, true_positive, overlaps_reference, max_iou


def match_lesions(pred: LesionLabels, ref: LesionLabels, *, criterion: Criterion | str = "iou",
                  iou_threshold: float = 0.1) -> LesionMatch:
    """One-to-one matching of predicted to reference lesions (see module docstring)."""
    check_criterion(criterion, iou_threshold)
    inter = overlap_counts(pred, ref)
    size_p = np.array([int(m.sum()) for m in pred.masks], dtype=np.int64)
    size_r = np.array([int(m.sum()) for m in ref.masks], dtype=np.int64)
    union = size_p[:, None] + size_r[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    eligible = inter > 0 if criterion == "any" else (iou >= iou_threshold) & (inter > 0)
    pairs = []
    if eligible.any():
        # maximise total IoU over eligible pairs; a tiny bonus per eligible pair makes the
        # assignment prefer more matches over one slightly better match (any-overlap ties)
        weight = np.where(eligible, iou + 1.0, 0.0)
        rows, cols = linear_sum_assignment(weight, maximize=True)
        pairs = [(int(i), int(j)) for i, j in zip(rows, cols) if eligible[i, j]]
    pair_table = pd.DataFrame([{"pred_id": i + 1, "ref_id": j + 1, "overlap_voxels": int(inter[i, j]),
                                "iou": float(iou[i, j])} for i, j in pairs],
                              columns=["pred_id", "ref_id", "overlap_voxels", "iou"])
    to_ref = {i: j for i, j in pairs}
    to_pred = {j: i for i, j in pairs}
    reference = pd.DataFrame({
        "lesion_id": np.arange(1, ref.n + 1),
        "matched_pred_id": pd.array([to_pred[j] + 1 if j in to_pred else pd.NA for j in range(ref.n)], dtype="Int64"),
        "iou": [float(iou[to_pred[j], j]) if j in to_pred else 0.0 for j in range(ref.n)],
        "detected": [j in to_pred for j in range(ref.n)],
    })
    predicted = pd.DataFrame({
        "lesion_id": np.arange(1, pred.n + 1),
        "matched_ref_id": pd.array([to_ref[i] + 1 if i in to_ref else pd.NA for i in range(pred.n)], dtype="Int64"),
        "iou": [float(iou[i, to_ref[i]]) if i in to_ref else 0.0 for i in range(pred.n)],
        "true_positive": [i in to_ref for i in range(pred.n)],
        "overlaps_reference": (inter > 0).any(axis=1) if ref.n else np.zeros(pred.n, bool),
        "max_iou": iou.max(axis=1) if ref.n else np.zeros(pred.n),
    })
    return LesionMatch(pair_table, reference, predicted)
