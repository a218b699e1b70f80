"""DeLong CI and tests against pROC 1.18 (committed fixtures, and live R when installed)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from osteomet.evaluation import EvaluationInputError, delong_ci, delong_covariance, delong_test, delong_test_unpaired
from tests.evaluation.r_reference import TOL, requires_r, roc_data, roc_results, run_r

CASES = list(roc_results()["case"])


def _cohorts(data: pd.DataFrame, case: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    d = data[data["case"] == case]
    return d[d["cohort"] == "A"], d[d["cohort"] == "B"]


def _check_case(a: pd.DataFrame, b: pd.DataFrame, ref: pd.Series) -> None:
    level = float(ref["conf_level"])
    ci1 = delong_ci(a["y"], a["score1"], level)
    ci2 = delong_ci(a["y"], a["score2"], level)
    np.testing.assert_allclose(ci1, [ref["auc1"], ref["ci1_low"], ref["ci1_high"]], atol=TOL, rtol=0)
    np.testing.assert_allclose(ci2, [ref["auc2"], ref["ci2_low"], ref["ci2_high"]], atol=TOL, rtol=0)
    paired = delong_test(a["y"], a["score1"], a["score2"], level)
    np.testing.assert_allclose(
        [paired.z, paired.p, paired.diff_low, paired.diff_high],
        [ref["paired_z"], ref["paired_p"], ref["paired_diff_low"], ref["paired_diff_high"]],
        atol=TOL,
        rtol=0,
    )
    unpaired = delong_test_unpaired(a["y"], a["score1"], b["y"], b["score1"])
    np.testing.assert_allclose(
        [unpaired.auc2, unpaired.z, unpaired.df, unpaired.p],
        [ref["auc_b"], ref["unpaired_d"], ref["unpaired_df"], ref["unpaired_p"]],
        atol=TOL,
        rtol=1e-9,
    )


@pytest.mark.parametrize("case", CASES)
def test_matches_proc_fixtures(case: str) -> None:
    a, b = _cohorts(roc_data(), case)
    _check_case(a, b, roc_results().set_index("case").loc[case])


def test_fixtures_cover_ties_small_n_and_near_perfect() -> None:
    data = roc_data()
    a, _ = _cohorts(data, "ties_ordinal5")
    assert a["score1"].nunique() <= 5  # heavy ties really present
    a, _ = _cohorts(data, "small_n7")
    assert len(a) == 7
    assert roc_results().set_index("case").loc["near_perfect", "auc1"] > 0.97


def _naive_components(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) placements by the O(n^2) definition (independent of midranks)."""
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return psi.mean(axis=1), psi.mean(axis=0)


def test_covariance_matches_quadratic_definition() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 150)
    s1 = np.round(rng.normal(size=150) + y, 1)
    s2 = np.round(s1 + rng.normal(size=150), 1)
    aucs, cov = delong_covariance(y, s1, s2)
    comps = [_naive_components(y, s) for s in (s1, s2)]
    v10 = np.vstack([c[0] for c in comps])
    v01 = np.vstack([c[1] for c in comps])
    expected = np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]
    np.testing.assert_allclose(aucs, v10.mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(cov, expected, atol=1e-12)


def test_identical_models_and_perfect_models_follow_proc() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    same = delong_test(y, s, s)
    assert (same.z, same.p) == (0.0, 1.0)  # pROC: 0/0 -> Z = 0
    ci = delong_ci(y, s)
    assert (ci.auc, ci.low, ci.high) == (1.0, 1.0, 1.0)


def test_direction_is_fixed_not_auto() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.9, 0.8, 0.4, 0.5, 0.2, 0.1])
    assert delong_ci(y, s).auc == pytest.approx(1 / 9)  # pROC "auto" would report 8/9


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: delong_ci([1, 1, 1], [0.1, 0.2, 0.3]), "only positive"),
        (lambda: delong_ci([0, 1, 0], [0.1, 0.2]), "length mismatch"),
        (lambda: delong_ci([0, 1, 0, 1], [0.1, np.nan, 0.3, 0.4]), "NaN"),
        (lambda: delong_ci([0, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]), "at least 2 cases"),
        (lambda: delong_test([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3]), "length mismatch"),
        (lambda: delong_test_unpaired([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], [0, 0], [0.1, 0.2]), "y2 has only"),
    ],
)
def test_bad_input_raises_clear_error(call, message: str) -> None:
    with pytest.raises(EvaluationInputError, match=message):
        call()


def _live_cases(rng: np.random.Generator) -> pd.DataFrame:
    frames = []
    for i, (n, ties) in enumerate(itertools.product((15, 60, 250), (None, 1, 0))):
        ya = (rng.random(n) < 0.4).astype(int)
        ya[:2], ya[2:4] = 1, 0
        s1 = rng.normal(size=n) + ya * rng.uniform(0, 2)
        s2 = 0.5 * s1 + rng.normal(size=n) + 0.5 * ya
        yb = np.r_[1, 1, 0, 0, (rng.random(n - 4) < 0.5).astype(int)]
        sb = rng.normal(size=n) + yb
        if ties is not None:
            s1, s2, sb = (np.round(v, ties) for v in (s1, s2, sb))
        level = (0.95, 0.9, 0.99)[i % 3]
        for cohort, y, a, b in (("A", ya, s1, s2), ("B", yb, sb, np.full(n, np.nan))):
            frames.append(
                pd.DataFrame(
                    {"case": f"live{i}", "cohort": cohort, "y": y, "score1": a, "score2": b, "conf_level": level}
                )
            )
    return pd.concat(frames, ignore_index=True)


@pytest.mark.r
@requires_r
def test_matches_live_proc_on_fresh_random_data(tmp_path) -> None:
    seed = int(np.random.SeedSequence().entropy % 2**32)
    print(f"live pROC comparison seed: {seed}")  # shown by pytest when the test fails
    data = _live_cases(np.random.default_rng(seed))
    results = run_r("roc", data, tmp_path).set_index("case")
    for case in results.index:
        a, b = _cohorts(data, case)
        _check_case(a, b, results.loc[case])
