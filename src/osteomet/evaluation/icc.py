"""Intraclass correlation (Shrout & Fleiss 1979; McGraw & Wong 1996) with F-based 95% CIs.

Matches ``psych::ICC(x, lmer = FALSE)`` (psych 2.2.9) row for row: the two-way ANOVA mean
squares of a complete ``n_subjects x k_raters`` matrix give

* ``"1,1"``/``"1,k"`` (psych ICC1/ICC1k): one-way random, absolute agreement;
* ``"2,1"``/``"2,k"`` (ICC2/ICC2k): two-way random, absolute agreement; CI from the
  Satterthwaite-approximated F of McGraw & Wong (case 2A);
* ``"3,1"``/``"3,k"`` (ICC3/ICC3k): two-way mixed, consistency; exact F-based CI;

with ``F``, ``df1``, ``df2`` and the p-value of the test ICC = 0, and confidence bounds from F
quantiles at ``1 - alpha/2`` (two-sided, ``alpha = 1 - level``). psych's default ``lmer = TRUE``
estimates the variance components by REML, which equals the ANOVA estimate unless a component
would be negative; the ANOVA form is the one in the original papers and needs no lme4.

For radiomics reproducibility, :func:`feature_icc` computes one ICC per feature between two
mask sources (e.g. manual vs automatic) and :func:`summarize_by_class` gives min, median and
max per pyradiomics feature class.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import numpy as np
import pandas as pd
from scipy.stats import f as f_dist

from osteomet.evaluation.errors import EvaluationInputError

MODELS: tuple[str, ...] = ("1,1", "2,1", "3,1", "1,k", "2,k", "3,k")
PSYCH_NAMES: dict[str, str] = {
    "1,1": "ICC1",
    "2,1": "ICC2",
    "3,1": "ICC3",
    "1,k": "ICC1k",
    "2,k": "ICC2k",
    "3,k": "ICC3k",
}
FEATURE_CLASSES: tuple[str, ...] = (
    "shape2D",
    "shape",
    "firstorder",
    "glcm",
    "glrlm",
    "glszm",
    "gldm",
    "ngtdm",
)


class ICCResult(NamedTuple):
    """One ICC form: value, CI bounds, and the F test of ICC = 0."""

    icc: float
    ci_low: float
    ci_high: float
    f: float
    df1: float
    df2: float
    p: float


def _ratings(ratings: Any) -> np.ndarray:
    x = np.asarray(ratings, dtype=float)
    if x.ndim != 2:
        raise EvaluationInputError(f"ratings must be a 2-D array (subjects x raters), got shape {x.shape}")
    n, k = x.shape
    if n < 2 or k < 2:
        raise EvaluationInputError(f"ICC needs at least 2 subjects and 2 raters, got {n} x {k}")
    if np.isnan(x).any():
        raise EvaluationInputError(
            f"ratings contain {int(np.isnan(x).sum())} NaN value(s); drop incomplete subjects first"
        )
    return x


def _mean_squares(x: np.ndarray) -> tuple[float, float, float, float]:
    """MSB (subjects), MSJ (raters), MSE (residual) and MSW (within subjects)."""
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * float(((x.mean(axis=1) - grand) ** 2).sum())
    ss_cols = n * float(((x.mean(axis=0) - grand) ** 2).sum())
    ss_total = float(((x - grand) ** 2).sum())
    ss_err = max(ss_total - ss_rows - ss_cols, 0.0)
    msb = ss_rows / (n - 1)
    msj = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    msw = (ss_cols + ss_err) / (n * (k - 1))
    return msb, msj, mse, msw


def _div(a: float, b: float) -> float:
    if b == 0.0:
        return math.nan if a == 0.0 else math.copysign(math.inf, a)
    return a / b


def icc_table(ratings: Any, level: float = 0.95) -> pd.DataFrame:
    """All six ICC forms as psych prints them: ``model, type, icc, ci_low, ci_high, f, df1, df2, p``."""
    if not 0.0 < level < 1.0:
        raise EvaluationInputError(f"level must be in (0, 1), got {level}")
    x = _ratings(ratings)
    n, k = x.shape
    alpha = 1.0 - level
    msb, msj, mse, msw = _mean_squares(x)

    with np.errstate(divide="ignore", invalid="ignore"):
        icc1 = _div(msb - msw, msb + (k - 1) * msw)
        icc2 = _div(msb - mse, msb + (k - 1) * mse + k * (msj - mse) / n)
        icc3 = _div(msb - mse, msb + (k - 1) * mse)
        icc1k = _div(msb - msw, msb)
        icc2k = _div(msb - mse, msb + (msj - mse) / n)
        icc3k = _div(msb - mse, msb)

        f1, df1n, df1d = _div(msb, msw), n - 1.0, n * (k - 1.0)
        f3, df3n, df3d = _div(msb, mse), n - 1.0, (n - 1.0) * (k - 1.0)
        p1 = float(f_dist.sf(f1, df1n, df1d))
        p3 = float(f_dist.sf(f3, df3n, df3d))

        f1l = f1 / f_dist.ppf(1 - alpha / 2, df1n, df1d)
        f1u = f1 * f_dist.ppf(1 - alpha / 2, df1d, df1n)
        f3l = f3 / f_dist.ppf(1 - alpha / 2, df3n, df3d)
        f3u = f3 * f_dist.ppf(1 - alpha / 2, df3d, df3n)
        bounds1 = ((f1l - 1) / (f1l + k - 1), (f1u - 1) / (f1u + k - 1))
        bounds3 = ((f3l - 1) / (f3l + k - 1), (f3u - 1) / (f3u + k - 1))
        bounds1k = (1 - 1 / f1l, 1 - 1 / f1u)
        bounds3k = (1 - 1 / f3l, 1 - 1 / f3u)

        # ICC(2,1): McGraw & Wong's Satterthwaite degrees of freedom for the rater effect
        fj = _div(msj, mse)
        a = k * icc2 * fj + n * (1 + (k - 1) * icc2) - k * icc2
        vn = (k - 1) * (n - 1) * a**2
        vd = (n - 1) * k**2 * icc2**2 * fj**2 + (n * (1 + (k - 1) * icc2) - k * icc2) ** 2
        v = vn / vd
        fu = f_dist.ppf(1 - alpha / 2, n - 1, v)
        fl = f_dist.ppf(1 - alpha / 2, v, n - 1)
        mid = k * msj + (k * n - k - n) * mse
        low2 = n * (msb - fu * mse) / (fu * mid + n * msb)
        high2 = n * (fl * msb - mse) / (mid + n * fl * msb)
        bounds2 = (low2, high2)
        bounds2k = (low2 * k / (1 + low2 * (k - 1)), high2 * k / (1 + high2 * (k - 1)))

    rows = {
        "1,1": (icc1, *bounds1, f1, df1n, df1d, p1),
        "2,1": (icc2, *bounds2, f3, df3n, df3d, p3),
        "3,1": (icc3, *bounds3, f3, df3n, df3d, p3),
        "1,k": (icc1k, *bounds1k, f1, df1n, df1d, p1),
        "2,k": (icc2k, *bounds2k, f3, df3n, df3d, p3),
        "3,k": (icc3k, *bounds3k, f3, df3n, df3d, p3),
    }
    table = pd.DataFrame(
        [(m, PSYCH_NAMES[m], *map(float, rows[m])) for m in MODELS],
        columns=["model", "type", "icc", "ci_low", "ci_high", "f", "df1", "df2", "p"],
    )
    return table


def icc(ratings: Any, model: str = "2,1", level: float = 0.95) -> ICCResult:
    """One ICC form (``"1,1"``, ``"2,1"``, ``"3,1"``, ``"1,k"``, ``"2,k"``, ``"3,k"``) with its CI and F test."""
    key = model.replace(" ", "").replace("ICC(", "").replace(")", "").lower()
    if key not in MODELS:
        raise EvaluationInputError(f"unknown ICC model {model!r}; use one of {', '.join(MODELS)}")
    row = icc_table(ratings, level).set_index("model").loc[key]
    return ICCResult(*(float(row[c]) for c in ICCResult._fields))


def feature_class(name: str) -> str:
    """pyradiomics feature class of a column name (``t2_original_glcm_Contrast`` -> ``glcm``)."""
    for part in str(name).split("_"):
        if part in FEATURE_CLASSES:
            return part
    return "other"


def feature_icc(
    features_a: pd.DataFrame, features_b: pd.DataFrame, model: str = "2,1", level: float = 0.95
) -> pd.DataFrame:
    """ICC per feature between two mask sources, matching rows by index (patient) and columns by name.

    Patients missing from either table, or with NaN for a feature, are left out for that feature.
    Returns ``feature, feature_class, n, icc, ci_low, ci_high, f, df1, df2, p``; a feature that is
    constant over patients gets NaN (ICC undefined).
    """
    common = features_a.columns.intersection(features_b.columns)
    if common.empty:
        raise EvaluationInputError("the two feature tables share no feature column")
    patients = features_a.index.intersection(features_b.index)
    if patients.size < 2:
        raise EvaluationInputError(f"the two feature tables share {patients.size} patient(s); ICC needs >= 2")
    rows = []
    for col in common:
        pair = np.column_stack(
            [features_a.loc[patients, col].to_numpy(dtype=float), features_b.loc[patients, col].to_numpy(dtype=float)]
        )
        pair = pair[~np.isnan(pair).any(axis=1)]
        if pair.shape[0] < 2:
            result = ICCResult(*([math.nan] * 7))
        else:
            result = icc(pair, model, level)
        rows.append({"feature": col, "feature_class": feature_class(col), "n": int(pair.shape[0]), **result._asdict()})
    return pd.DataFrame(rows)


def summarize_by_class(per_feature: pd.DataFrame, value: str = "icc", *, class_column: str = "feature_class",
                       order: Sequence[str] | None = None) -> pd.DataFrame:
    """Min, median and max of ``value`` per feature class (plus ``all``), with feature counts.

    Classes come in ``order`` (those present), then any others alphabetically; the class
    column of the result is named like the input's ``class_column``.
    """
    if class_column not in per_feature.columns or value not in per_feature.columns:
        raise EvaluationInputError(f"per-feature table needs columns {class_column!r} and {value!r}")

    def summary(group: pd.Series) -> dict[str, float]:
        vals = group.dropna()
        return {
            "n_features": int(group.size),
            "n_defined": int(vals.size),
            "min": float(vals.min()) if vals.size else math.nan,
            "median": float(vals.median()) if vals.size else math.nan,
            "max": float(vals.max()) if vals.size else math.nan,
        }

    present = set(per_feature[class_column].dropna())
    ranked = [c for c in (order or ()) if c in present] + sorted(present - set(order or ()))
    rows = [{class_column: cls, **summary(per_feature.loc[per_feature[class_column] == cls, value])} for cls in ranked]
    rows.append({class_column: "all", **summary(per_feature[value])})
    return pd.DataFrame(rows, columns=[class_column, "n_features", "n_defined", "min", "median", "max"])
