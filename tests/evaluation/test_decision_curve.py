"""Net benefit against dcurves.dca (the method authors' implementation) to 1e-9, and by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osteomet.evaluation.bootstrap import resample_indices
from osteomet.evaluation.decision_curve import DEFAULT_THRESHOLDS, net_benefit, net_benefit_ci
from osteomet.evaluation.errors import EvaluationInputError

NB_TOL = 1e-9


def _dca(y: np.ndarray, p: np.ndarray, thresholds) -> pd.DataFrame:
    """dcurves' net benefit of the model, treat all and treat none, one row per threshold."""
    dcurves = pytest.importorskip("dcurves", reason="dcurves (pip install dcurves==1.1.7) is the reference")
    out = dcurves.dca(data=pd.DataFrame({"outcome": y, "model": p}), outcome="outcome", modelnames=["model"],
                      thresholds=list(thresholds))
    wide = out.pivot(index="threshold", columns="model", values="net_benefit")
    return wide.loc[list(thresholds), ["model", "all", "none"]]


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(11)
    x = rng.normal(size=300)
    cases = {"continuous_300": ((rng.random(300) < 1 / (1 + np.exp(-(x - 1)))).astype(int), 1 / (1 + np.exp(-(1.5 * x - 1))))}
    x = rng.normal(size=18)
    cases["study_18"] = ((rng.random(18) < 0.35).astype(int), 1 / (1 + np.exp(-x)))
    # predictions exactly on the thresholds (p >= pt treats them), and exact 0 and 1
    p = np.round(rng.uniform(0, 1, 60), 2)
    p[:2] = 0.0, 1.0
    cases["on_thresholds_60"] = ((rng.random(60) < p).astype(int), p)
    cases["few_values_40"] = ((rng.random(40) < 0.3).astype(int), rng.choice(np.array(DEFAULT_THRESHOLDS)[::10], 40))
    return cases


@pytest.mark.parametrize("case", list(_cases()))
def test_net_benefit_matches_dcurves(case: str) -> None:
    y, p = _cases()[case]
    ours = net_benefit(y, p).set_index("threshold")
    ref = _dca(y, p, DEFAULT_THRESHOLDS)
    np.testing.assert_allclose(ours["model"], ref["model"], atol=NB_TOL, rtol=0)
    np.testing.assert_allclose(ours["treat_all"], ref["all"], atol=NB_TOL, rtol=0)
    np.testing.assert_allclose(ours["treat_none"], ref["none"], atol=NB_TOL, rtol=0)


def test_net_benefit_hand_computed() -> None:
    y = np.array([1, 1, 0, 0, 0, 1, 0, 0, 0, 0])
    p = np.array([0.9, 0.6, 0.55, 0.3, 0.2, 0.15, 0.1, 0.05, 0.04, 0.01])
    table = net_benefit(y, p, thresholds=[0.1, 0.5]).set_index("threshold")
    # pt = 0.1: treated p >= 0.1 -> 7 patients: TP 3, FP 4; NB = 3/10 - 4/10 * 1/9
    assert table.loc[0.1, "model"] == pytest.approx(0.3 - 0.4 / 9)
    # pt = 0.5: treated 3: TP 2, FP 1; NB = 0.2 - 0.1 * 1
    assert table.loc[0.5, "model"] == pytest.approx(0.1)
    assert table.loc[0.1, "treat_all"] == pytest.approx(0.3 - 0.7 / 9) and table.loc[0.5, "treat_none"] == 0
    with pytest.raises(EvaluationInputError, match="strictly between 0 and 1"):
        net_benefit(y, p, thresholds=[0.0])


def test_bootstrap_band_is_dcurves_on_each_resample() -> None:
    """The band's quantiles are those of dcurves' net benefit on the same resamples of patients."""
    y, p = _cases()["continuous_300"]
    thresholds = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7]
    table = net_benefit_ci(y, p, thresholds, n_resamples=40, seed=3, level=0.9)
    draws = [_dca(y[index], p[index], thresholds) for index in resample_indices(y, 40, seed=3, stratified=False)]
    for ours, theirs in (("model", "model"), ("treat_all", "all")):
        values = np.stack([d[theirs].to_numpy() for d in draws], axis=1)
        low, high = np.quantile(values, [0.05, 0.95], axis=1)
        np.testing.assert_allclose(table[f"{ours}_low"], low, atol=NB_TOL, rtol=0)
        np.testing.assert_allclose(table[f"{ours}_high"], high, atol=NB_TOL, rtol=0)
    pd.testing.assert_frame_equal(table[["threshold", "model", "treat_all", "treat_none"]],
                                  net_benefit(y, p, thresholds))
    assert (table["model_low"] <= table["model_high"]).all()
    again = net_benefit_ci(y, p, thresholds, n_resamples=40, seed=3, level=0.9)
    pd.testing.assert_frame_equal(table, again)  # seeded: a rerun gives the same band
