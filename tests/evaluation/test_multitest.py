"""Holm and Benjamini-Hochberg against statsmodels' multipletests (= R p.adjust)."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from osteomet.evaluation import EvaluationInputError, benjamini_hochberg, holm
from osteomet.evaluation.multitest import adjust


@pytest.mark.parametrize("seed", range(5))
def test_matches_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=17) ** 2
    p[3] = p[7]  # a tie
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1], atol=1e-15)
    np.testing.assert_allclose(benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1], atol=1e-15)


def test_hand_computed_example() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])


def test_nan_stays_nan_and_is_not_counted() -> None:
    p = np.array([0.01, np.nan, 0.04])
    out = benjamini_hochberg(p)
    assert np.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], multipletests([0.01, 0.04], method="fdr_bh")[1])


def test_errors() -> None:
    with pytest.raises(EvaluationInputError, match=r"\[0, 1\]"):
        holm([0.2, 1.5])
    with pytest.raises(EvaluationInputError, match="unknown"):
        adjust([0.1], "bonferroni-ish")
