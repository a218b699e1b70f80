"""Reference-batch ComBat across centres, fitted once, saved as JSON and applied to one patient at a time.

Scanners of different centres shift and stretch radiomics features (vendor intensity scale,
resolution, noise). ComBat (Johnson et al. 2007; Fortin et al. 2018 for radiomics) models each
feature in centre ``b`` as ``mean + sd * (gamma_b + sqrt(delta_b) * e)`` and removes
``gamma_b``/``delta_b``, shrunk towards all features' common prior by empirical Bayes. With a
*reference batch* (Zhang et al. 2018) the mean and sd are the reference centre's own and the
reference keeps ``gamma = 0, delta = 1``: its features are returned unchanged and every other
centre is mapped onto it. No label enters: batch is the only design variable.

The estimation is inmoose's (``inmoose.pycombat``, pinned 0.9.1; maintained, numpy 2,
``ref_batch`` support; neuroCombat fails on numpy 2 and neuroHarmonize cannot apply a fit to
a single site). Its public ``pycombat_norm`` returns only the adjusted matrix, so
:func:`fit_combat` runs the same steps (design matrix, reference standardisation, parametric
EB fit) and keeps the parameters: per feature the reference mean and sd, per centre
``gamma*`` and ``delta*``. :meth:`ComBat.apply` then maps any patient of a fitted centre with
``((x - mean) / sd - gamma*) / sqrt(delta*) * sd + mean``, which is what ``pycombat_norm``
computes for the fitted patients (checked in the tests).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from osteomet.errors import InputError, MissingInputError
from osteomet.utils.files import read_json, write_json_atomic

FORMAT = "osteomet.combat/1"


class UnknownCentreError(InputError):
    """A patient of a centre the ComBat fit never saw: its batch effect is unknown."""


@dataclass
class ComBat:
    """Fitted reference-batch ComBat: what :meth:`apply` needs, and nothing that depends on labels."""

    reference: str
    features: list[str]
    mean: np.ndarray
    sd: np.ndarray
    gamma: dict[str, np.ndarray] = field(default_factory=dict)
    delta: dict[str, np.ndarray] = field(default_factory=dict)
    patients: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # feature -> why it is left as it is

    @property
    def centres(self) -> list[str]:
        return [self.reference, *sorted(self.gamma)]

    def apply(self, table: pd.DataFrame, centres: Sequence[Any]) -> pd.DataFrame:
        """``table`` with each fitted feature mapped onto the reference centre; other columns untouched.

        ``centres`` gives each row's centre; rows of the reference centre are returned as they are.
        A centre the fit never saw raises :class:`UnknownCentreError` naming it.
        """
        centres = [None if c is None or (isinstance(c, float) and math.isnan(c)) else str(c) for c in centres]
        if len(centres) != len(table):
            raise InputError(f"{len(table)} feature rows but {len(centres)} centres")
        unknown = sorted({c for c in centres if c not in self.centres} - {None})
        if unknown or None in centres:
            what = ", ".join(repr(c) for c in unknown) if unknown else "no centre given"
            raise UnknownCentreError(
                f"ComBat harmonization: {what}; the fit knows the centres {', '.join(self.centres)} (reference "
                f"{self.reference}). A new centre's scanner effect cannot be removed without its own patients: "
                f"give one of these centres, or predict without harmonization")
        missing = [f for f in self.features if f not in table.columns]
        if missing:
            raise InputError(f"ComBat harmonization: the feature table lacks {len(missing)} fitted feature(s), e.g. "
                             f"{', '.join(missing[:3])}; were the features extracted with the study's settings?")
        out = table.copy()
        values = table[self.features].to_numpy(dtype=float)
        adjusted = values.copy()
        for centre in set(centres) - {self.reference}:
            rows = np.array([c == centre for c in centres])
            z = (values[rows] - self.mean) / self.sd
            adjusted[rows] = (z - self.gamma[centre]) / np.sqrt(self.delta[centre]) * self.sd + self.mean
        out[self.features] = adjusted
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "method": "reference-batch ComBat, parametric empirical Bayes (inmoose 0.9.1)",
                "reference": self.reference, "features": self.features, "mean": self.mean.tolist(),
                "sd": self.sd.tolist(), "gamma": {c: v.tolist() for c, v in self.gamma.items()},
                "delta": {c: v.tolist() for c, v in self.delta.items()}, "patients": self.patients,
                "skipped": self.skipped}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "ComBat parameters") -> "ComBat":
        if data.get("format") != FORMAT:
            raise InputError(f"{source}: format {data.get('format')!r} is not {FORMAT!r}")
        return cls(str(data["reference"]), list(data["features"]), np.asarray(data["mean"], float),
                   np.asarray(data["sd"], float), {c: np.asarray(v, float) for c, v in data["gamma"].items()},
                   {c: np.asarray(v, float) for c, v in data["delta"].items()}, dict(data.get("patients", {})),
                   dict(data.get("skipped", {})))

    def save(self, path: str | Path) -> Path:
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "ComBat":
        data = read_json(path)
        if data is None:
            raise MissingInputError(f"{path}: ComBat parameters not found; rerun the study with harmonization on")
        return cls.from_dict(data, str(path))


def fit_combat(features: pd.DataFrame, centres: Sequence[Any], reference: str) -> ComBat:
    """Fit on ``features`` (rows patients, numeric columns) whose centres are ``centres``.

    Rows with a missing value are left out of the fit. Features that are constant within a
    centre (ComBat's variance would be 0) are not harmonized and are recorded in ``skipped``.
    Every centre needs at least 2 complete rows.
    """
    from inmoose.pycombat.covariates import make_design_matrix
    from inmoose.pycombat.pycombat_norm import calculate_mean_var, calculate_stand_mean, fit_model, standardise_data

    centres = pd.Series([None if pd.isna(c) else str(c) for c in centres], index=features.index)
    values = features.astype(float)
    complete = values.notna().all(axis=1) & centres.notna()
    values, centres = values[complete], centres[complete]
    counts = centres.value_counts()
    if reference not in counts.index:
        raise InputError(f"ComBat: no complete feature row of the reference centre {reference!r}")
    small = sorted(c for c, n in counts.items() if n < 2)
    if small:
        raise InputError(f"ComBat: centre(s) {', '.join(small)} have fewer than 2 patients with complete features; "
                         f"a centre's scanner effect cannot be estimated from one patient")
    if len(counts) < 2:
        raise InputError(f"ComBat: only the centre {reference!r} has patients; there is nothing to harmonize")
    spread = values.groupby(centres).std(ddof=0).min()
    skipped = {c: "constant within a centre" for c in values.columns if not spread[c] > 1e-12}
    used = [c for c in values.columns if c not in skipped]
    if not used:
        raise InputError("ComBat: every feature is constant within some centre; nothing to harmonize")
    data = pd.DataFrame(values[used].to_numpy().T, index=used, columns=[f"s{i}" for i in range(len(values))])
    logging.getLogger("inmoose").setLevel(logging.WARNING)
    vci = make_design_matrix(data, list(centres), None, reference)
    design = np.transpose(vci.design)
    ref = vci.ref_batch_idx
    order = list(vci.batch.categories)
    batches = [vci.batch_composition[b] for b in order]
    sizes = [len(b) for b in batches]
    n_batch, n_sample = vci.n_batch, vci.counts.shape[1]
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        # inmoose works on np.matrix (PendingDeprecationWarning) and its convergence test divides by the
        # reference batch's gamma, which is 0 by construction (the reference's own estimate is then replaced)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        b_hat, grand_mean, var_pooled = calculate_mean_var(design, batches, ref, vci.counts, sizes, n_batch, n_sample)
        stand_mean = calculate_stand_mean(grand_mean, n_sample, design, n_batch, b_hat)
        s_data = standardise_data(vci.counts, stand_mean, var_pooled, n_sample)
        gamma_star, delta_star, _ = fit_model(design, n_batch, s_data, batches, False, True, None, ref)
    mean = np.asarray(grand_mean, dtype=float).ravel()
    sd = np.sqrt(np.asarray(var_pooled, dtype=float).ravel())
    others = {str(b): i for i, b in enumerate(order) if i != ref}
    return ComBat(str(reference), used, mean, sd,
                  {c: np.asarray(gamma_star[i], float).ravel() for c, i in others.items()},
                  {c: np.asarray(delta_star[i], float).ravel() for c, i in others.items()},
                  {str(c): int(n) for c, n in counts.items()}, skipped)


def centre_means(table: pd.DataFrame, centres: Sequence[Any], features: Sequence[str]) -> pd.DataFrame:
    """Mean and SD of each feature per centre (long format): the harmonization effect shown in the report."""
    frame = table[list(features)].astype(float).assign(centre=[str(c) for c in centres])
    grouped = frame.groupby("centre")
    mean = grouped.mean().stack().rename("mean")
    sd = grouped.std(ddof=1).stack().rename("sd")
    out = pd.concat([mean, sd], axis=1).reset_index()
    return out.rename(columns={out.columns[1]: "feature"})


def effect_summary(means: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per centre, how far its features sit from the reference centre before and after harmonization.

    ``means`` is :func:`centre_means` of both states with a ``stage`` column (``before``/``after``).
    Returns ``centre, n_features, smd_before, smd_after, sd_ratio_before, sd_ratio_after``: the median
    over features of the absolute standardized mean difference (in reference SDs) and of the SD ratio
    expressed as ``exp(|log(sd / sd_ref)|)`` (1 = same spread).
    """
    rows = []
    for centre in sorted(set(means["centre"]) - {reference}):
        row: dict[str, Any] = {"centre": centre}
        for stage in ("before", "after"):
            part = means[means["stage"] == stage].pivot(index="feature", columns="centre")
            ref_mean, ref_sd = part[("mean", reference)], part[("sd", reference)]
            ok = ref_sd > 0
            smd = ((part[("mean", centre)] - ref_mean) / ref_sd)[ok].abs()
            ratio = np.exp(np.abs(np.log(part[("sd", centre)][ok] / ref_sd[ok])))
            row.update({"n_features": int(ok.sum()), f"smd_{stage}": float(smd.median()),
                        f"sd_ratio_{stage}": float(ratio.median())})
        rows.append(row)
    return pd.DataFrame(rows, columns=["centre", "n_features", "smd_before", "smd_after", "sd_ratio_before",
                                       "sd_ratio_after"])
