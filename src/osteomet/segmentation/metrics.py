"""Overlap metrics on label arrays (per case), used for validation and reporting.

Empty-mask convention: if prediction and reference are both empty, Dice, precision and
recall are 1 (nothing to find, nothing found); if only one is empty, Dice is 0 and the
undefined ratio (precision with no prediction, recall with no reference) is NaN.
"""

from __future__ import annotations

import numpy as np


def overlap(prediction: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    p, r = np.asarray(prediction).astype(bool), np.asarray(reference).astype(bool)
    if p.shape != r.shape:
        raise ValueError(f"prediction shape {p.shape} != reference shape {r.shape}")
    tp = float(np.logical_and(p, r).sum())
    n_p, n_r = float(p.sum()), float(r.sum())
    if n_p == 0 and n_r == 0:
        return {"dice": 1.0, "precision": 1.0, "recall": 1.0}
    return {
        "dice": 2 * tp / (n_p + n_r),
        "precision": tp / n_p if n_p else float("nan"),
        "recall": tp / n_r if n_r else float("nan"),
    }
