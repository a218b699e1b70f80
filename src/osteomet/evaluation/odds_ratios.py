"""Logistic odds ratios of the characteristics table, with aliased columns reported as R's ``glm`` does.

Odds ratios come from statsmodels ``Logit`` (maximum likelihood, Wald CIs and p-values):
univariable per variable on the patients that have it, and multivariable with all variables on
complete cases. Continuous variables give an OR per unit; categorical ones one OR per level
against the first (reference) level, which is marked ``ref``. A model that cannot be fitted
(perfect separation, non-convergence) gives NaN with a warning instead of a misleading number.

Aliased columns are handled as R's ``glm`` does. Study variables can be exactly collinear (ISUP
4-5 is Gleason >= 8, so the ISUP and Gleason groupings carry the same information); a fit of
the full design then has a singular information matrix and reports arbitrary ORs with p = 1.
Before fitting, a column in the span of the intercept and the columns before it (the pivoted-QR
rule of R's ``qr``, relative tolerance 1e-7: its residual after projecting on those columns is
below 1e-7 of its norm) is *aliased*: its OR, CI and p are NA and ``or_note`` names the columns
it duplicates (``"multivariable: aliased with gleason_group=>=8 - isup_group=4"``, the linear
combination R's ``alias()`` prints); the model is fitted on the remaining columns, which is
exactly R's fit (its NA coefficients are dropped columns).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

OR_COLUMNS = ("or", "ci_low", "ci_high", "p")
ALIAS_TOL = 1e-7  # R's qr() default; exact collinearity leaves residuals near 1e-15


def _design(frame: pd.DataFrame, continuous: Sequence[str], categorical: Sequence[str]) -> tuple[pd.DataFrame, dict]:
    """Numeric design matrix (no intercept) and a map column -> (variable, level)."""
    parts, names = [], {}
    for var in continuous:
        parts.append(frame[[var]].astype(float))
        names[var] = (var, "")
    for var in categorical:
        levels = category_levels(frame[var])
        col = pd.Categorical(frame[var], categories=levels)
        dummies = pd.get_dummies(col, prefix=var, prefix_sep="=", dtype=float).iloc[:, 1:]
        dummies.index = frame.index
        dummies[frame[var].isna().to_numpy()] = np.nan
        for level, name in zip(levels[1:], dummies.columns):
            names[name] = (var, str(level))
        parts.append(dummies)
    return (pd.concat(parts, axis=1) if parts else pd.DataFrame(index=frame.index)), names


def category_levels(series: pd.Series) -> list:
    """Levels in their declared order for a pandas Categorical (first = reference), else sorted."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        present = set(series.dropna().tolist())
        return [c for c in series.cat.categories if c in present]
    values = series.dropna().unique().tolist()
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def _term(coef: float, name: str, first: bool) -> str:
    sign = "-" if coef < 0 else ("" if first else "+")
    size = abs(coef)
    text = name if abs(size - 1.0) < 1e-9 else f"{size:.6g}*{name}"
    return f"{sign} {text}".strip() if not first else f"{sign}{text}"


def aliased_columns(x: pd.DataFrame, tol: float = ALIAS_TOL) -> dict[str, str]:
    """Columns of ``x`` (an intercept is added first) in the span of the columns before them.

    Returns ``{column: note}``, the note naming the linear combination of earlier, kept columns
    the column equals (``"aliased with gleason_group=>=8 - isup_group=4"``), as R's ``glm``
    leaves such a column out and reports NA for it.
    """
    data = x.to_numpy(dtype=float)
    columns = [np.ones(data.shape[0]), *data.T]
    names = ["intercept", *map(str, x.columns)]
    kept: list[int] = []
    basis = np.zeros((data.shape[0], 0))
    notes: dict[str, str] = {}
    for j, column in enumerate(columns):
        norm = float(np.linalg.norm(column))
        residual = column - basis @ (basis.T @ column)
        residual = residual - basis @ (basis.T @ residual)  # second pass: Gram-Schmidt loses orthogonality once
        size = float(np.linalg.norm(residual))
        if size > tol * norm and norm > 0.0:
            kept.append(j)
            basis = np.column_stack([basis, residual / size])
            continue
        if j == 0:
            continue  # no rows: nothing to fit anyway
        if norm == 0.0:
            notes[names[j]] = "aliased: zero for every patient in the model (no patient at this level)"
            continue
        coef = np.linalg.lstsq(np.column_stack([columns[k] for k in kept]), column, rcond=None)[0]
        terms = [(c, names[k]) for c, k in zip(coef, kept) if abs(c) > 1e-6]
        text = " ".join(_term(c, n, i == 0) for i, (c, n) in enumerate(terms))
        notes[names[j]] = f"aliased with {text}"
    return notes


