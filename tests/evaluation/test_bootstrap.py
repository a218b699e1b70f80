"""Bootstrap CIs: seeding, stratification, coverage, agreement with the point statistics."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from osteomet.evaluation import (
    EvaluationInputError,
    auc,
    bootstrap_ci,
    bootstrap_threshold_metrics,
    delong_ci,
    resample_indices,
    threshold_metrics,
)
from osteomet.evaluation.bootstrap import bootstrap_auc_ci
from osteomet.evaluation.roc import auc_from_validated
from tests.evaluation.r_reference import requires_r


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    return float(roc_auc_score(y, s))  # independent AUC implementation as the statistic


def _data(seed: int = 0, n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    return y, rng.normal(size=n) + y


def test_same_seed_same_interval_other_seed_differs() -> None:
    y, s = _data()
    first = bootstrap_ci(y, s, _auc, n_resamples=300, seed=42)
    assert bootstrap_ci(y, s, _auc, n_resamples=300, seed=42) == first
    assert bootstrap_ci(y, s, _auc, n_resamples=300, seed=43) != first
    assert first.estimate == pytest.approx(auc(y, s))


def test_interval_is_percentiles_of_resampled_statistics() -> None:
    y, s = _data(1)
    labels = y.astype(bool)
    stats = [_auc(y[i], s[i]) for i in resample_indices(labels, 500, seed=9)]
    ci = bootstrap_ci(y, s, _auc, n_resamples=500, seed=9, level=0.9)
    assert (ci.low, ci.high) == pytest.approx(tuple(np.quantile(stats, [0.05, 0.95])))


def test_stratified_resamples_keep_class_counts() -> None:
    y, s = _data(2)
    n_pos = int(y.sum())
    seen = []

    def count_positives(labels: np.ndarray, scores: np.ndarray) -> float:
        seen.append((int(labels.sum()), labels.size))
        return float(labels.sum())

    ci = bootstrap_ci(y, s, count_positives, n_resamples=200, seed=0)
    assert set(seen) == {(n_pos, y.size)}
    assert ci == (n_pos, n_pos, n_pos)
    unstratified = [int(y[i].sum()) for i in resample_indices(y.astype(bool), 200, seed=0, stratified=False)]
    assert len(set(unstratified)) > 1  # the plain bootstrap does vary the class counts


def test_unstratified_skips_one_class_resamples() -> None:
    y = np.array([1] + [0] * 9)
    s = np.linspace(0, 1, 10)
    ci = bootstrap_ci(y, s, _auc, n_resamples=200, seed=0, stratified=False)
    assert math.isfinite(ci.low) and math.isfinite(ci.high)


def test_coverage_is_near_nominal() -> None:
    """95% intervals cover the true AUC Phi(d / sqrt 2) in roughly 95% of simulated studies."""
    shift = 1.0
    truth = norm.cdf(shift / math.sqrt(2))
    rng = np.random.default_rng(123)
    hits = 0
    n_studies = 120
    for i in range(n_studies):
        y = np.r_[np.ones(40, int), np.zeros(40, int)]
        s = rng.normal(size=80) + shift * y
        ci = bootstrap_ci(y, s, lambda a, b: auc(a, b), n_resamples=200, seed=i)
        hits += ci.low <= truth <= ci.high
    assert 0.88 <= hits / n_studies <= 0.99  # 0.94 with this seed


def test_threshold_metrics_table() -> None:
    y, s = _data(4, 150)
    table = bootstrap_threshold_metrics(y, s, 0.4, n_resamples=300, seed=1)
    assert list(table.columns) == ["metric", "estimate", "ci_low", "ci_high"]
    assert list(table["metric"]) == [
        "auc",
        "acc",
        "sensitivity",
        "specificity",
        "ppv",
        "npv",
        "precision",
        "recall",
        "f1",
    ]
    point = threshold_metrics(y, s, 0.4) | {"auc": auc(y, s)}
    est = table.set_index("metric")["estimate"]
    for name, value in point.items():
        assert est[name] == pytest.approx(value)
    assert (table["ci_low"] <= table["estimate"]).all() and (table["estimate"] <= table["ci_high"]).all()
    again = bootstrap_threshold_metrics(y, s, 0.4, n_resamples=300, seed=1)
    assert again.equals(table)
    # AUC interval is the same as bootstrap_ci's with the same seed (same resamples)
    ci = bootstrap_ci(y, s, lambda a, b: auc(a, b), n_resamples=300, seed=1)
    assert table.iloc[0][["ci_low", "ci_high"]].tolist() == pytest.approx([ci.low, ci.high])


def test_errors() -> None:
    with pytest.raises(EvaluationInputError, match="only positive"):
        bootstrap_ci([1, 1], [0.1, 0.2], _auc)
    with pytest.raises(EvaluationInputError, match="n_resamples"):
        bootstrap_ci([0, 1], [0.1, 0.2], _auc, n_resamples=0)
    with pytest.raises(EvaluationInputError, match="NaN"):
        bootstrap_threshold_metrics([0, 1], [np.nan, 0.2], 0.5)


def test_bootstrap_mean_matches_a_hand_loop_and_covers_the_mean():
    from osteomet.evaluation.bootstrap import bootstrap_mean

    values = np.array([0.9, 0.4, np.nan, 0.75, 0.6, 0.8, 0.55])
    got = bootstrap_mean(values, n_resamples=500, seed=7)
    clean = values[~np.isnan(values)]
    rng = np.random.default_rng(7)
    means = clean[rng.integers(0, clean.size, size=(500, clean.size))].mean(axis=1)
    assert got.estimate == pytest.approx(clean.mean())
    assert got.low == pytest.approx(np.quantile(means, 0.025))
    assert got.high == pytest.approx(np.quantile(means, 0.975))
    assert got.low < clean.mean() < got.high
    with pytest.raises(EvaluationInputError, match="non-NaN"):
        bootstrap_mean([np.nan, np.nan])


def test_cluster_bootstrap_draws_whole_patients_and_widens_slice_intervals():
    from osteomet.evaluation.bootstrap import resample_indices

    rng = np.random.default_rng(3)
    patients = np.repeat(np.arange(12), 20)  # 12 patients x 20 slices, strongly patient-correlated scores
    patient_effect = rng.normal(0, 1.5, 12)[patients]
    y = (rng.random(patients.size) < 0.3).astype(int)
    scores = y * 0.8 + patient_effect + rng.normal(0, 0.5, patients.size)
    for idx in resample_indices(y.astype(bool), 20, seed=1, groups=patients):
        drawn, counts = np.unique(patients[idx], return_counts=True)
        assert idx.size == patients.size and (counts % 20 == 0).all()  # every drawn patient comes whole
    # same draws as picking patient ids by hand with the same generator
    first = next(resample_indices(y.astype(bool), 1, seed=5, groups=patients))
    ids = np.random.default_rng(5).integers(0, 12, 12)
    assert np.array_equal(np.sort(patients[first]), np.sort(np.repeat(ids, 20)))
    flat = bootstrap_threshold_metrics(y, scores, 0.5, n_resamples=300, seed=0).set_index("metric")
    cluster = bootstrap_threshold_metrics(y, scores, 0.5, n_resamples=300, seed=0, groups=patients).set_index("metric")
    assert cluster.loc["auc", "estimate"] == flat.loc["auc", "estimate"]
    width = lambda t: t.loc["acc", "ci_high"] - t.loc["acc", "ci_low"]  # noqa: E731
    assert width(cluster) > 1.5 * width(flat)
    with pytest.raises(EvaluationInputError, match="group ids"):
        next(resample_indices(y.astype(bool), 1, groups=patients[:-1]))


def _tied_data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores on a 0.05 grid: many ties between and within classes, as rounded probabilities have."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    return y, np.round(1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * y))) / 0.05) * 0.05


@pytest.mark.parametrize("stratified", [True, False])
def test_auc_without_resorting_equals_ranking_every_resample(stratified: bool) -> None:
    """The O(n) resample AUC gives, resample by resample, what sklearn's sorting AUC gives on the same draws."""
    y, s = _tied_data(5, 60 if not stratified else 400)
    if not stratified:
        y[:] = 0
        y[:3] = 1  # rare cases: some plain resamples have no case at all and are left out
    labels = y.astype(bool)
    expected = []
    for i in resample_indices(labels, 400, seed=11, stratified=stratified):
        lab = y[i]
        expected.append(_auc(lab, s[i]) if 0 < lab.sum() < lab.size else np.nan)
    expected = np.array(expected)
    if not stratified:
        assert np.isnan(expected).any()
    low, high = np.nanquantile(expected, [0.025, 0.975])
    for statistic in (auc, auc_from_validated):  # both route to the fast path
        fast = bootstrap_ci(y, s, statistic, n_resamples=400, seed=11, stratified=stratified)
        assert (fast.low, fast.high) == pytest.approx((low, high), abs=1e-12)
    generic = bootstrap_ci(y, s, _auc, n_resamples=400, seed=11, stratified=stratified)  # the former way
    assert bootstrap_auc_ci(y, s, n_resamples=400, seed=11, stratified=stratified) == pytest.approx(tuple(generic))


