"""Calibration of predicted probabilities, as the calibration hierarchy reports it.

Van Calster et al., "A calibration hierarchy for risk models was defined: from utopia to empirical
data" (J Clin Epidemiol 2016) and "Calibration: the Achilles heel of predictive analytics" (BMC
Med 2019) ask for, per validation cohort:

* **calibration-in-the-large** (calibration intercept): the intercept of a logistic regression of
  the outcome with ``logit(p)`` as offset (R: ``glm(y ~ offset(qlogis(p)), binomial)``); 0 is ideal,
  negative means the probabilities are too high on average;
* **calibration slope**: the coefficient of ``logit(p)`` in ``glm(y ~ qlogis(p), binomial)``; 1 is
  ideal, below 1 means predictions too extreme (overfitting);
* both with 95% **Wald** intervals: CalibrationCurves' ``val.prob.ci.2`` (the package of the
  hierarchy's authors) fits them with ``rms::lrm.fit`` and calls ``confint`` on the fit, which
  for an ``lrm`` object is ``confint.default``: estimate +- z * SE (not profile likelihood);
* the **flexible calibration curve**: ``loess(y ~ p, degree = 2)`` (span 0.75, R's defaults) with
  a pointwise band ``fit +- z * se.fit`` from ``predict(..., se = TRUE)``, exactly what
  ``val.prob.ci.2(smooth = "loess")`` draws; :class:`Loess` below reproduces R's ``loess``
  (k-d tree, vertex fits, cubic Hermite interpolation, approximate statistics) so the curve and
  its band are R's to rounding;
* **Emax, E90, Eavg** (Eavg is the integrated calibration index, Austin & Steyerberg 2019) as
  ``rms::val.prob`` computes them: absolute differences between ``p`` and ``lowess(p, y,
  iter = 0)`` at the observed ``p`` (:func:`r_lowess`, R's clowess);
* the **Brier score**, and the distribution of the predicted risks by outcome (the histogram
  under the curve).

Probabilities of exactly 0 or 1 are moved by 1e-12 inside (0, 1) before the logit.
:func:`calibration_curve` (observed rate per quantile bin) stays for tables of grouped calibration.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from osteomet.evaluation._validate import labels_and_scores
from osteomet.evaluation.errors import EvaluationInputError

EPS = 1e-12
NAN = float("nan")


@dataclass(frozen=True)
class Calibration:
    """Brier score, calibration intercept and slope with Wald CIs at ``level``, and rms' Emax/E90/Eavg."""

    brier: float
    intercept: float
    slope: float
    n: int
    intercept_low: float = NAN
    intercept_high: float = NAN
    slope_low: float = NAN
    slope_high: float = NAN
    emax: float = NAN
    e90: float = NAN
    eavg: float = NAN
    events: int = 0
    level: float = 0.95


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


def _z(level: float) -> float:
    from scipy.stats import norm

    if not 0 < level < 1:
        raise EvaluationInputError(f"confidence level must lie strictly between 0 and 1, got {level}")
    return float(norm.ppf((1 + level) / 2))