def _logit(y: np.ndarray, x: pd.DataFrame, level: float) -> pd.DataFrame:
    """OR, CI, p and a note per column of ``x``; aliased columns NA with a note, NaN on failure."""
    empty = pd.DataFrame(np.nan, index=x.columns, columns=list(OR_COLUMNS))
    empty["note"] = ""
    if x.shape[1] == 0 or y.all() or not y.any():
        return empty
    aliased = aliased_columns(x)
    for column, note in aliased.items():
        empty.loc[column, "note"] = note
    keep = [c for c in x.columns if c not in aliased]
    if aliased and keep:
        columns = ", ".join(f"{c} ({aliased[c]})" for c in aliased)
        warnings.warn(f"logistic regression on {list(x.columns)}: {columns}; not estimable, reported as NA "
                      "(as R's glm), the other columns fitted without them", RuntimeWarning, stacklevel=3)
    fitted = _fit_logit(y, x[keep], level) if keep else None
    if fitted is not None:
        empty.loc[keep, list(OR_COLUMNS)] = fitted.to_numpy()
    return empty


def _fit_logit(y: np.ndarray, x: pd.DataFrame, level: float) -> pd.DataFrame | None:
    """statsmodels Logit on a full-rank design: OR, CI and p per column (None on failure)."""
    import statsmodels.api as sm

    if x.shape[0] <= x.shape[1] + 1:
        return None
    from statsmodels.tools import sm_exceptions as sme

    design = sm.add_constant(x.to_numpy(dtype=float), has_constant="add")
    trouble = (sme.ConvergenceWarning, sme.HessianInversionWarning, sme.PerfectSeparationWarning)
    try:
        with warnings.catch_warnings():
            for category in trouble:  # separation / non-convergence: report NaN, not a wild OR
                warnings.simplefilter("error", category)
            fit = sm.Logit(y.astype(float), design).fit(disp=0, maxiter=200)
        if not np.all(np.isfinite(np.asarray(fit.bse))):
            raise np.linalg.LinAlgError("singular information matrix")
    except (*trouble, sme.PerfectSeparationError, np.linalg.LinAlgError) as exc:
        warnings.warn(f"logistic regression on {list(x.columns)} not fitted: {exc}", RuntimeWarning, stacklevel=4)
        return None
    ci = np.asarray(fit.conf_int(alpha=1.0 - level))[1:]
    params, pvalues = np.asarray(fit.params)[1:], np.asarray(fit.pvalues)[1:]
    return pd.DataFrame(
        {"or": np.exp(params), "ci_low": np.exp(ci[:, 0]), "ci_high": np.exp(ci[:, 1]), "p": pvalues},
        index=x.columns,
    )


def add_odds_ratios(
    out: pd.DataFrame,
    frame: pd.DataFrame,
    y: np.ndarray,
    continuous: Sequence[str],
    categorical: Sequence[str],
    level: float,
) -> pd.DataFrame:
    """``out`` (the characteristics table) with univariable and multivariable OR, CI and p per row, ``or_ref``
    and ``or_note``."""
    design, names = _design(frame, continuous, categorical)
    uni_parts = []
    for var in [*continuous, *categorical]:
        cols = [c for c, (v, _) in names.items() if v == var]
        sub = design[cols]
        ok = sub.notna().all(axis=1).to_numpy()
        uni_parts.append(_logit(y[ok], sub[ok], level))
    uni = pd.concat(uni_parts) if uni_parts else pd.DataFrame(columns=[*OR_COLUMNS, "note"])
    ok = design.notna().all(axis=1).to_numpy()
    multi = _logit(y[ok], design[ok], level)
    key = {names[c]: c for c in design.columns}
    reference = {var: str(category_levels(frame[var])[0]) for var in categorical if frame[var].notna().any()}
    ref = [lev != "" and reference.get(var) == lev for var, lev in zip(out["variable"], out["level"])]
    notes: list[list[str]] = [[] for _ in range(len(out))]
    for prefix, res in (("uni", uni), ("multi", multi)):
        cols = [f"or_{prefix}", f"or_{prefix}_low", f"or_{prefix}_high", f"p_{prefix}"]
        values = []
        for var, lev, is_ref in zip(out["variable"], out["level"], ref):
            name = key.get((var, lev))
            if name is not None and name in res.index:
                values.append(res.loc[name, list(OR_COLUMNS)].to_numpy(dtype=float))
                if res.loc[name, "note"]:
                    notes[len(values) - 1].append(f"{prefix}variable: {res.loc[name, 'note']}")
            elif is_ref and np.isfinite(res.loc[[c for c, (v, _) in names.items() if v == var], "or"]).any():
                values.append(np.array([1.0, np.nan, np.nan, np.nan]))  # reference level: OR 1 by definition
            else:
                values.append(np.full(4, np.nan))
        out[cols] = np.vstack(values)
    out["or_ref"] = np.where(ref, "ref", "")
    out["or_note"] = ["; ".join(n) for n in notes]
    return out
