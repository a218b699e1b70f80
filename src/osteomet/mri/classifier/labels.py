"""Labels handed out per split, with a guard against leakage.

Fitting reads training labels only and selection (early stopping, choosing the grid's
winner) validation labels only; test and external labels are for the final report. Every
label the classifier uses comes from a :class:`LabelGuard`, so asking for held-out labels
during fitting or selection raises :class:`~osteomet.errors.LeakageError` instead of
silently biasing the reported AUC. The guard also records what was read, so a run can
show which labels it saw.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd

from osteomet.errors import InputError, LeakageError

Purpose = Literal["fit", "select", "report"]

#: The only split each purpose may read.
ALLOWED: dict[str, tuple[str, ...]] = {"fit": ("train",), "select": ("val",),
                                      "report": ("train", "val", "test", "external")}


class LabelGuard:
    """Labels of one cohort (``patient_id``, ``split``, ``label``) handed out per split and purpose."""

    def __init__(self, table: pd.DataFrame):
        missing = {"patient_id", "split", "label"} - set(table.columns)
        if missing:
            raise InputError(f"label table lacks column(s) {sorted(missing)}")
        self._table = table[["patient_id", "split", "label"]].copy()
        self._table["patient_id"] = self._table["patient_id"].astype(str)
        self.reads: list[tuple[str, str]] = []

    @classmethod
    def from_manifest(cls, manifest) -> LabelGuard:
        """From a read :class:`~osteomet.data.manifest.Manifest`."""
        return cls(manifest.to_frame())

    def split_of(self, patient_ids: list[str]) -> list[str | None]:
        """The split of each patient (splits are not labels: reading them is always allowed)."""
        splits = dict(zip(self._table["patient_id"], self._table["split"]))
        return [splits.get(str(pid)) for pid in patient_ids]

    def labels(self, split: str, purpose: Purpose, patient_ids: list[str] | None = None) -> pd.Series:
        """0/1 labels (index patient_id) of ``split``, optionally of some of its patients only.

        Raises :class:`LeakageError` when ``purpose`` may not read ``split`` (``fit``: train
        only; ``select``: val only) and :class:`InputError` when a requested patient is not in
        that split or has no label.
        """
        if split not in ALLOWED.get(purpose, ()):
            raise LeakageError(f"a {purpose} step asked for {split} labels; fitting may read training labels only "
                               f"and selection validation labels only (test and external are for the final report)")
        self.reads.append((split, purpose))
        part = self._table[self._table["split"] == split].set_index("patient_id")["label"]
        if patient_ids is not None:
            outside = [pid for pid in patient_ids if pid not in part.index]
            if outside:
                raise LeakageError(f"patient(s) {outside[:5]} are not in the {split} split but were asked for as "
                                   f"{split} labels by a {purpose} step")
            part = part.loc[list(patient_ids)]
        unlabelled = part[part.isna()].index.tolist()
        if unlabelled:
            raise InputError(f"{split} patient(s) {unlabelled[:5]} have no label; fill the manifest's label column")
        return part.astype(int)

    def read_splits(self) -> set[str]:
        """The splits whose labels were handed out so far."""
        return {split for split, _ in self.reads}