def _probabilities(y: Any, probs: Any, both_classes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    labels, p = labels_and_scores(y, probs, scores_name="probabilities", both_classes=both_classes)
    if (p < 0).any() or (p > 1).any():
        raise EvaluationInputError("calibration needs probabilities in [0, 1]")
    return labels, p


def calibration(y: Any, probs: Any, level: float = 0.95) -> Calibration:
    """Brier score, calibration intercept (logit offset) and slope with Wald CIs, and Emax/E90/Eavg.

    The intervals are ``confint.default`` of R's glm (what CalibrationCurves::val.prob.ci.2 reports);
    Emax, E90 and Eavg are rms::val.prob's (from ``lowess(p, y, iter = 0)``).
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    labels, p = _probabilities(y, probs)
    z = _z(level)
    outcome = labels.astype(float)
    lp = _logit(p)
    with warnings.catch_warnings():  # a perfectly separating model (small cohorts) gets an extreme slope, as in R
        warnings.simplefilter("ignore", PerfectSeparationWarning)
        warnings.filterwarnings("ignore", "overflow encountered in exp", RuntimeWarning)  # same cases, IRLS steps
        # and their residual scale (0 residual degrees of freedom): NaN standard errors, the CIs say n/a
        warnings.filterwarnings("ignore", "divide by zero encountered in scalar divide", RuntimeWarning)
        warnings.filterwarnings("ignore", "invalid value encountered in scalar divide", RuntimeWarning)
        offset_fit = sm.GLM(outcome, np.ones_like(lp), family=sm.families.Binomial(), offset=lp).fit(tol=1e-14)
        intercept, intercept_se = float(offset_fit.params[0]), _wald_se(offset_fit.mu, np.ones((lp.size, 1)))[0]
        if np.ptp(lp) == 0:  # one predicted value for everyone: the slope is aliased (NA in R's glm)
            slope, slope_se = NAN, NAN
        else:
            design = sm.add_constant(lp, has_constant="add")
            slope_fit = sm.GLM(outcome, design, family=sm.families.Binomial()).fit(tol=1e-14)
            slope, slope_se = float(slope_fit.params[1]), _wald_se(slope_fit.mu, design)[1]
    emax, e90, eavg = _lowess_errors(outcome, p)
    return Calibration(brier=float(np.mean((p - outcome) ** 2)), intercept=intercept, slope=slope, n=int(p.size),
                       intercept_low=intercept - z * intercept_se, intercept_high=intercept + z * intercept_se,
                       slope_low=slope - z * slope_se, slope_high=slope + z * slope_se,
                       emax=emax, e90=e90, eavg=eavg, events=int(labels.sum()), level=level)


def _wald_se(mu: np.ndarray, design: np.ndarray) -> np.ndarray:
    """Standard errors from the Fisher information at the estimate, ``(X' diag(mu(1 - mu)) X)^-1``.

    Taken at the converged estimate (as rms::lrm.fit, which val.prob.ci.2 uses), not from the last
    IRLS step's weights, which lag one iteration behind and move the SE by up to 1e-4.
    """
    information = design.T @ (design * (mu * (1 - mu))[:, None])
    try:
        return np.sqrt(np.diag(np.linalg.inv(information)))
    except np.linalg.LinAlgError:  # separation: the information vanishes
        return np.full(design.shape[1], np.inf)


def r_lowess(x: Any, y: Any, f: float = 2 / 3, delta: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``lowess(x, y, f, iter = 0, delta)`` of R: sorted x and the fitted values (clowess in R's lowess.c).

    Ported rather than taken from statsmodels, whose lowess differs from R's by up to 4e-6 near the
    ends when ``delta`` skips points.
    """
    order = np.argsort(np.asarray(x, dtype=float), kind="stable")
    x, y = np.asarray(x, dtype=float)[order], np.asarray(y, dtype=float)[order]
    n = x.size
    if n < 2:
        return x, y.copy()
    if delta is None:
        delta = 0.01 * float(x[-1] - x[0])
    ns = max(2, min(n, int(f * n + 1e-7)))
    span_x = x[-1] - x[0]
    ys = np.zeros(n)

    def lowest(i: int, nleft: int, nright: int) -> float | None:
        xs = x[i]
        h = max(xs - x[nleft], x[nright] - xs)
        h9, h1 = 0.999 * h, 0.001 * h
        r = np.abs(x[nleft:] - xs)
        beyond = np.flatnonzero((r > h9) & (x[nleft:] > xs))  # ties on the right are picked up
        stop = nleft + (beyond[0] if beyond.size else n - nleft)
        r = r[: stop - nleft]
        with np.errstate(invalid="ignore", divide="ignore"):  # h = 0 (all tied): every weight is 1
            w = np.where(r <= h9, np.where(r <= h1, 1.0, (1 - (r / h) ** 3) ** 3), 0.0)
        total = w.sum()
        if total <= 0:
            return None
        w = w / total
        xw = x[nleft:stop]
        if h > 0:
            centre = float(np.dot(w, xw))
            c = float(np.dot(w, (xw - centre) ** 2))
            if math.sqrt(c) > 0.001 * span_x:
                w = w * ((xs - centre) / c * (xw - centre) + 1.0)
        return float(np.dot(w, y[nleft:stop]))

    nleft, nright, last, i = 0, ns - 1, -1, 0  # 0-based positions
    while True:
        if nright < n - 1 and x[i] - x[nleft] > x[nright + 1] - x[i]:
            nleft, nright = nleft + 1, nright + 1
            continue
        fitted = lowest(i, nleft, nright)
        ys[i] = y[i] if fitted is None else fitted
        if last < i - 1:  # skipped points: interpolate
            alpha = (x[last + 1:i] - x[last]) / (x[i] - x[last])
            ys[last + 1:i] = alpha * ys[i] + (1 - alpha) * ys[last]
        last = i
        cut = x[last] + delta
        i = last + 1
        while i < n:
            if x[i] > cut:
                break
            if x[i] == x[last]:
                ys[i] = ys[last]
                last = i
            i += 1
        i = max(last + 1, i - 1)
        if last >= n - 1:
            break
    return x, ys


def _lowess_at(outcome: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``approx(lowess(p, y, iter = 0), xout = p, ties = mean)$y`` as rms::val.prob computes it."""
    xs, ys = r_lowess(p, outcome)
    distinct, start = np.unique(xs, return_index=True)
    means = np.add.reduceat(ys, start) / np.diff(np.append(start, xs.size))
    return np.interp(p, distinct, means)


def _lowess_errors(outcome: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    """rms::val.prob's Emax, E90 and Eavg: max, 90th percentile (type 7) and mean of ``|p - lowess|``."""
    error = np.abs(p - _lowess_at(outcome, p))
    return float(error.max()), float(np.quantile(error, 0.9)), float(error.mean())


def calibration_curve(y: Any, probs: Any, bins: int = 10) -> pd.DataFrame:
    """Observed rate and mean prediction per quantile bin: ``bin, n, mean_predicted, observed``."""
    labels, p = labels_and_scores(y, probs, scores_name="probabilities", both_classes=False)
    order = np.argsort(p, kind="stable")
    groups = np.array_split(order, min(bins, p.size))
    return pd.DataFrame([{"bin": i, "n": int(g.size), "mean_predicted": float(p[g].mean()),
                          "observed": float(labels[g].mean())} for i, g in enumerate(groups) if g.size])


# --- flexible calibration curve -----------------------------------------------------------------


@dataclass(frozen=True)
class FlexibleCalibration:
    """Loess calibration curve with its pointwise band, and the predicted risks by outcome.

    ``curve``: ``predicted, observed, se, ci_low, ci_high`` (``observed`` is the loess fit; the
    band ``observed +- z * se`` is cut to [0, 1] as val.prob.ci.2 does); ``histogram``:
    ``bin_low, bin_high, events, non_events`` (counts of patients by predicted risk).
    """

    curve: pd.DataFrame
    histogram: pd.DataFrame
    n: int
    events: int
    span: float
    degree: int
    level: float
    residual_scale: float


def flexible_calibration(y: Any, probs: Any, *, points: int | Any = 101, span: float = 0.75, degree: int = 2,
                         level: float = 0.95, bins: int = 20) -> FlexibleCalibration:
    """The flexible (loess) calibration curve of CalibrationCurves::val.prob.ci.2 with its CI band.

    ``loess(y ~ p, degree = 2)`` (span 0.75) evaluated at ``points`` (a number of equally spaced
    predictions between the smallest and largest ``p``, or the predictions themselves), band
    ``fit +- qnorm((1 + level) / 2) * se.fit``; plus ``bins`` equal-width bins of [0, 1] counting
    events and non-events by predicted risk.
    """
    labels, p = _probabilities(y, probs)
    z = _z(level)
    fit = Loess(p, labels.astype(float), span=span, degree=degree)
    if np.ndim(points) == 0:
        at = np.linspace(p.min(), p.max(), int(points))
    else:
        at = np.asarray(points, dtype=float)
    observed, se = fit.predict(at, se=True)
    curve = pd.DataFrame({"predicted": at, "observed": observed, "se": se,
                          "ci_low": np.clip(observed - z * se, 0, 1), "ci_high": np.clip(observed + z * se, 0, 1)})
    edges = np.linspace(0.0, 1.0, bins + 1)
    events = np.histogram(p[labels], bins=edges)[0]
    non_events = np.histogram(p[~labels], bins=edges)[0]
    histogram = pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:], "events": events,
                              "non_events": non_events})
    return FlexibleCalibration(curve=curve, histogram=histogram, n=int(p.size), events=int(labels.sum()),
                               span=span, degree=degree, level=level, residual_scale=fit.s)


