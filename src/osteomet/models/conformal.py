"""Mondrian (class-conditional) split-conformal prediction sets from a binary model's probabilities.

Why: a probability of 0.55 and one of 0.95 read alike once thresholded; a *prediction set* says
per patient whether the model's score is typical of one class only ({BM} or {no BM}), of both
({no BM, BM}: uncertain) or of neither ({}: an atypical patient), with a guarantee on how often
the true class is left out. Method: Vovk, Gammerman & Shafer, *Algorithmic Learning in a Random
World* (2005), ch. 4 (Mondrian conformal predictors, here with the class as the Mondrian
category: "label-conditional"; Vovk 2012, "Conditional validity of inductive conformal
predictors"); crepes (Boström 2022, ``ConformalClassifier`` with ``bins`` = the class, as
``WrapClassifier.calibrate(class_cond=True)`` does) is the reference the tests compare with.

For a patient with probability ``p`` of bone metastasis the nonconformity of class ``c`` is
``1 - P(c)`` with ``P(BM) = p`` and ``P(no BM) = 1 - p`` (crepes' ``hinge``). The class's
``n_c`` calibration patients (held-out study patients of that class: validation and
out-of-fold training, never test or external) give the non-smoothed p-value::

    p_c = (#{i of class c: a_i >= a_c} + 1) / (n_c + 1)

and the set at error rate ``alpha`` holds every class with ``p_c >= alpha`` (crepes'
``predict_set``). For a new patient exchangeable with the calibration patients of its class,
``P(y not in set | y = c) <= alpha`` for *each* class (Mondrian validity), not only on average
over both: a pooled calibration could under-cover the rarer class (BM). Non-smoothed p-values
make the set deterministic (``predict`` gives the same set every time), at a cost of at most
``1 / (n_c + 1)`` of extra coverage.

**Too few calibration patients.** The smallest p-value a class can get is ``1 / (n_c + 1)``, so
the class can be left out of a set only when ``1 / (n_c + 1) < alpha``, i.e.
``n_c >= floor(1 / alpha)`` (10 per class at alpha 0.1, 20 at 0.05). (The quantile form with
``p_c > alpha``, ``n_c >= ceil((1 - alpha)(n_c + 1))``, needs one fewer when ``1/alpha`` is a
whole number; this module follows crepes' ``>=``.) Below that, :meth:`MondrianConformal.fit`
refuses by default (``too_few="refuse"``); with ``too_few="uncertain"`` it keeps such a class
in every set, which is exactly what the p-values give, and records the class as not
excludable so that every report says why the sets are uncertain.

Saved as JSON (the sorted calibration scores per class, alpha, the counts): never pickled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from osteomet.errors import InputError
from osteomet.utils.files import read_json_record, write_json_atomic

#: What a damaged trust file's error tells the user to do (conformal and recalibration files alike).
REMEDY = "restore it, or delete its folder and rerun the command that wrote it"

FORMAT = "osteomet.conformal/1"
#: Class names in class order (0 = no bone metastasis, 1 = bone metastasis).
CLASS_NAMES = ("no BM", "BM")
DEFAULT_ALPHA = 0.1
TooFew = Literal["refuse", "uncertain"]
RULE = ("Mondrian (class-conditional) split conformal; nonconformity 1 - probability of the class; "
        "non-smoothed p-values; a class is in the set when its p-value >= alpha (crepes' predict_set)")


class ConformalError(InputError):
    """Calibration patients that cannot give prediction sets at the requested error rate."""


def check_alpha(alpha: float, what: str = "alpha") -> float:
    """The error rate as a float strictly between 0 and 1 (else an :class:`InputError` naming ``what``)."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise InputError(f"{what}: {alpha!r} is not a number; give an error rate between 0 and 1, e.g. 0.1") from None
    if not 0.0 < value < 1.0:
        raise InputError(f"{what}: {alpha!r} must lie strictly between 0 and 1 (0.1 = the true class is left out of "
                         f"at most 10% of the sets, per class)")
    return value


def min_calibration(alpha: float) -> int:
    """The fewest calibration patients of a class for that class ever to be left out of a set at ``alpha``.

    The smallest p-value is ``1 / (n + 1)``; it must fall below ``alpha`` (the same float comparison
    as :meth:`MondrianConformal.sets` makes, so the two never disagree at a boundary).
    """
    alpha = check_alpha(alpha)
    n = max(0, math.floor(1.0 / alpha) - 2)
    while not (0 + 1) / (n + 1) < alpha:
        n += 1
    return n


def class_probabilities(probs: Any) -> np.ndarray:
    """``(n, 2)``: P(no BM) = 1 - p and P(BM) = p, the probability matrix crepes' ``hinge`` reads."""
    p = np.asarray(probs, dtype=float).reshape(-1)
    return np.column_stack([1.0 - p, p])


