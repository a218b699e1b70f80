"""The study's cohort characteristics table from a bpMRI manifest.

Variables follow the published table: age and PSA as continuous, and the categories the study
reports: Gleason 6 / 7 / >=8, PSA < 10 / 10-100 / > 100 ng/mL, ISUP <= 3 / 4 / 5, hematuria,
leukocyturia and centre. Tests and odds ratios come from
:func:`osteomet.evaluation.cohort.characteristics_table`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from osteomet.evaluation.cohort import characteristics_table
from osteomet.evaluation.errors import EvaluationInputError


def _binned(values: pd.Series, edges: list[float], names: list[str]) -> pd.Series:
    """Ordered categories, so the lowest group is the odds-ratio reference and rows read low to high."""
    return pd.cut(values, bins=edges, labels=names, right=False, ordered=True)


def clinical_frame(manifest: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Add the study's categorical groupings; return the frame and its continuous/categorical columns."""
    frame = manifest.copy()
    continuous = [c for c in ("age", "psa") if c in frame and frame[c].notna().any()]
    categorical = []
    if "gleason" in frame and frame["gleason"].notna().any():
        frame["gleason_group"] = _binned(frame["gleason"].astype(float), [0, 7, 8, np.inf], ["6", "7", ">=8"])
        categorical.append("gleason_group")
    if "psa" in frame and frame["psa"].notna().any():
        frame["psa_group"] = _binned(frame["psa"].astype(float), [0, 10, 100.0001, np.inf], ["<10", "10-100", ">100"])
        categorical.append("psa_group")
    if "isup" in frame and frame["isup"].notna().any():
        frame["isup_group"] = _binned(frame["isup"].astype(float), [0, 4, 5, np.inf], ["<=3", "4", "5"])
        categorical.append("isup_group")
    for column in ("hematuria", "leukocyturia", "centre"):
        if column in frame and frame[column].notna().any() and frame[column].nunique() > 1:
            categorical.append(column)
    return frame, continuous, categorical


def study_characteristics(manifest: pd.DataFrame, *, odds_ratios: bool = True) -> pd.DataFrame:
    """Characteristics by BM status of the labelled patients in a bpMRI manifest frame."""
    if "label" not in manifest:
        raise EvaluationInputError("the manifest has no 'label' column (bone metastasis yes/no)")
    labelled = manifest[manifest["label"].notna()]
    frame, continuous, categorical = clinical_frame(labelled)
    if not continuous and not categorical:
        raise EvaluationInputError("the manifest has no clinical columns (age, psa, gleason, isup, ...)")
    # ORs per level of the grouped variables; the raw Gleason/ISUP scores would be collinear with them
    return characteristics_table(frame, "label", continuous, categorical, odds_ratios=odds_ratios)
