"""The applicability domain of a study: is a new patient like the patients its models were trained on?

Why: a model answers for any input. Given a patient whose images were acquired, exported or
masked unlike anything in its training cohort (another vendor's intensity scale, a swapped
series, another b-value, a mask outside the gland), it still gives a confident number. The
domain says, next to every prediction, whether the inputs lie inside what the study saw, and
in words why not (applicability-domain practice of QSAR models: Jaworska, Nikolova-Jeliazkova
& Aldenberg 2005, ATLA 33:445; Sahigara et al. 2012, Molecules 17:4791).

Two kinds of checks, each fitted on the training patients only:

* **Ranges** of per-patient quantities (image geometry, raw intensities, mask QC numbers;
  named and described by a :class:`Quantity`): the training patients' range (minimum to
  maximum) widened on each side by ``margin`` times its width and by the quantity's own
  tolerance, on a log scale for positive quantities that scale multiplicatively (spacings,
  sizes, intensities, volumes). An integer count (mask components) may not exceed the
  training maximum; a category (orientation) must be one the training patients had.
* **Feature-space distance** of the model inputs (e.g. the radiomics model's selected features,
  the deep features): the Mahalanobis distance to the training patients after standardising
  each feature (training mean and SD; missing values at the training median), with the
  Ledoit-Wolf shrinkage covariance (Ledoit & Wolf 2004, J Multivar Anal 88:365), which stays
  invertible with more features than patients. Its threshold is the ``quantile`` (0.99) of
  the *cross-validated* training distances: each training patient's distance to a fit on the
  other folds, so the threshold is that of patients the fit never saw (an in-sample distance
  is smaller by construction, and a threshold taken from it would flag about everything new).

A patient is ``within`` when no check fails, ``outside`` otherwise; each failed check is a
reason naming the quantity, the patient's value and the study's range ("DWI 90th percentile in
the gland region 741, study range 120-410"). Saved as JSON (ranges, standardisation, location
and precision matrix, threshold), never pickled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from osteomet.errors import InputError
from osteomet.utils.files import read_json_record, write_json_atomic

FORMAT = "osteomet.applicability/1"
Scale = Literal["log", "linear", "count", "category"]
#: Values below this count as this on a log scale (a zero intensity percentile must not give -inf).
LOG_FLOOR = 1e-3
#: Fewest training patients a check is fitted on (fewer: the check is left out and the domain says so).
MIN_TRAINING = 5
#: The default share of the training range's width added on each side.
DEFAULT_MARGIN = 0.25
DEFAULT_QUANTILE = 0.99


class ApplicabilityError(InputError):
    """A domain file that cannot be read, or training data a domain cannot be fitted on."""


@dataclass(frozen=True)
class Quantity:
    """What one per-patient number is, for the range check and its reason in words.

    ``tolerance``: added beyond the widened training range, relative on the log scale (0.1 =
    10%), in the quantity's units otherwise. ``sides``: ``upper`` checks only the maximum.
    """

    label: str
    group: str = "image"
    scale: Scale = "log"
    sides: Literal["both", "upper"] = "both"
    tolerance: float = 0.0
    unit: str = ""


@dataclass
class RangeCheck:
    """A quantity's allowed range, in its own units (``low`` None: no lower limit)."""

    name: str
    quantity: Quantity
    low: float | None
    high: float | None
    n: int
    training_min: float
    training_max: float

    @classmethod
    def fit(cls, name: str, quantity: Quantity, values: Sequence[float], margin: float) -> "RangeCheck":
        x = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), float)
        x = x[np.isfinite(x)]
        if quantity.scale == "log":
            t = np.log(np.maximum(x, LOG_FLOOR))
            width = float(t.max() - t.min())
            pad = margin * width + math.log1p(quantity.tolerance)
            low, high = math.exp(t.min() - pad), math.exp(t.max() + pad)
        else:
            width = float(x.max() - x.min())
            pad = (0.0 if quantity.scale == "count" else margin * width) + quantity.tolerance
            low, high = float(x.min() - pad), float(x.max() + pad)
        return cls(name, quantity, None if quantity.sides == "upper" else low, high, int(x.size),
                   float(x.min()), float(x.max()))

    def outside(self, value: float) -> bool:
        return (self.low is not None and value < self.low) or (self.high is not None and value > self.high)

    def describe(self) -> str:
        unit = f" {self.quantity.unit}" if self.quantity.unit else ""
        if self.low is None:
            return f"study maximum {number(self.high)}{unit}"
        return f"study range {number(self.low)}–{number(self.high)}{unit}"


@dataclass
class CategoryCheck:
    """A categorical quantity (e.g. the orientation code): one of the values the training patients had."""

    name: str
    quantity: Quantity
    allowed: list[str]
    n: int

    def describe(self) -> str:
        return "study had " + ", ".join(self.allowed)