def test_threshold_table_auc_without_resorting_matches_sorting_for_clusters() -> None:
    y, s = _tied_data(6, 240)
    patients = np.repeat(np.arange(40), 6)
    table = bootstrap_threshold_metrics(y, s, 0.5, n_resamples=200, seed=3, groups=patients).set_index("metric")
    areas = [_auc(y[i], s[i]) if 0 < y[i].sum() < i.size else np.nan
             for i in resample_indices(y.astype(bool), 200, seed=3, groups=patients)]
    assert (table.loc["auc", "ci_low"], table.loc["auc", "ci_high"]) == pytest.approx(
        tuple(np.nanquantile(areas, [0.025, 0.975])), abs=1e-12)
    assert table.loc["auc", "estimate"] == pytest.approx(_auc(y, s), abs=1e-12)


@requires_r
def test_bootstrap_auc_interval_agrees_with_proc_within_monte_carlo_error(tmp_path: Path) -> None:
    """pROC ci.auc(method = "bootstrap", boot.stratified = TRUE) on the same data, its own random draws."""
    y, s = _tied_data(7, 300)
    n_boot = 4000
    data = tmp_path / "d.csv"
    np.savetxt(data, np.c_[y, s], delimiter=",", header="y,score", comments="", fmt=["%d", "%.17g"])
    script = tmp_path / "boot.R"
    script.write_text(
        "suppressMessages(library(pROC)); d <- read.csv(commandArgs(TRUE)[1]); set.seed(3)\n"
        "r <- roc(d$y, d$score, levels = c(0, 1), direction = '<', quiet = TRUE)\n"
        f"ci <- ci.auc(r, method = 'bootstrap', boot.n = {n_boot}, boot.stratified = TRUE, progress = 'none')\n"
        "cat(sprintf('%.17g %.17g %.17g', as.numeric(auc(r)), ci[1], ci[3]))\n"
    )
    proc = subprocess.run(["Rscript", str(script), str(data)], capture_output=True, text=True, timeout=120,
                          check=False)
    if "there is no package called" in proc.stderr:
        pytest.skip("R package pROC missing")
    assert proc.returncode == 0, proc.stderr
    r_auc, r_low, r_high = map(float, proc.stdout.split())
    ours = bootstrap_auc_ci(y, s, n_resamples=n_boot, seed=0)
    assert ours.estimate == pytest.approx(r_auc, abs=1e-12)
    # Monte Carlo SE of a 2.5% quantile of B draws, sd from DeLong; two independent runs differ by sqrt(2) of it
    sd = (delong_ci(y, s).high - r_auc) / norm.ppf(0.975)
    mc_se = math.sqrt(0.025 * 0.975 / n_boot) * sd / norm.pdf(norm.ppf(0.025))
    assert abs(ours.low - r_low) < 4 * math.sqrt(2) * mc_se
    assert abs(ours.high - r_high) < 4 * math.sqrt(2) * mc_se
    assert abs(ours.low - r_low) < 0.01 and abs(ours.high - r_high) < 0.01  # and a few thousandths in absolute terms


def test_a_cluster_bootstrap_over_too_few_patients_gives_no_interval():
    """Three patients have ten distinct resamples: the estimate stands, the interval is NaN, not a fake one."""
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(3), 30)
    y = rng.random(90) < 0.3
    scores = y + rng.normal(0, 1, 90)
    table = bootstrap_threshold_metrics(y, scores, 0.5, n_resamples=100, seed=0, groups=patients).set_index("metric")
    assert table.loc["auc", "estimate"] == pytest.approx(roc_auc_score(y, scores))
    assert table[["ci_low", "ci_high"]].isna().all().all()
    five = bootstrap_threshold_metrics(y, scores, 0.5, n_resamples=100, seed=0, groups=np.repeat(np.arange(5), 18))
    assert five[["ci_low", "ci_high"]].notna().all().all()