# --- R's loess for one predictor ----------------------------------------------------------------
#
# stats::loess (Cleveland, Grosse & Shyu's netlib dloess, R's loessf.f) with its defaults
# surface = "interpolate", statistics = "approximate", trace.hat = "exact", cell = 0.2,
# family = "gaussian": local regressions are fitted only at the vertices of a k-d tree built on
# x, and the curve between two vertices is the cubic Hermite interpolant of the vertex values and
# slopes. The residual scale uses the approximation of delta1 = tr((I - L)'(I - L)) from tr(L)
# (Cleveland & Grosse 1991, routine ehg141). Written for one predictor, with R's tie handling,
# so the numbers agree with R (tests: tests/evaluation/test_calibration.py).

# ehg141's coefficients: c[0:24] for delta1, c[24:48] for delta2; per degree 1/2, per d = 1..4
_EHG141 = np.array([
    .2971620, .3802660, .5886043, .4263766, .3346498, .6271053, .5241198, .3484836, .6687687, .6338795,
    .4076457, .7207693, .1611761, .3091323, .4401023, .2939609, .3580278, .5555741, .3972390, .4171278,
    .6293196, .4675173, .4699070, .6674802, .2848308, .2254512, .2914126, .5393624, .2517230, .3898970,
    .7603231, .2969113, .4740130, .9664956, .3629838, .5348889, .2075670, .2822574, .2369957, .3911566,
    .2981154, .3623232, .5508869, .3501989, .4371032, .7002667, .4291632, .4930370])