def nonconformity(probs: Any, labels: Any | None = None) -> np.ndarray:
    """``1 - P(class)``: per class ``(n, 2)``, or of the true class ``(n,)`` when ``labels`` are given."""
    scores = 1.0 - class_probabilities(probs)
    if labels is None:
        return scores
    index = np.asarray(labels, dtype=int)
    return scores[np.arange(len(index)), index]


def _checked(probs: Any, source: str) -> np.ndarray:
    p = np.asarray(probs, dtype=float).reshape(-1)
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        count = int(bad.sum())
        raise InputError(f"{source}: a probability must be a finite number in [0, 1]; {count} "
                         f"{'is' if count == 1 else 'are'} not (the first, at position {i + 1}, is {float(p[i]):g})")
    return p


def _labels(labels: Any, n: int, source: str) -> np.ndarray:
    y = np.asarray(labels, dtype=float).reshape(-1)
    if y.size != n:
        raise InputError(f"{source}: {n} probabilities but {y.size} labels")
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        count = int(bad.sum())
        raise InputError(f"{source}: a label must be 0 (no BM) or 1 (BM); {count} {'is' if count == 1 else 'are'} "
                         f"not (the first, at position {i + 1}, is {float(y[i]):g})")
    return y.astype(int)


@dataclass(frozen=True, eq=False)
class MondrianConformal:
    """A fitted class-conditional split-conformal predictor: each class's sorted calibration scores."""

    alpha: float
    #: sorted nonconformity scores of the calibration patients of class 0 (no BM) and class 1 (BM)
    scores: tuple[np.ndarray, np.ndarray]
    too_few: TooFew = "refuse"

    @classmethod
    def fit(cls, probs: Any, labels: Any, alpha: float = DEFAULT_ALPHA, *, too_few: TooFew = "refuse",
            source: str = "calibration patients") -> "MondrianConformal":
        """Calibrate on held-out patients' probabilities and labels (never the patients it will be judged on).

        ``too_few``: ``refuse`` (a :class:`ConformalError` naming the class, its count and the count
        needed) or ``uncertain`` (the class stays in every set, recorded as not excludable).
        """
        alpha = check_alpha(alpha)
        if too_few not in ("refuse", "uncertain"):
            raise InputError(f"too_few: {too_few!r} is not one of 'refuse', 'uncertain'")
        p = _checked(probs, source)
        y = _labels(labels, p.size, source)
        scores = nonconformity(p, y)
        per_class = tuple(np.sort(scores[y == c]) for c in (0, 1))
        fitted = cls(alpha, per_class, too_few)  # type: ignore[arg-type]
        short = [c for c in (0, 1) if not fitted.excludable()[c]]
        if short and too_few == "refuse":
            need = min_calibration(alpha)
            parts = [f"{fitted.counts[c]} with {CLASS_NAMES[c]}" for c in short]
            reachable = min(fitted.counts[c] for c in short)
            raise ConformalError(
                f"{source}: {' and '.join(parts)}; prediction sets at error rate {alpha:g} need at least {need} "
                f"calibration patients per class (the smallest p-value of a class, 1/(n+1), must fall below alpha), "
                f"else that class is in every set. Calibrate on more held-out patients, raise alpha above "
                f"{1 / (reachable + 1):.3g}, or accept such sets as uncertain")
        return fitted

    @property
    def counts(self) -> tuple[int, int]:
        """Calibration patients per class (no BM, BM)."""
        return int(self.scores[0].size), int(self.scores[1].size)

    def excludable(self, alpha: float | None = None) -> tuple[bool, bool]:
        """Whether each class can ever be left out of a set at ``alpha`` (enough calibration patients)."""
        alpha = self.alpha if alpha is None else check_alpha(alpha)
        return tuple(1 / (n + 1) < alpha for n in self.counts)  # type: ignore[return-value]

    def p_values(self, probs: Any) -> np.ndarray:
        """``(n, 2)`` non-smoothed conformal p-values of class 0 and class 1 (crepes' ``smoothing=False``)."""
        scores = nonconformity(_checked(probs, "probabilities"))
        out = np.empty_like(scores)
        for c in (0, 1):
            calibration = self.scores[c]
            at_least = calibration.size - np.searchsorted(calibration, scores[:, c], side="left")
            out[:, c] = (at_least + 1) / (calibration.size + 1)
        return out

    def sets(self, probs: Any, alpha: float | None = None) -> np.ndarray:
        """``(n, 2)`` booleans: class 0 / class 1 in each patient's prediction set at ``alpha`` (default: fitted)."""
        alpha = self.alpha if alpha is None else check_alpha(alpha)
        return self.p_values(probs) >= alpha

    def thresholds(self, alpha: float | None = None) -> tuple[float | None, float | None]:
        """Per class, the largest nonconformity still in the set (None: the class is in every set).

        The same rule as :meth:`sets` in threshold form: with ``m = ceil(alpha (n + 1)) - 1`` scores
        needed at or above a patient's, the class is kept when its nonconformity is at most the
        ``m``-th largest calibration score.
        """
        alpha = self.alpha if alpha is None else check_alpha(alpha)
        found: list[float | None] = []
        for c in (0, 1):
            calibration = self.scores[c]
            n = calibration.size
            # the smallest count m of calibration scores >= s for which (m + 1) / (n + 1) >= alpha
            m = next(k for k in range(n + 1) if (k + 1) / (n + 1) >= alpha)
            found.append(None if m == 0 else float(calibration[n - m]))
        return found[0], found[1]

    def to_dict(self) -> dict[str, Any]:
        thresholds = self.thresholds()
        excludable = self.excludable()
        return {"format": FORMAT, "method": RULE, "alpha": self.alpha, "confidence": 1 - self.alpha,
                "too_few": self.too_few, "min_per_class": min_calibration(self.alpha),
                "classes": {str(c): {"name": CLASS_NAMES[c], "n": self.counts[c], "excludable": excludable[c],
                                     "threshold": thresholds[c], "scores": [float(s) for s in self.scores[c]]}
                            for c in (0, 1)}}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "conformal record") -> "MondrianConformal":
        """Read :meth:`to_dict`'s record; anything missing or malformed is an :class:`InputError` naming ``source``."""
        try:
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r} is not {FORMAT!r}")
            scores = tuple(np.sort(np.asarray(data["classes"][str(c)]["scores"], dtype=float)) for c in (0, 1))
            for c, values in enumerate(scores):
                if values.ndim != 1 or not np.isfinite(values).all() or (values < 0).any() or (values > 1).any():
                    raise ValueError(f"class {c}: scores must be numbers in [0, 1]")
                if len(values) != int(data["classes"][str(c)]["n"]):
                    raise ValueError(f"class {c}: n is {data['classes'][str(c)]['n']} but {len(values)} scores")
            too_few = data.get("too_few", "refuse")
            if too_few not in ("refuse", "uncertain"):
                raise ValueError(f"too_few {too_few!r}")
            return cls(check_alpha(data["alpha"]), scores, too_few)  # type: ignore[arg-type]
        except InputError as exc:
            raise InputError(f"{source}: damaged or edited conformal calibration ({exc})") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            detail = f"no entry {exc}" if isinstance(exc, KeyError) else str(exc)
            raise InputError(f"{source}: damaged or edited conformal calibration ({detail}); {REMEDY}") from None

    def save(self, path: str | Path, **extra: Any) -> Path:
        """Write the calibration as JSON (atomically); ``extra``: what the caller records beside it."""
        return write_json_atomic(path, {**extra, **self.to_dict()})

    @classmethod
    def load(cls, path: str | Path) -> "MondrianConformal":
        data = read_json_record(path, "conformal calibration", remedy=REMEDY)
        return cls.from_dict(data, str(path))


