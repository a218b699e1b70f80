"""Logistic recalibration: recovers a planted intercept and slope, equals statsmodels' GLM, refuses what has no fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from osteomet.errors import InputError
from osteomet.models.recalibration import LogisticRecalibration, RecalibrationError, logit


def _miscalibrated(n: int, seed: int, intercept: float, slope: float) -> tuple[np.ndarray, np.ndarray]:
    """A model's probabilities and labels drawn from ``logit P(y=1) = intercept + slope * logit(prob)``."""
    rng = np.random.default_rng(seed)
    prob = 1 / (1 + np.exp(-rng.normal(0, 2, n)))
    truth = 1 / (1 + np.exp(-(intercept + slope * logit(prob))))
    return prob, (rng.random(n) < truth).astype(int)


def _glm(prob: np.ndarray, label: np.ndarray):
    import statsmodels.api as sm

    return sm.GLM(label, sm.add_constant(logit(prob)), family=sm.families.Binomial()).fit()


def test_recovers_a_planted_intercept_and_slope_and_then_is_calibrated():
    """An overconfident model (slope 0.6) with probabilities too high (intercept -0.7): the fit finds both within
    3 standard errors, and the recalibrated probabilities have calibration intercept 0 and slope 1 on new patients."""
    from osteomet.evaluation.calibration import calibration

    prob, label = _miscalibrated(20_000, seed=1, intercept=-0.7, slope=0.6)
    fitted = LogisticRecalibration.fit(prob, label)
    se = _glm(prob, label).bse
    assert abs(fitted.intercept - -0.7) < 3 * se[0] and abs(fitted.slope - 0.6) < 3 * se[1]
    assert fitted.n == 20_000 and fitted.events == int(label.sum()) and fitted.keeps_ranking
    new_prob, new_label = _miscalibrated(20_000, seed=2, intercept=-0.7, slope=0.6)
    before, after = calibration(new_label, new_prob), calibration(new_label, fitted.apply(new_prob))
    assert abs(before.slope - 1) > 0.3 and abs(after.slope - 1) < 3 * (after.slope_high - after.slope) / 1.96
    assert abs(after.intercept) < 3 * (after.intercept_high - after.intercept) / 1.96
    assert np.all(np.diff(fitted.apply(np.sort(new_prob))) >= 0)  # ranking kept: AUC and conformal sets unchanged


@pytest.mark.parametrize("seed, intercept, slope, n", [(3, 0.0, 1.0, 60), (4, 1.2, 0.3, 200), (5, -2.0, 2.5, 1000)])
def test_equals_the_statsmodels_glm_fit(seed: int, intercept: float, slope: float, n: int):
    """R's glm(y ~ qlogis(p), binomial) as statsmodels fits it: the same maximum-likelihood estimates."""
    prob, label = _miscalibrated(n, seed, intercept, slope)
    fitted = LogisticRecalibration.fit(prob, label)
    reference = _glm(prob, label)
    assert fitted.intercept == pytest.approx(reference.params[0], rel=1e-7, abs=1e-9)
    assert fitted.slope == pytest.approx(reference.params[1], rel=1e-7, abs=1e-9)
    np.testing.assert_allclose(fitted.apply(prob), reference.fittedvalues, rtol=1e-7, atol=1e-12)


def test_refuses_calibration_patients_without_a_finite_fit():
    rng = np.random.default_rng(0)
    prob = rng.uniform(0.05, 0.95, 40)
    with pytest.raises(RecalibrationError, match="separate the classes perfectly"):
        LogisticRecalibration.fit(prob, (prob > 0.5).astype(int), source="model 'deep'")
    with pytest.raises(RecalibrationError, match=r"model 'deep': 3 without and 37 with BM; .* at least 5 of each"):
        LogisticRecalibration.fit(prob, np.r_[np.zeros(3), np.ones(37)], source="model 'deep'")
    with pytest.raises(RecalibrationError, match="same probability"):
        LogisticRecalibration.fit(np.full(40, 0.3), np.arange(40) % 2)
    reversed_prob, reversed_label = _miscalibrated(300, seed=7, intercept=0.0, slope=-0.8)
    with pytest.raises(RecalibrationError, match=r"fitted slope is -0\.\d+: .* reverse the model's ranking"):
        LogisticRecalibration.fit(reversed_prob, reversed_label)
    with pytest.raises(InputError, match="finite number in"):
        LogisticRecalibration.fit(np.r_[prob[:-1], 1.5], np.arange(40) % 2)


def test_saved_recalibration_round_trips_and_a_damaged_file_is_refused(tmp_path: Path):
    prob, label = _miscalibrated(500, seed=6, intercept=0.4, slope=0.8)
    fitted = LogisticRecalibration.fit(prob, label)
    path = fitted.save(tmp_path / "recalibration.json", model="fusion")
    loaded = LogisticRecalibration.load(path)
    assert loaded == fitted
    np.testing.assert_array_equal(loaded.apply(prob), fitted.apply(prob))
    path.write_text(path.read_text(encoding="utf-8").replace('"slope"', '"slop"'))
    with pytest.raises(InputError, match=r"recalibration\.json: damaged or edited recalibration \(no entry 'slope'\)"):
        LogisticRecalibration.load(path)
