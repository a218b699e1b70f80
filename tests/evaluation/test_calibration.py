"""Calibration (Brier, intercept, slope) against R's glm, and net benefit against a hand-computed case."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osteomet.evaluation.calibration import calibration, calibration_curve
from osteomet.evaluation.decision_curve import net_benefit
from tests.evaluation.r_reference import TOL, requires_r

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


def test_overconfident_predictions_have_slope_below_one() -> None:
    y, p = _overfit()
    c = calibration(y, p)
    assert c.slope < 0.7 and c.intercept < 0 and c.n == 300
    assert c.brier == pytest.approx(np.mean((p - y) ** 2))
    ideal_y = (np.random.default_rng(1).random(20000) < (q := np.random.default_rng(2).random(20000))).astype(int)
    ideal = calibration(ideal_y, q)
    assert abs(ideal.slope - 1) < 0.1 and abs(ideal.intercept) < 0.05
    curve = calibration_curve(y, p, bins=5)
    assert len(curve) == 5 and curve["n"].sum() == 300 and curve["mean_predicted"].is_monotonic_increasing


@requires_r
def test_calibration_matches_r_glm(tmp_path: Path) -> None:
    y, p = _overfit(250, seed=5)
    p[0], p[1] = 0.0, 1.0  # exact 0/1 probabilities are clipped identically
    pd.DataFrame({"y": y, "p": p}).to_csv(tmp_path / "d.csv", index=False, float_format="%.17g")
    (tmp_path / "glm.R").write_text(GLM)
    run = subprocess.run(["Rscript", str(tmp_path / "glm.R"), str(tmp_path / "d.csv"), str(tmp_path / "r.txt")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    brier, intercept, slope = (float(v) for v in (tmp_path / "r.txt").read_text().split())
    c = calibration(y, p)
    assert (c.brier, c.intercept, c.slope) == pytest.approx((brier, intercept, slope), abs=TOL)


def test_net_benefit_hand_computed() -> None:
    y = np.array([1, 1, 0, 0, 0, 1, 0, 0, 0, 0])
    p = np.array([0.9, 0.6, 0.55, 0.3, 0.2, 0.15, 0.1, 0.05, 0.04, 0.01])
    table = net_benefit(y, p, thresholds=[0.1, 0.5]).set_index("threshold")
    # pt = 0.1: treated p >= 0.1 -> 7 patients: TP 3, FP 4; NB = 3/10 - 4/10 * 1/9
    assert table.loc[0.1, "model"] == pytest.approx(0.3 - 0.4 / 9)
    # pt = 0.5: treated 3: TP 2, FP 1; NB = 0.2 - 0.1 * 1
    assert table.loc[0.5, "model"] == pytest.approx(0.1)
    assert table.loc[0.1, "treat_all"] == pytest.approx(0.3 - 0.7 / 9) and table.loc[0.5, "treat_none"] == 0
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        net_benefit(y, p, thresholds=[0.0])


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
    brier, intercept, slope = (v for v in (tmp_path / "r.txt").read_text().split())
    c = calibration(y, p)
    assert slope == "NA" and np.isnan(c.slope)
    assert (c.brier, c.intercept) == pytest.approx((float(brier), float(intercept)), abs=TOL)
