"""What a study needs from its manifest, checked before its first stage so no mistake costs minutes of training.

- every training patient has a label (the models are fitted on them);
- every split the study scores holds both classes among its labelled patients (the grid selects
  on the validation AUC; ROC, AUC and thresholds of a one-class cohort do not exist);
- every image's header is that of a 3D scalar volume on a physical grid, and a DICOM folder holds
  one series or names one (:func:`osteomet.data.image_header.check_image_header`).

Each check lists every offending patient at once, so one rerun fixes them all.
"""

from __future__ import annotations

from typing import Callable, Iterable

import pandas as pd

from osteomet.data.image_errors import ImageError
from osteomet.errors import InputError

#: The splits a study scores, in report order.
SCORED_SPLITS = ("train", "val", "test", "external")


def _listing(items: list[str], limit: int = 8) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_study_labels(frame: pd.DataFrame, *, source: str, splits: Iterable[str] = SCORED_SPLITS) -> None:
    """Training patients labelled; both classes in each of ``splits`` that has labelled patients."""
    problems = []
    labels = pd.to_numeric(frame["label"], errors="coerce") if "label" in frame else pd.Series(float("nan"),
                                                                                                index=frame.index)
    unlabelled = frame.loc[(frame["split"] == "train") & labels.isna(), "patient_id"].astype(str).tolist()
    if unlabelled:
        problems.append(f"{len(unlabelled)} training patient(s) without a label ({_listing(unlabelled)}); the models "
                        f"are fitted on training labels: fill in the label column or move them to another split")
    for split in splits:
        present = labels[(frame["split"] == split) & labels.notna()]
        if present.empty:
            continue
        counts = present.astype(int).value_counts()
        if len(counts) < 2:
            only = int(counts.index[0])
            problems.append(f"split {split!r} holds only label {only} ({int(counts.iloc[0])} patient(s)); "
                            f"its AUC{' and the model selection' if split == 'val' else ''} need both classes")
    if problems:
        raise InputError(f"{source}: the study cannot be scored as split: " + "; ".join(problems)
                         + ". Fix the manifest's label or split column, or change split.ratios in the study config")


def check_study_images(records: Iterable, columns: Iterable[str], *, source: str,
                       progress: Callable[[], None] | None = None) -> None:
    """Every image of every patient passes the header check; all failures named in one error."""
    from osteomet.data.image_header import check_image_header

    columns = tuple(columns)
    failures = []
    for record in records:
        for column in columns:
            path = getattr(record, column, None)
            if path is None:
                continue
            try:
                check_image_header(path, record.series_uid(column) if hasattr(record, "series_uid") else None)
            except ImageError as exc:
                failures.append(f"{record.patient_id} ({column}): {exc}")
        if progress:
            progress()
    if failures:
        raise InputError(f"{source}: {len(failures)} image(s) cannot be used, nothing was run: "
                         + "; ".join(failures[:10]) + (f"; and {len(failures) - 10} more" if len(failures) > 10 else "")
                         + ". Fix or re-export these files, or remove the patients from the manifest")
