"""Patient-level data splits (never by slice or image), stratified by label."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from osteomet.errors import InputError

SPLIT_NAMES = ("train", "val", "test")


def assign_splits(frame: pd.DataFrame, *, ratios: Sequence[float] = (0.6, 0.1, 0.3), seed: int = 0,
                  label_column: str = "label", centre_column: str = "centre",
                  external_centres: Sequence[str] = (), given_column: str | None = None) -> pd.Series:
    """Split names per row: external centres -> 'external', the rest train/val/test by ``ratios``.

    One row per patient is required: a patient appearing twice would leak between splits.
    Stratified by label with largest-remainder rounding, so every split of a small cohort
    keeps both classes when it can.

    ``given_column`` names a column of splits set by the user (a manifest's ``split``): when
    every row has one they are kept, and when none of them is 'val' the validation patients
    are drawn from the given training patients by the val share of ``ratios`` (so a
    train/test manifest still gets early stopping on patients it never trains on). A column
    filled for some patients only is refused: half a split is a mistake, not a choice.
    """
    if given_column is not None and given_column in frame and frame[given_column].notna().any():
        return _keep_given(frame, given_column, ratios=ratios, seed=seed, label_column=label_column)
    if frame["patient_id"].duplicated().any():
        dupes = sorted(frame.loc[frame["patient_id"].duplicated(), "patient_id"].astype(str).unique())
        raise InputError(f"patients appear more than once, so a split by patient is impossible: {', '.join(dupes)}")
    ratios = np.asarray(ratios, dtype=float)
    if len(ratios) != 3 or (ratios < 0).any() or ratios.sum() <= 0:
        raise InputError(f"ratios must be three non-negative numbers (train, val, test), got {list(ratios)}")
    ratios = ratios / ratios.sum()
    rng = np.random.default_rng(seed)
    out = pd.Series(index=frame.index, dtype=object)
    external = frame[centre_column].isin(external_centres) if centre_column in frame else pd.Series(False, index=frame.index)
    out[external] = "external"
    internal = frame[~external]
    labels = internal[label_column].fillna(-1) if label_column in internal else pd.Series(0, index=internal.index)
    for _, group in internal.groupby(labels, sort=True):
        index = group.index.to_numpy().copy()
        rng.shuffle(index)
        counts = _largest_remainder(len(index), ratios)
        start = 0
        for name, count in zip(SPLIT_NAMES, counts):
            out[index[start:start + count]] = name
            start += count
    return out


def _largest_remainder(n: int, ratios: np.ndarray) -> list[int]:
    raw = ratios * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts))[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def _keep_given(frame: pd.DataFrame, column: str, *, ratios: Sequence[float], seed: int,
                label_column: str) -> pd.Series:
    given = frame[column]
    if given.isna().any():
        missing = ", ".join(frame.loc[given.isna(), "patient_id"].astype(str).tolist()[:10])
        raise InputError(f"the manifest gives a split for some patients but not for: {missing}; "
                         "give every patient a split or none")
    out = given.astype(object).copy()
    train = frame[out == "train"]
    if not (out == "val").any() and len(train) >= 2:
        r = np.asarray(ratios, dtype=float)
        val_share = r[1] / max(r[0] + r[1], 1e-12)
        if val_share > 0:
            out[train.index] = assign_splits(train, ratios=(1 - val_share, val_share, 0.0), seed=seed,
                                             label_column=label_column)
    return out