# ehg176: a fitted 1-D loess surface (vertex, value, slope), evaluated by Hermite interpolation
_EHG176 = np.array([
    (-5e-3, -9.0572e-2, 4.4844), (0.1204, 9.5807e-2, -0.7978), (0.2017, 2.6152e-2, -0.7286),
    (0.2815, -3.1926e-2, -0.4457), (0.3705, -5.3718e-2, -0.3495), (0.4536, -6.4170e-2, 3.2813e-2),
    (0.5591, -5.8387e-2, 0.1611), (0.7132, -2.0636e-2, 0.3350), (0.8751, 4.0172e-2, -4.1032e-2),
    (1.005, -1.0856e-2, -0.7736)])


def _hermite(h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cubic Hermite basis on [0, 1]: values at both ends (phi0, phi1) and slopes (psi0, psi1)."""
    return (1 - h) ** 2 * (1 + 2 * h), h ** 2 * (3 - 2 * h), h * (1 - h) ** 2, h ** 2 * (h - 1)


def _ehg176(z: float) -> float:
    v, value, slope = _EHG176.T
    k = min(max(int(np.searchsorted(v, z, side="left")) - 1, 0), v.size - 2)
    width = v[k + 1] - v[k]
    phi0, phi1, psi0, psi1 = _hermite(np.asarray((z - v[k]) / width))
    return float(phi0 * value[k] + phi1 * value[k + 1] + (psi0 * slope[k] + psi1 * slope[k + 1]) * width)


def _ehg141(trace: float, n: int, degree: int, tau: int) -> float:
    """Cleveland & Grosse's approximation of delta1 from tr(L) (loessf.f ehg141, one predictor)."""
    corx = math.sqrt(tau / n)
    z = (math.sqrt(tau / trace) - corx) / (1 - corx)
    z = min(1.0, max(0.0, z))
    c4 = math.exp(_ehg176(z))
    i = 3 * 4 * (degree - 1)  # d = 1
    c1, c2, c3 = _EHG141[i:i + 3]
    return n - trace * math.exp(c1 * z ** c2 * (1 - z) ** c3 * c4)


class Loess:
    """``loess(y ~ x, span, degree)`` of R for one predictor (gaussian, interpolated surface).

    ``fitted``, ``s`` (residual scale), ``one_delta`` and ``trace_hat`` as R's loess object;
    :meth:`predict` gives ``predict(fit, newdata, se = TRUE)``'s ``fit`` and ``se.fit``.
    """

    def __init__(self, x: Any, y: Any, span: float = 0.75, degree: int = 2, cell: float = 0.2) -> None:
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if x.ndim != 1 or x.shape != y.shape:
            raise EvaluationInputError("loess needs x and y of the same length")
        if degree not in (1, 2):
            raise EvaluationInputError(f"loess degree must be 1 or 2, got {degree}")
        if not span > 0:
            raise EvaluationInputError(f"loess span must be positive, got {span}")
        n = x.size
        self.x, self.y, self.span, self.degree, self.n = x, y, span, degree, n
        self.nf = min(n, math.floor(n * span))  # lowesd: nf = min(n, ifloor(n*f))
        self.k = degree + 1  # local polynomial coefficients
        if self.k > self.nf - 1:
            raise EvaluationInputError(
                f"too few patients for a loess curve: span {span} of {n} gives {self.nf} neighbours, "
                f"a degree-{degree} local fit needs at least {self.k + 1}")
        self._build_tree(cell)
        self._fit_vertices()
        self.fitted = self._operator(x) @ y
        self.trace_hat = float(self._hat_diagonal().sum())
        tau = self.k
        self.one_delta = _ehg141(self.trace_hat, n, degree, tau)
        # one_delta (the residual degrees of freedom) reaches 0 when the fit interpolates a handful of patients:
        # no residual scale, so no band (R's se.fit is NaN or Inf there too)
        self.s = (math.sqrt(float(np.sum((y - self.fitted) ** 2)) / self.one_delta) if self.one_delta > 0
                  else float("nan"))

    def _build_tree(self, cell: float) -> None:
        """ehg126/ehg124: bounding box, then cells split at the median until they hold <= fc points."""
        xs = np.sort(self.x)
        n = self.n
        lo, hi = float(xs[0]), float(xs[-1])
        margin = 0.005 * max(hi - lo, 1e-10 * max(abs(lo), abs(hi)) + 1e-30)
        fc = math.floor(n * (self.span * cell))
        nvmax = max(200, n)
        cells = [(lo - margin, hi + margin, 1, n)]  # (lower vertex, upper vertex, first, last point: 1-based)
        leaves: list[tuple[float, float, int, int]] = []
        nv, p = 2, 0
        while p < len(cells):
            v0, v1, first, last = cells[p]
            leaf = (last - first + 1) <= fc or (v1 - v0) <= 0.0
            if not leaf:
                leaf = nvmax < len(cells) + 2 or nvmax < nv + 1
            if not leaf:
                m = (first + last) // 2
                offset = 0  # all ties go with the upper son: search outwards for a gap between values
                while not (m + offset >= last or m + offset < first):
                    if xs[m + offset - 1] == xs[m + offset]:
                        offset = -offset
                        if offset >= 0:
                            offset += 1
                    else:
                        m += offset
                        break
                split = float(xs[m - 1])
                leaf = v0 == split or v1 == split
            if leaf:
                leaves.append(cells[p])
            else:
                cells.append((v0, split, first, m))
                cells.append((split, v1, m + 1, last))
                nv += 1
            p += 1
        leaves.sort()
        self.vertices = np.array([c[0] for c in leaves] + [leaves[-1][1]])
        # the points each leaf holds (sorted positions) for the trace, as ehg139 visits them
        self._leaf_of_point = np.empty(n, dtype=int)
        for i, (_, _, first, last) in enumerate(leaves):
            self._leaf_of_point[first - 1:last] = i
        self._sorted = xs

    def _local_fit(self, q: float) -> np.ndarray:
        """ehg127: the rows mapping y to the local polynomial's value and slope at ``q``."""
        x = self.x
        dist = (x - q) ** 2
        neighbours = np.argsort(dist, kind="stable")[: self.nf]
        rho = float(dist[neighbours[-1]]) * max(1.0, self.span)
        if rho <= 0:
            raise EvaluationInputError(
                f"loess: more than {self.nf} patients share the prediction {q:.4g}; no smooth curve can be fitted")
        w = np.sqrt(dist[neighbours] / rho)
        w = np.sqrt((1 - w ** 3) ** 3)
        if not np.abs(w).max() > 0:
            raise EvaluationInputError(f"loess: all neighbours of {q:.4g} lie on the neighbourhood boundary")
        d = x[neighbours] - q
        design = np.column_stack([w * d ** j for j in range(self.k)])
        norms = np.sqrt((design ** 2).sum(axis=0))
        norms[norms == 0] = 1.0
        u, sigma, vt = np.linalg.svd(design / norms, full_matrices=False)
        tol = sigma[0] * (100 * np.finfo(float).eps)
        if (sigma <= tol).any():
            self.singular.append(q)
        inverse = np.where(sigma > tol, 1 / np.where(sigma > tol, sigma, 1), 0.0)
        coef = (vt.T * inverse) @ u.T / norms[:, None]  # k x nf: coefficients per unit of w*y
        rows = np.zeros((2, self.n))
        rows[0, neighbours] = coef[0] * w
        if self.k > 1:
            rows[1, neighbours] = coef[1] * w
        return rows

    def _fit_vertices(self) -> None:
        self.singular: list[float] = []
        self._vertex_rows = np.stack([self._local_fit(float(v)) for v in self.vertices])  # nv x 2 x n
        if self.singular:  # R warns "pseudoinverse used at ..." too; its numbers there depend on LINPACK's rounding
            warnings.warn(f"loess: pseudoinverse used at {', '.join(f'{q:.4g}' for q in self.singular)} (too few "
                          "distinct predictions near there for a local quadratic); the curve there is not "
                          "well determined", RuntimeWarning, stacklevel=3)

    def _cells(self, at: np.ndarray) -> np.ndarray:
        """The leaf holding each point: ``z <= split`` goes to the lower son (ehg128)."""
        return np.clip(np.searchsorted(self.vertices, at, side="left") - 1, 0, self.vertices.size - 2)

    def _operator(self, at: np.ndarray) -> np.ndarray:
        """Rows of the smoother matrix at ``at``: fit(at) = operator @ y (ehg128/ehg191)."""
        leaf = self._cells(at)
        v0, v1 = self.vertices[leaf], self.vertices[leaf + 1]
        width = v1 - v0
        phi0, phi1, psi0, psi1 = _hermite((at - v0) / width)
        lower, upper = self._vertex_rows[leaf], self._vertex_rows[leaf + 1]
        return (phi0[:, None] * lower[:, 0] + phi1[:, None] * upper[:, 0]
                + (psi0[:, None] * lower[:, 1] + psi1[:, None] * upper[:, 1]) * width[:, None])

    def _hat_diagonal(self) -> np.ndarray:
        """diag(L) as ehg139 accumulates it: vertex by vertex, over the points of the leaves at that vertex."""
        xs = self._sorted
        order = np.argsort(self.x, kind="stable")
        holding = self._leaf_of_point  # leaf whose point range holds each sorted position
        at = self._cells(xs)  # leaf the interpolation uses (differs only for ties split across a cut)
        v0, v1 = self.vertices[at], self.vertices[at + 1]
        width = v1 - v0
        phi0, phi1, psi0, psi1 = _hermite((xs - v0) / width)
        rows = self._vertex_rows
        diag = np.zeros(self.n)
        for i in range(self.n):
            j = order[i]
            for vertex, phi, psi in ((at[i], phi0[i], psi0[i]), (at[i] + 1, phi1[i], psi1[i])):
                if vertex in (holding[i], holding[i] + 1):
                    diag[j] += phi * rows[vertex, 0, j] + psi * rows[vertex, 1, j] * width[i]
        return diag

    def predict(self, at: Any, se: bool = False) -> Any:
        """Fitted curve at ``at`` (NaN outside the range of x, as R); with ``se``, also R's ``se.fit``."""
        at = np.asarray(at, dtype=float)
        inside = (at >= self.x.min()) & (at <= self.x.max())
        fit = np.full(at.shape, np.nan)
        errors = np.full(at.shape, np.nan)
        if inside.any():
            rows = self._operator(at[inside])
            fit[inside] = rows @ self.y
            errors[inside] = self.s * np.sqrt((rows ** 2).sum(axis=1))
        return (fit, errors) if se else fit