@dataclass
class FeatureDistance:
    """Ledoit-Wolf Mahalanobis distance of a feature group to the training patients, with its CV threshold."""

    name: str
    label: str
    columns: list[str]
    center: list[float]
    scale: list[float]
    medians: list[float]
    location: list[float]
    precision: list[list[float]]
    shrinkage: float
    threshold: float
    quantile: float
    n: int
    folds: int
    dropped: list[str] = field(default_factory=list)

    @classmethod
    def fit(cls, name: str, label: str, X: pd.DataFrame, *, quantile: float = DEFAULT_QUANTILE, folds: int = 5,
            seed: int = 0, threshold: float | None = None) -> "FeatureDistance":
        """Fit on the training rows ``X``; the threshold from ``folds``-fold CV distances unless given."""
        fitted = _fit_distance(X)
        if threshold is None:
            threshold = float(np.quantile(cross_validated_distances(X, folds=folds, seed=seed), quantile))
        return cls(name, label, *fitted, threshold=float(threshold), quantile=quantile, n=len(X),
                   folds=folds)

    def distances(self, X: pd.DataFrame) -> np.ndarray:
        """Mahalanobis distance of each row (NaN for a row with none of the columns)."""
        values = _numeric(X.reindex(columns=self.columns))
        empty = np.isnan(values).all(axis=1)
        values = np.where(np.isnan(values), np.asarray(self.medians), values)
        z = (values - np.asarray(self.center)) / np.asarray(self.scale) - np.asarray(self.location)
        d2 = np.einsum("ij,jk,ik->i", z, np.asarray(self.precision), z)
        d = np.sqrt(np.maximum(d2, 0.0))
        d[empty] = np.nan
        return d

    def describe(self) -> str:
        return (f"study threshold {number(self.threshold)} ({self.quantile * 100:g}th percentile of cross-validated "
                f"training distances)")


def _numeric(X: pd.DataFrame) -> np.ndarray:
    """The table as floats (anything not a number: NaN)."""
    try:
        return X.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        return X.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _fit_distance(X: pd.DataFrame) -> tuple[list[str], list[float], list[float], list[float], list[float],
                                            list[list[float]], float]:
    """Columns kept, standardisation, medians, and the Ledoit-Wolf location, precision and shrinkage."""
    from sklearn.covariance import LedoitWolf

    values = _numeric(X)
    with np.errstate(all="ignore"):
        medians = np.nanmedian(np.where(np.isnan(values).all(axis=0), 0.0, values), axis=0) \
            if values.size else np.zeros(values.shape[1])
    medians = np.where(np.isnan(values).all(axis=0), np.nan, medians)
    filled = np.where(np.isnan(values), medians, values)
    sd = filled.std(axis=0)
    keep = np.isfinite(sd) & (sd > 1e-12) & np.isfinite(medians)
    if not keep.any():
        raise ApplicabilityError("every feature is constant (or missing) on the training patients: no feature "
                                 "distance can be fitted")
    center = filled[:, keep].mean(axis=0)
    z = (filled[:, keep] - center) / sd[keep]
    lw = LedoitWolf().fit(z)
    return ([str(c) for c, k in zip(X.columns, keep) if k], center.tolist(), sd[keep].tolist(),
            medians[keep].tolist(), lw.location_.tolist(), lw.precision_.tolist(), float(lw.shrinkage_))


def _fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    """A fold number per row (shuffled, as even as possible)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(n) % max(2, min(folds, n))
    rng.shuffle(ids)
    return ids


def cross_validated_distances(X: pd.DataFrame, *, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Each row's distance to a fit (standardisation and covariance) on the other folds."""
    if len(X) < MIN_TRAINING:
        raise ApplicabilityError(f"{len(X)} training patients with features: a feature distance needs at least "
                                 f"{MIN_TRAINING}")
    ids = _fold_ids(len(X), folds, seed)
    out = np.full(len(X), np.nan)
    for k in np.unique(ids):
        held = ids == k
        fitted = FeatureDistance("cv", "cv", *_fit_distance(X[~held]), threshold=math.inf, quantile=1.0,
                                 n=int((~held).sum()), folds=0)
        out[held] = fitted.distances(X[held])
    return out


@dataclass
class Finding:
    """One check on one patient: its value, whether it is outside, and the sentence that says so."""

    name: str
    group: str
    value: Any
    outside: bool
    text: str


