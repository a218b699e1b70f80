"""Synthetic cohorts and look-ups shared by the characteristics-table and odds-ratio tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

CONTINUOUS = ["age", "psa"]
CATEGORICAL = ["centre", "isup", "hematuria"]


def synthetic_frame(seed: int = 0, n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.4).astype(int)
    age = rng.normal(68, 7, n) + 2 * label  # normal in both groups
    psa = np.exp(rng.normal(2.0, 1.0, n) + 0.8 * label)  # log-normal: not normal
    psa[[3, 17, 40]] = np.nan
    centre = np.where(rng.random(n) < 0.45 + 0.2 * label, "C1", "C2")  # large counts: chi-square
    isup = rng.choice([1, 2, 3, 4], n, p=[0.3, 0.3, 0.25, 0.15])
    hematuria = (rng.random(n) < 0.03 + 0.03 * label).astype(int)  # small counts: Fisher
    return pd.DataFrame(
        {"label": label, "age": age, "psa": psa, "centre": centre, "isup": isup, "hematuria": hematuria}
    )


def header(table: pd.DataFrame, var: str) -> pd.Series:
    return table[(table["variable"] == var) & (table["level"] == "")].iloc[0]
