"""Calibration against R: glm intercept/slope with Wald CIs, rms::val.prob's E statistics, stats::loess curve and band.

Fixtures: ``fixtures/calibration.R`` run on ``calibration_data.csv`` (written by :func:`calibration_cases`);
the live tests run the same script on data drawn with another seed when ``Rscript`` (with rms) is present.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from osteomet.evaluation.calibration import Loess, calibration, calibration_curve, flexible_calibration
from osteomet.evaluation.errors import EvaluationInputError
from tests.evaluation.r_reference import FIXTURES, TOL, requires_r, run_r_script

CALIBRATION_SCRIPT = FIXTURES / "calibration.R"
LOESS_TOL = 1e-9  # our loess is R's algorithm step by step: agreement is to rounding (~1e-14)

GLM = r"""
d <- read.csv(commandArgs(trailingOnly = TRUE)[1])
lp <- qlogis(pmin(pmax(d$p, 1e-12), 1 - 1e-12))
slope <- coef(glm(d$y ~ lp, family = binomial))[2]
intercept <- coef(glm(d$y ~ offset(lp), family = binomial))[1]
writeLines(sprintf("%.17g", c(mean((d$p - d$y)^2), intercept, slope)), commandArgs(trailingOnly = TRUE)[2])
"""


def _overfit(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(x - 0.5)))).astype(int)
    p = 1 / (1 + np.exp(-(2.0 * x + 0.3)))  # too extreme and too high: slope < 1, intercept < 0
    return y, p


def calibration_cases(seed: int = 0) -> pd.DataFrame:
    """``case, y, p``: cohorts like the study's (18-37 patients), larger ones, ties, few distinct risks."""
    rng = np.random.default_rng(seed)
    frames = []

    def add(case: str, p: np.ndarray, truth: np.ndarray) -> None:
        y = (rng.random(p.size) < truth).astype(int)
        frames.append(pd.DataFrame({"case": case, "y": y, "p": p}))

    def logistic(v: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-v))

    x = rng.normal(size=300)
    add("overfit_300", logistic(2.0 * x + 0.3), logistic(x - 0.5))
    x = rng.normal(size=18)
    add("study_18", logistic(1.4 * x - 0.6), logistic(x - 0.4))
    x = rng.normal(size=37)
    add("rounded_37", np.clip(np.round(logistic(1.2 * x - 0.5), 2), 0.01, 0.99), logistic(x - 0.3))
    q = rng.uniform(0.02, 0.95, 150)
    add("calibrated_150", q, q)
    x = rng.normal(size=80)
    add("underfit_80", logistic(0.5 * x), logistic(1.5 * x + 0.4))
    add("six_values_60", rng.choice([0.1, 0.15, 0.2, 0.5, 0.55, 0.9], 60), np.full(60, 0.4))
    return pd.concat(frames, ignore_index=True)


def _read(path: Path) -> pd.DataFrame:
    """A CSV of 17-digit numbers read to the same doubles R read (pandas' default parser may differ by 1 ulp)."""
    return pd.read_csv(path, float_precision="round_trip")


def _compare(data: pd.DataFrame, results: pd.DataFrame, curves: pd.DataFrame) -> None:
    for ref in results.itertuples(index=False):
        part = data[data["case"] == ref.case]
        y, p = part["y"].to_numpy(), part["p"].to_numpy()
        c = calibration(y, p)
        assert (c.n, c.events) == (ref.n, ref.events)
        ours = [c.brier, c.intercept, c.intercept_low, c.intercept_high, c.slope, c.slope_low, c.slope_high,
                c.emax, c.e90, c.eavg]
        r = [ref.brier, ref.intercept, ref.intercept_low, ref.intercept_high, ref.slope, ref.slope_low,
             ref.slope_high, ref.emax, ref.e90, ref.eavg]
        np.testing.assert_allclose(ours, r, atol=TOL, rtol=0, err_msg=ref.case)
        # rms::val.prob (lrm.fit) agrees with glm on the slope
        np.testing.assert_allclose([c.slope, c.brier], [ref.valprob_slope, ref.valprob_brier], atol=TOL)
        fit = Loess(p, y)
        np.testing.assert_allclose([fit.s, fit.one_delta, fit.trace_hat],
                                   [ref.loess_s, ref.loess_one_delta, ref.loess_trace], atol=LOESS_TOL, rtol=0)
        curve = curves[curves["case"] == ref.case]
        at = curve["p"].to_numpy()
        observed, se = fit.predict(at, se=True)
        np.testing.assert_allclose(observed, curve["fit"], atol=LOESS_TOL, rtol=0, err_msg=ref.case)
        np.testing.assert_allclose(se, curve["se"], atol=LOESS_TOL, rtol=0, err_msg=ref.case)
        flexible = flexible_calibration(y, p, points=at)
        z = norm.ppf(0.975)
        np.testing.assert_allclose(flexible.curve["observed"], curve["fit"], atol=LOESS_TOL, rtol=0)
        np.testing.assert_allclose(flexible.curve["ci_low"], np.clip(curve["fit"] - z * curve["se"], 0, 1),
                                   atol=LOESS_TOL, rtol=0)
        np.testing.assert_allclose(flexible.curve["ci_high"], np.clip(curve["fit"] + z * curve["se"], 0, 1),
                                   atol=LOESS_TOL, rtol=0)


