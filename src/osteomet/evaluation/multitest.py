"""Multiple-testing adjustment: Holm (FWER) and Benjamini-Hochberg (FDR).

Matches R's ``p.adjust(method = "holm" / "BH")`` and statsmodels'
``multipletests(method = "holm" / "fdr_bh")``. NaN p-values (a test that could not be run)
stay NaN and do not count towards the number of tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from osteomet.evaluation.errors import EvaluationInputError


def _prepare(pvalues: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        p = p.ravel()
    finite = ~np.isnan(p)
    if ((p[finite] < 0) | (p[finite] > 1)).any():
        raise EvaluationInputError("p-values must lie in [0, 1]")
    return p, finite


def holm(pvalues: Any) -> np.ndarray:
    """Holm step-down adjusted p-values (same order as the input)."""
    p, finite = _prepare(pvalues)
    out = np.full(p.shape, np.nan)
    q = p[finite]
    m = q.size
    if m:
        order = np.argsort(q, kind="mergesort")
        stepped = np.maximum.accumulate((m - np.arange(m)) * q[order])
        adj = np.empty(m)
        adj[order] = np.minimum(stepped, 1.0)
        out[finite] = adj
    return out


def benjamini_hochberg(pvalues: Any) -> np.ndarray:
    """Benjamini-Hochberg step-up adjusted p-values (same order as the input)."""
    p, finite = _prepare(pvalues)
    out = np.full(p.shape, np.nan)
    q = p[finite]
    m = q.size
    if m:
        order = np.argsort(q, kind="mergesort")[::-1]  # largest first
        ranks = np.arange(m, 0, -1)
        stepped = np.minimum.accumulate(q[order] * m / ranks)
        adj = np.empty(m)
        adj[order] = np.minimum(stepped, 1.0)
        out[finite] = adj
    return out


def adjust(pvalues: Any, method: str) -> np.ndarray:
    """Adjust by name: ``"holm"``, ``"bh"`` (alias ``"fdr_bh"``) or ``"none"``."""
    key = method.lower()
    if key == "holm":
        return holm(pvalues)
    if key in ("bh", "fdr_bh", "benjamini-hochberg"):
        return benjamini_hochberg(pvalues)
    if key == "none":
        return _prepare(pvalues)[0].copy()
    raise EvaluationInputError(f"unknown p-value adjustment {method!r}; use 'holm', 'bh' or 'none'")
