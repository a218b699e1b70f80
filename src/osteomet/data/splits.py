"""Patient-level data splits (never by slice or image), stratified by label."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from osteomet.errors import InputError, LeakageError

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


def split_manifest(manifest: str | Path, out: str | Path, *, external_centres: Sequence[str] = (),
                   ratios: Sequence[float] = (0.6, 0.1, 0.3), seed: int = 0, replace: bool = False) -> pd.DataFrame:
    """Write ``out``: the manifest with a patient-level ``split`` column (the one split policy, :func:`assign_splits`).

    Internal centres are split train/val/test by ``ratios``, stratified by label; the external
    centres are held out entirely. A manifest that already has splits is refused unless
    ``replace`` (a study's split is part of its record). Images identical by content in two
    cohorts are refused (:func:`check_no_leakage`).
    """
    from osteomet.data.manifest import read_manifest, with_absolute_paths, write_manifest
    from osteomet.stage import refuse_overwriting_inputs

    refuse_overwriting_inputs([out], [manifest])
    cohort = read_manifest(manifest)
    frame = cohort.to_frame()
    if cohort.extra_columns:
        raw = pd.read_csv(manifest, dtype=str, keep_default_na=False, sep=None, engine="python")
        for column in cohort.extra_columns:
            frame[column] = raw[column].to_numpy()
    if frame["split"].notna().any() and not replace:
        raise InputError(f"{manifest}: already has a split for {int(frame['split'].notna().sum())} patient(s); "
                         "pass --replace to draw a new one")
    centres = set(frame["centre"].dropna()) if "centre" in frame else set()
    unknown = sorted(set(external_centres) - centres)
    if unknown:
        raise InputError(f"{manifest}: external centre(s) {', '.join(unknown)} not in the manifest "
                         f"(centres: {', '.join(sorted(map(str, centres))) or 'none'})")
    frame["split"] = assign_splits(frame, ratios=ratios, seed=seed, external_centres=external_centres)
    check_no_leakage(frame, kind=cohort.kind)
    write_manifest(with_absolute_paths(frame, cohort.kind), out, kind=cohort.kind)
    return frame


class SplitLeakageError(LeakageError):
    """One patient's data in more than one split (e.g. slices of one scan in train and test)."""


def check_no_leakage(frame: pd.DataFrame, *, kind: str | None = None) -> None:
    """Refuse one patient's data in two splits (the one leakage check of the project; errors name the patients).

    Any table with ``patient_id`` and ``split`` (a slice index has many rows per patient): a patient
    whose rows carry more than one split raises :class:`SplitLeakageError` (the slices of one patient
    are near copies of each other, so a patient in two splits inflates every test metric). A cohort
    manifest (``kind`` 'mri' or 'ct': one row per patient) is also refused when a patient is listed
    twice or one image file (by content hash, whatever its name) is in two splits.
    """
    if kind is not None and frame["patient_id"].duplicated().any():
        dupes = sorted(frame.loc[frame["patient_id"].duplicated(), "patient_id"].astype(str).unique())
        raise LeakageError(f"patient(s) {', '.join(dupes[:10])} appear more than once")
    splits = frame.groupby("patient_id")["split"].nunique(dropna=False)
    leaking = splits[splits > 1]
    if len(leaking):
        detail = ", ".join(f"{pid} ({'/'.join(sorted(map(str, frame.loc[frame.patient_id == pid, 'split'].unique())))})"
                           for pid in leaking.index[:10])
        raise SplitLeakageError(f"{len(leaking)} patient(s) appear in more than one split: {detail}; "
                                "the data of one patient (e.g. the slices of one scan) must stay in one split")
    if kind is None:
        return
    from osteomet.utils.files import sha256_path

    columns = ("t2", "dwi", "adc") if kind == "mri" else ("ct",)
    seen: dict[str, tuple[str, str, str]] = {}
    for row in frame.itertuples(index=False):
        for column in columns:
            path = getattr(row, column, None)
            if path is None or (isinstance(path, float) and path != path) or not Path(path).exists():
                continue
            digest = sha256_path(path)
            if digest in seen and seen[digest][1] != row.split:
                other, split, other_path = seen[digest]
                raise LeakageError(f"the same image is in two cohorts: patient {other!r} ({split}, {other_path}) and "
                                   f"patient {row.patient_id!r} ({row.split}, {path}) have identical {column} files")
            seen.setdefault(digest, (str(row.patient_id), str(row.split), str(path)))


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