def set_names(members: Sequence[bool]) -> list[str]:
    """The class names in one prediction set (``[False, True]`` -> ``["BM"]``)."""
    return [CLASS_NAMES[c] for c in (0, 1) if members[c]]


def describe_set(members: Sequence[bool]) -> str:
    """``{BM}``, ``{no BM}``, ``{no BM, BM}`` or ``{}``."""
    return "{" + ", ".join(set_names(members)) + "}"


def verdict(members: Sequence[bool]) -> str:
    """What a set says: ``BM``, ``no BM``, ``uncertain`` (both classes) or ``empty`` (neither)."""
    names = set_names(members)
    return names[0] if len(names) == 1 else ("uncertain" if names else "empty")


def set_coverage(sets: np.ndarray, labels: Any, level: float = 0.95) -> list[dict[str, Any]]:
    """Per true class (0, 1) and over all patients: n, covered, coverage with its Wilson interval, and the
    shares of uncertain (both classes) and empty sets. Coverage of class ``c`` is the share of class-``c``
    patients whose set holds ``c``: Mondrian validity promises at least ``1 - alpha`` for each.
    """
    from osteomet.evaluation.proportions import wilson_interval

    sets = np.asarray(sets, dtype=bool).reshape(-1, 2)
    y = _labels(labels, sets.shape[0], "coverage")
    covered = sets[np.arange(y.size), y]
    size = sets.sum(axis=1)
    rows = []
    for name, mask in (("no BM", y == 0), ("BM", y == 1), ("all", np.ones(y.size, dtype=bool))):
        n = int(mask.sum())
        share, low, high = wilson_interval(int(covered[mask].sum()), n, level)
        rows.append({"class": name, "n": n, "covered": int(covered[mask].sum()), "coverage": share,
                     "ci_low": low, "ci_high": high,
                     "uncertain": float(np.mean(size[mask] == 2)) if n else float("nan"),
                     "empty": float(np.mean(size[mask] == 0)) if n else float("nan")})
    return rows


__all__ = ["CLASS_NAMES", "ConformalError", "DEFAULT_ALPHA", "MondrianConformal", "check_alpha", "class_probabilities",
           "describe_set", "min_calibration", "nonconformity", "set_coverage", "set_names", "verdict"]