def test_calibration_and_loess_curve_match_r_fixtures() -> None:
    """glm + confint.default, rms::val.prob and stats::loess on committed data (fixtures/calibration.R)."""
    data, results, curves = (_read(FIXTURES / f"calibration_{name}.csv") for name in ("data", "results", "curve"))
    assert set(results["case"]) == set(data["case"]) == set(calibration_cases()["case"])
    _compare(data, results, curves)


def test_fixture_data_is_what_the_generator_writes() -> None:
    pd.testing.assert_frame_equal(_read(FIXTURES / "calibration_data.csv"), calibration_cases(), rtol=1e-12,
                                  check_dtype=False)


@requires_r
def test_calibration_and_loess_curve_match_live_r(tmp_path: Path) -> None:
    data = calibration_cases(seed=7)
    src, results, curves = tmp_path / "data.csv", tmp_path / "results.csv", tmp_path / "curve.csv"
    data.to_csv(src, index=False, float_format="%.17g")
    run_r_script(CALIBRATION_SCRIPT, [src, results, curves])
    _compare(_read(src), _read(results), _read(curves))


def test_overconfident_predictions_have_slope_below_one() -> None:
    y, p = _overfit()
    c = calibration(y, p)
    assert c.slope < 0.7 and c.intercept < 0 and c.n == 300
    assert c.slope_low < c.slope < c.slope_high < 1 and c.intercept_high < 0  # both CIs exclude the ideal
    assert c.brier == pytest.approx(np.mean((p - y) ** 2))
    ideal_y = (np.random.default_rng(1).random(20000) < (q := np.random.default_rng(2).random(20000))).astype(int)
    ideal = calibration(ideal_y, q)
    assert abs(ideal.slope - 1) < 0.1 and abs(ideal.intercept) < 0.05
    assert ideal.slope_low < 1 < ideal.slope_high and ideal.intercept_low < 0 < ideal.intercept_high
    assert ideal.eavg < 0.02
    curve = calibration_curve(y, p, bins=5)
    assert len(curve) == 5 and curve["n"].sum() == 300 and curve["mean_predicted"].is_monotonic_increasing


def test_wider_level_gives_wider_intervals() -> None:
    y, p = _overfit(120, seed=3)
    narrow, wide = calibration(y, p, level=0.8), calibration(y, p, level=0.99)
    assert wide.slope_low < narrow.slope_low < narrow.slope < narrow.slope_high < wide.slope_high
    # Wald: half-widths scale with the normal quantile
    ratio = (wide.intercept_high - wide.intercept) / (narrow.intercept_high - narrow.intercept)
    assert ratio == pytest.approx(norm.ppf(0.995) / norm.ppf(0.9))
    with pytest.raises(EvaluationInputError, match="level"):
        calibration(y, p, level=1.0)


def test_flexible_calibration_table_and_histogram() -> None:
    y, p = _overfit(60, seed=2)
    flexible = flexible_calibration(y, p, points=11, bins=10)
    curve = flexible.curve
    assert list(curve.columns) == ["predicted", "observed", "se", "ci_low", "ci_high"]
    assert curve["predicted"].iloc[0] == p.min() and curve["predicted"].iloc[-1] == p.max() and len(curve) == 11
    assert ((curve["ci_low"] <= curve["observed"].clip(0, 1)) & (curve["observed"].clip(0, 1) <= curve["ci_high"])).all()
    hist = flexible.histogram
    assert hist["events"].sum() == y.sum() == flexible.events and hist["non_events"].sum() == (y == 0).sum()
    low_bin = hist.iloc[0]
    assert low_bin["events"] + low_bin["non_events"] == np.sum(p < 0.1)
    # outside the observed predictions loess is not defined (NaN in R too)
    outside = flexible_calibration(y, p, points=[p.min() - 0.01, p.max()]).curve
    assert np.isnan(outside["observed"].iloc[0]) and np.isfinite(outside["observed"].iloc[1])