def number(value: Any) -> str:
    """A value the way a reason shows it: 741, 1.56, 0.437, 12.3."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, str):
        return value
    value = float(value)
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


@dataclass
class ApplicabilityDomain:
    """The study's domain: range and category checks on per-patient quantities, feature distances per group."""

    ranges: list[RangeCheck] = field(default_factory=list)
    categories: list[CategoryCheck] = field(default_factory=list)
    distances: list[FeatureDistance] = field(default_factory=list)
    margin: float = DEFAULT_MARGIN
    quantile: float = DEFAULT_QUANTILE
    n_train: int = 0
    #: checks that could not be fitted, and why (too few training values)
    skipped: dict[str, str] = field(default_factory=dict)
    #: the quantities' names in the order they were given (the order of the reasons)
    order: list[str] = field(default_factory=list)

    @classmethod
    def fit(cls, values: pd.DataFrame, quantities: Mapping[str, Quantity],
            features: Mapping[str, tuple[str, pd.DataFrame]] | None = None, *, margin: float = DEFAULT_MARGIN,
            quantile: float = DEFAULT_QUANTILE, folds: int = 5, seed: int = 0,
            thresholds: Mapping[str, float] | None = None) -> "ApplicabilityDomain":
        """Fit every check on the training patients.

        ``values``: one row per training patient, a column per quantity of ``quantities`` (a column
        absent or with fewer than :data:`MIN_TRAINING` values leaves its check out, recorded in
        ``skipped``). ``features``: per group name, its label in words and the training rows' model
        inputs. ``thresholds``: fixed distance thresholds per group (the cross-validation then is not
        run; what the per-fold refits of :func:`cross_validated_findings` use).
        """
        if not 0.5 < quantile < 1:
            raise ApplicabilityError(f"feature quantile {quantile!r} must lie between 0.5 and 1 (e.g. 0.99)")
        if margin < 0:
            raise ApplicabilityError(f"range margin {margin!r} must be 0 or more")
        domain = cls(margin=margin, quantile=quantile, n_train=len(values), order=list(quantities))
        for name, quantity in quantities.items():
            column = values[name] if name in values else pd.Series(dtype=object)
            present = column.dropna()
            if quantity.scale != "category":
                present = pd.to_numeric(present, errors="coerce").dropna()
                present = present[np.isfinite(present.astype(float))]
            if len(present) < MIN_TRAINING:
                domain.skipped[name] = f"{len(present)} training patient(s) with a value (at least {MIN_TRAINING})"
                continue
            if quantity.scale == "category":
                domain.categories.append(CategoryCheck(name, quantity, sorted(set(map(str, present))), len(present)))
            else:
                domain.ranges.append(RangeCheck.fit(name, quantity, present.tolist(), margin))
        for name, (label, X) in (features or {}).items():
            rows = X.dropna(how="all")
            if len(rows) < MIN_TRAINING or rows.shape[1] == 0:
                domain.skipped[name] = (f"{len(rows)} training patient(s) with {label} (at least {MIN_TRAINING})"
                                        if rows.shape[1] else f"no {label} columns")
                continue
            try:
                domain.distances.append(FeatureDistance.fit(name, label, rows, quantile=quantile, folds=folds,
                                                            seed=seed, threshold=(thresholds or {}).get(name)))
            except ApplicabilityError as exc:
                domain.skipped[name] = str(exc)
        return domain

    def findings(self, values: Mapping[str, Any], features: Mapping[str, pd.DataFrame] | None = None
                 ) -> list[Finding]:
        """Every check on one patient (``features``: per group, a one-row table of its model inputs)."""
        found: list[Finding] = []
        for check in self.checks():
            raw = values.get(check.name)
            label, group = check.quantity.label, check.quantity.group
            if isinstance(check, CategoryCheck):
                if raw is None or (isinstance(raw, float) and not math.isfinite(raw)):
                    found.append(Finding(check.name, group, None, False, f"{label}: not measured"))
                else:
                    found.append(Finding(check.name, group, str(raw), str(raw) not in check.allowed,
                                         f"{label} {raw}, {check.describe()}"))
                continue
            value = pd.to_numeric(pd.Series([raw]), errors="coerce").iloc[0]
            unit = f" {check.quantity.unit}" if check.quantity.unit else ""
            if not np.isfinite(value):
                found.append(Finding(check.name, group, None, False, f"{label}: not measured"))
                continue
            found.append(Finding(check.name, group, float(value), check.outside(float(value)),
                                 f"{label} {number(value)}{unit}, {check.describe()}"))
        for distance in self.distances:
            table = (features or {}).get(distance.name)
            d = float(distance.distances(table)[0]) if table is not None and len(table) else math.nan
            if not math.isfinite(d):
                found.append(Finding(distance.name, "features", None, False, f"{distance.label} distance: not measured"))
                continue
            found.append(Finding(distance.name, "features", d, d > distance.threshold,
                                 f"{distance.label} distance {number(d)} (Ledoit-Wolf Mahalanobis), "
                                 f"{distance.describe()}"))
        return found

    def checks(self) -> list[RangeCheck | CategoryCheck]:
        """The range and category checks in the order their quantities were given."""
        order = {name: i for i, name in enumerate(self.order)}
        return sorted([*self.ranges, *self.categories], key=lambda c: order.get(c.name, len(order)))

    def check(self, values: Mapping[str, Any], features: Mapping[str, pd.DataFrame] | None = None
              ) -> tuple[bool, list[str]]:
        """``(within, reasons)``: within when no check fails; each failed check's sentence is a reason."""
        reasons = [f.text for f in self.findings(values, features) if f.outside]
        return not reasons, reasons

    def describe(self) -> list[str]:
        """What is checked, in words (for the result and the report)."""
        groups: dict[str, int] = {}
        for check in [*self.ranges, *self.categories]:
            groups[check.quantity.group] = groups.get(check.quantity.group, 0) + 1
        lines = [f"{n} {group} checks" for group, n in groups.items()]
        lines += [f"{d.label} distance ({len(d.columns)} features)" for d in self.distances]
        return lines

    # ---- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "margin": self.margin, "quantile": self.quantile, "n_train": self.n_train,
                "ranges": [asdict(r) for r in self.ranges], "categories": [asdict(c) for c in self.categories],
                "distances": [asdict(d) for d in self.distances], "skipped": dict(self.skipped),
                "order": list(self.order)}

    def save(self, path: str | Path, **extra: Any) -> Path:
        return write_json_atomic(path, {**self.to_dict(), **extra})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "the applicability domain") -> "ApplicabilityDomain":
        if data.get("format") != FORMAT:
            raise ApplicabilityError(f"{source}: format {data.get('format')!r} is not {FORMAT!r}")
        try:
            ranges = [RangeCheck(**{**r, "quantity": Quantity(**r["quantity"])}) for r in data["ranges"]]
            categories = [CategoryCheck(**{**c, "quantity": Quantity(**c["quantity"])}) for c in data["categories"]]
            distances = [FeatureDistance(**d) for d in data["distances"]]
            for d in distances:
                p = len(d.columns)
                if not (len(d.center) == len(d.scale) == len(d.medians) == len(d.location) == p
                        and np.asarray(d.precision).shape == (p, p)):
                    raise ValueError(f"feature group {d.name!r}: sizes do not match its {p} columns")
            return cls(ranges, categories, distances, float(data["margin"]), float(data["quantile"]),
                       int(data["n_train"]), dict(data.get("skipped") or {}), list(data.get("order") or []))
        except (KeyError, TypeError, ValueError) as exc:
            raise ApplicabilityError(f"{source}: damaged or edited ({type(exc).__name__}: {exc}); rerun `osteomet "
                                     f"run mri` to write it again") from None

    @classmethod
    def load(cls, path: str | Path) -> "ApplicabilityDomain":
        data = read_json_record(path, "applicability domain", remedy="rerun `osteomet run mri` to write it again",
                                error=ApplicabilityError)
        return cls.from_dict(data, source=str(path))


