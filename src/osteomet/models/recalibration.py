"""Logistic recalibration of a model's probabilities: ``logit p' = a + b logit p`` (Cox 1958; Platt 2000).

Why: an XGBoost or a network tuned on a small training cohort is often over- or under-confident
(a calibration slope below or above 1, a shifted intercept; Van Calster et al. 2019, "Calibration:
the Achilles heel of predictive analytics"). Refitting the intercept ``a`` and slope ``b`` on
held-out study patients (validation and out-of-fold training; never test or external, so the
evaluation of the recalibrated model stays honest) is the simplest remedy that keeps the
model's ranking (for ``b > 0``), so its AUC, its Youden threshold's patients and its conformal
prediction sets (:mod:`osteomet.models.conformal`: ranks within each class) are unchanged.

The fit is the unpenalised maximum-likelihood logistic regression of the label on ``logit p``
(R: ``glm(y ~ qlogis(p), binomial)``), by Newton-Raphson with step halving; the tests compare it
with statsmodels' GLM. Probabilities are moved ``1e-12`` inside (0, 1) before the logit, as the
evaluation's calibration statistics do. Calibration patients that the score separates perfectly
(or that hold one class, or one score) have no finite maximum-likelihood fit, and a slope at or
below 0 would reverse the model's ranking (its held-out patients rank no better than chance):
both are refused, naming why, and the model's probabilities are then used as they are.

Saved as JSON (intercept, slope, counts): never pickled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from osteomet.errors import InputError
from osteomet.models.conformal import REMEDY
from osteomet.utils.files import read_json_record, write_json_atomic

FORMAT = "osteomet.recalibration/1"
EPS = 1e-12
#: Fewest calibration patients of each class a recalibration is fitted on.
MIN_PER_CLASS = 5
MAX_ITERATIONS = 100


class RecalibrationError(InputError):
    """Calibration patients on which no finite logistic recalibration exists (too few, one class, separated)."""


def logit(probs: Any) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def _expit(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def _log_likelihood(beta: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    eta = beta[0] + beta[1] * x
    return float(np.sum(y * eta - np.logaddexp(0.0, eta)))


def _newton(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int]:
    """Maximum-likelihood (intercept, slope) of ``y ~ x`` and the Newton steps taken; refuses a fit that diverges."""
    design = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    current = _log_likelihood(beta, x, y)
    for iteration in range(1, MAX_ITERATIONS + 1):
        mu = _expit(design @ beta)
        gradient = design.T @ (y - mu)
        hessian = design.T @ (design * (mu * (1 - mu))[:, None])
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            raise RecalibrationError("the logistic fit is singular (the calibration patients hold one score)") from None
        scale = 1.0
        while scale > 1e-10:
            candidate = beta + scale * step
            value = _log_likelihood(candidate, x, y)
            if value >= current - 1e-12:
                break
            scale /= 2
        beta, current = candidate, value
        if np.max(np.abs(scale * step)) < 1e-10 * (1 + np.max(np.abs(beta))):
            return beta, iteration
    raise RecalibrationError(f"the logistic fit did not converge in {MAX_ITERATIONS} Newton steps")


@dataclass(frozen=True)
class LogisticRecalibration:
    """``p' = expit(intercept + slope * logit p)``, fitted on ``n`` held-out patients (``events`` with BM)."""

    intercept: float
    slope: float
    n: int
    events: int
    iterations: int = 0

    @classmethod
    def fit(cls, probs: Any, labels: Any, *, source: str = "calibration patients",
            min_per_class: int = MIN_PER_CLASS) -> "LogisticRecalibration":
        """Maximum likelihood on held-out patients; refuses what has no finite fit, naming ``source`` and why."""
        p = np.asarray(probs, dtype=float).reshape(-1)
        y = np.asarray(labels, dtype=float).reshape(-1)
        if p.size != y.size:
            raise InputError(f"{source}: {p.size} probabilities but {y.size} labels")
        if (~np.isfinite(p) | (p < 0) | (p > 1)).any():
            raise InputError(f"{source}: every probability must be a finite number in [0, 1]")
        if not np.isin(y, (0.0, 1.0)).all():
            raise InputError(f"{source}: every label must be 0 (no BM) or 1 (BM)")
        counts = (int((y == 0).sum()), int((y == 1).sum()))
        if min(counts) < min_per_class:
            raise RecalibrationError(f"{source}: {counts[0]} without and {counts[1]} with BM; a logistic "
                                     f"recalibration needs at least {min_per_class} of each")
        x = logit(p)
        if np.ptp(x) == 0:
            raise RecalibrationError(f"{source}: every patient has the same probability, so no slope can be fitted")
        if x[y == 0].max() <= x[y == 1].min() or x[y == 1].max() <= x[y == 0].min():  # (quasi-)complete separation
            raise RecalibrationError(f"{source}: the probabilities separate the classes perfectly, so the "
                                     f"maximum-likelihood slope is infinite (no finite recalibration exists)")
        try:
            beta, iterations = _newton(x, y)
        except RecalibrationError as exc:
            raise RecalibrationError(f"{source}: {exc}") from None
        if beta[1] <= 0:
            raise RecalibrationError(f"{source}: the fitted slope is {beta[1]:.3g}: on these patients a higher "
                                     f"probability goes with less bone metastasis, so the recalibration would reverse "
                                     f"the model's ranking; not fitted (the model ranks no better than chance here)")
        return cls(float(beta[0]), float(beta[1]), int(p.size), counts[1], iterations)

    def apply(self, probs: Any) -> np.ndarray:
        """The recalibrated probabilities (same shape as ``probs``)."""
        return _expit(self.intercept + self.slope * logit(probs))

    @property
    def keeps_ranking(self) -> bool:
        """A positive slope keeps the order of the patients (AUC and conformal sets unchanged)."""
        return self.slope > 0

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "method": "logit p' = intercept + slope * logit p (maximum likelihood)",
                **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "recalibration record") -> "LogisticRecalibration":
        try:
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r} is not {FORMAT!r}")
            values = {k: float(data[k]) for k in ("intercept", "slope")}
            if not all(np.isfinite(v) for v in values.values()):
                raise ValueError("intercept and slope must be finite numbers")
            return cls(values["intercept"], values["slope"], int(data["n"]), int(data["events"]),
                       int(data.get("iterations", 0)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            detail = f"no entry {exc}" if isinstance(exc, KeyError) else str(exc)
            raise InputError(f"{source}: damaged or edited recalibration ({detail}); {REMEDY}") from None

    def save(self, path: str | Path, **extra: Any) -> Path:
        return write_json_atomic(path, {**extra, **self.to_dict()})

    @classmethod
    def load(cls, path: str | Path) -> "LogisticRecalibration":
        return cls.from_dict(read_json_record(path, "recalibration", remedy=REMEDY), str(path))


__all__ = ["LogisticRecalibration", "RecalibrationError", "logit"]