def test_loess_refuses_what_r_cannot_fit() -> None:
    with pytest.raises(EvaluationInputError, match="too few patients"):
        flexible_calibration([0, 1, 0, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.5])
    with pytest.raises(EvaluationInputError, match="share the prediction"):
        Loess(np.r_[0.1, np.full(10, 0.4)], np.r_[0, np.tile([0, 1], 5)])


def test_loess_warns_where_it_needs_a_pseudoinverse() -> None:
    """Two distinct risks in a neighbourhood cannot fix a local quadratic: R warns, so do we."""
    p = np.r_[np.full(8, 0.2), np.full(8, 0.6), np.full(8, 0.9)]
    y = np.tile([0, 1, 0, 0], 6)
    with pytest.warns(RuntimeWarning, match="pseudoinverse used at 0.1965, 0.2, 0.6, 0.9, 0.9035"):
        fit = Loess(p, y)
    assert np.isfinite(fit.fitted).all()


@requires_r
def test_calibration_matches_r_glm(tmp_path: Path) -> None:
    y, p = _overfit(250, seed=5)
    p[0], p[1] = 0.0, 1.0  # exact 0/1 probabilities are clipped identically
    pd.DataFrame({"y": y, "p": p}).to_csv(tmp_path / "d.csv", index=False, float_format="%.17g")
    (tmp_path / "glm.R").write_text(GLM)
    run = subprocess.run(["Rscript", str(tmp_path / "glm.R"), str(tmp_path / "d.csv"), str(tmp_path / "r.txt")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    brier, intercept, slope = (float(v) for v in (tmp_path / "r.txt").read_text(encoding="utf-8").split())
    c = calibration(y, p)
    assert (c.brier, c.intercept, c.slope) == pytest.approx((brier, intercept, slope), abs=TOL)


@requires_r
def test_one_predicted_value_for_everyone_gives_an_aliased_slope_as_r_does(tmp_path: Path) -> None:
    """A model that scores every patient alike (a tiny model on a small cohort): R's glm reports the slope NA."""
    y = np.array([0, 1, 0, 0, 1, 0, 1, 0])
    p = np.full(y.size, 0.3)
    pd.DataFrame({"y": y, "p": p}).to_csv(tmp_path / "d.csv", index=False, float_format="%.17g")
    (tmp_path / "glm.R").write_text(GLM)
    run = subprocess.run(["Rscript", str(tmp_path / "glm.R"), str(tmp_path / "d.csv"), str(tmp_path / "r.txt")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    brier, intercept, slope = (v for v in (tmp_path / "r.txt").read_text(encoding="utf-8").split())
    c = calibration(y, p)
    assert slope == "NA" and np.isnan(c.slope) and np.isnan(c.slope_low) and np.isnan(c.slope_high)
    assert (c.brier, c.intercept) == pytest.approx((float(brier), float(intercept)), abs=TOL)
    assert c.intercept_low < c.intercept < c.intercept_high


def test_calibration_figure_has_a_panel_per_model_and_survives_degenerate_cohorts(tmp_path: Path) -> None:
    """Too few patients or too many ties for a loess curve: the panel keeps its statistics and histogram."""
    from PIL import Image

    from osteomet.evaluation.plots import plot_calibration

    y, p = _overfit(37, seed=4)

    def table(label, prob) -> pd.DataFrame:
        return pd.DataFrame({"split": "external", "label": label, "prob": prob})

    one = plot_calibration({"fusion": table(y, p)}, "external", tmp_path / "one.png")
    models = {"fusion": table(y, p), "tiny": table([0, 1, 0, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.5]),
              "ties": table(np.r_[0, np.tile([0, 1], 5)], np.r_[0.1, np.full(10, 0.4)]),
              "one class": table(np.zeros(10), np.linspace(0.1, 0.9, 10))}  # not drawn: no calibration
    three = plot_calibration(models, "external", tmp_path / "three.png")
    assert one.with_suffix(".svg").is_file() and three.with_suffix(".svg").is_file()
    (w1, h1), (w3, h3) = Image.open(one).size, Image.open(three).size
    assert w3 > 1.6 * w1 and h3 > 1.6 * h1  # 2 x 2 grid for three models, one panel for one