def cross_validated_findings(values: pd.DataFrame, quantities: Mapping[str, Quantity],
                             features: Mapping[str, tuple[str, pd.DataFrame]] | None, final: ApplicabilityDomain, *,
                             folds: int = 5, seed: int = 0) -> dict[Any, list[Finding]]:
    """Each training patient's findings against a domain fitted on the other folds (its out-of-fold verdict).

    ``values`` and every feature table are indexed by patient. The ranges are refitted per fold;
    the feature distances too, judged against ``final``'s thresholds (themselves from the same
    cross-validation), so a training patient is flagged as often as a new patient of the study's
    population would be.
    """
    ids = _fold_ids(len(values), folds, seed)
    thresholds = {d.name: d.threshold for d in final.distances}
    out: dict[Any, list[Finding]] = {}
    for k in np.unique(ids):
        held = values.index[ids == k]
        rest = values.index[ids != k]
        part = {name: (label, X.loc[X.index.intersection(rest)]) for name, (label, X) in (features or {}).items()
                if name in thresholds}
        domain = ApplicabilityDomain.fit(values.loc[rest], quantities, part, margin=final.margin,
                                         quantile=final.quantile, thresholds=thresholds)
        for patient in held:
            rows = {name: X.loc[[patient]] for name, (_, X) in (features or {}).items() if patient in X.index}
            out[patient] = domain.findings(values.loc[patient].to_dict(), rows)
    return out


__all__ = ["ApplicabilityDomain", "ApplicabilityError", "CategoryCheck", "FeatureDistance", "Finding", "Quantity",
           "RangeCheck", "cross_validated_distances", "cross_validated_findings", "number"]
