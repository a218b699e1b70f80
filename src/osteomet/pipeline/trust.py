"""The ``conformal`` stage: prediction sets (and the optional recalibration) for every study model.

Why: the evaluation says how good a model is on average; a conformal prediction set says, per
patient, whether the model's score is typical of one class only ({BM}, {no BM}) or of both
({no BM, BM}: uncertain), with the true class left out of at most ``alpha`` of the sets of
each class (:mod:`osteomet.models.conformal`, Mondrian split conformal).

Calibration patients are the study's held-out patients of the model: validation and the
out-of-fold training rows of its prediction table (each scored by a model that never saw it);
never test or external, on which the sets are judged. No model is refitted: the nonconformity
is ``1 - probability of the true class`` read off the prediction tables. A model whose training
rows are in-sample (``deep.oof_folds: 0``; its stage record says so) is calibrated on the
validation patients only, since in-sample scores would make the sets too small.

Writes ``<model>/conformal.json`` for each model, ``<model>/recalibration.json`` when the
recalibration is on (:mod:`osteomet.models.recalibration`, fitted on the same patients), and
``coverage.csv``: per model, cohort (test, external) and true class, the number of patients,
the empirical coverage with its Wilson 95% interval, and the shares of uncertain and empty sets.
`predict mri` reads the per-model files from the bundle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from osteomet.errors import InputError
from osteomet.layout import CONFORMAL, COVERAGE, RECALIBRATION, STAGE_RECORD
from osteomet.stage import Stage, StageOutcome
from osteomet.utils.files import read_json, write_text_atomic

STAGE = "conformal"
#: The prediction-table splits calibration patients come from (training rows out-of-fold).
CALIBRATION_SPLITS = ("train", "val")
#: The cohorts the sets' coverage is measured on.
JUDGED_SPLITS = ("test", "external")
COVERAGE_COLUMNS = ("model", "split", "class", "n", "covered", "coverage", "ci_low", "ci_high", "nominal",
                    "uncertain", "empty", "n_calibration", "excludable")


def in_sample_training(predictions: Path) -> bool:
    """Whether a model's stage recorded its training rows as in-sample (the deep model with ``oof_folds: 0``)."""
    record = read_json(Path(predictions).parent / STAGE_RECORD) or {}
    return (record.get("summary") or {}).get("training_predictions") == "in-sample"


def calibration_rows(table: pd.DataFrame, in_sample: bool) -> pd.DataFrame:
    """The held-out patients a model's sets are calibrated on: validation (+ out-of-fold training), scored, labelled."""
    splits = ("val",) if in_sample else CALIBRATION_SPLITS
    return table[table["split"].isin(splits)].dropna(subset=["prob", "label"])


def calibrate_trust(study_manifest: str | Path, prediction_files: Mapping[str, Path], out: str | Path, *,
                    alpha: float = 0.1, recalibrate: bool = False,
                    too_few: str = "uncertain") -> StageOutcome:
    """Calibrate each model's prediction sets (and recalibration) on its held-out study patients; measure coverage.

    ``too_few``: what a class with fewer calibration patients than ``alpha`` needs gets:
    ``uncertain`` (kept in every set; recorded) or ``refuse`` (the stage stops, naming the model).
    """
    from osteomet.models.conformal import check_alpha

    alpha = check_alpha(alpha, "conformal.alpha")
    if too_few not in ("refuse", "uncertain"):
        raise InputError(f"conformal.too_few: {too_few!r} is not one of 'refuse', 'uncertain'")
    files = {name: Path(path) for name, path in prediction_files.items()}
    settings = {"alpha": alpha, "recalibrate": bool(recalibrate), "too_few": too_few,
                "calibration": list(CALIBRATION_SPLITS), "judged": list(JUDGED_SPLITS)}
    stage = Stage(STAGE, Path(out), settings=settings,
                  inputs={"manifest": study_manifest, **{f"predictions_{name}": p for name, p in files.items()}},
                  outputs=(COVERAGE, *files))

    def work() -> dict[str, Any]:
        from osteomet.pipeline.evaluate import load_prediction_files

        tables = load_prediction_files(list(files.values()), study_manifest, names=list(files))
        rows: list[dict[str, Any]] = []
        summary: dict[str, Any] = {}
        for name in files:
            record, coverage = _calibrate_model(name, tables[name], Path(out) / name, files[name], alpha=alpha,
                                                recalibrate=recalibrate, too_few=too_few)
            summary[name] = record
            rows += coverage
        frame = pd.DataFrame(rows, columns=list(COVERAGE_COLUMNS))
        write_text_atomic(Path(out) / COVERAGE, frame.to_csv(index=False))
        return {"alpha": alpha, "models": summary}

    return stage.run(work)


def _calibrate_model(name: str, table: pd.DataFrame, folder: Path, source: Path, *, alpha: float, recalibrate: bool,
                     too_few: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One model's conformal.json (+ recalibration.json) and its coverage rows."""
    from osteomet.models.conformal import ConformalError, MondrianConformal, set_coverage
    from osteomet.models.recalibration import LogisticRecalibration, RecalibrationError

    in_sample = in_sample_training(source)
    calibration = calibration_rows(table, in_sample)
    splits = ["val"] if in_sample else list(CALIBRATION_SPLITS)
    what = (f"model {name!r} ({source}): its validation patients (its training rows are in-sample)" if in_sample
            else f"model {name!r} ({source}): its validation and out-of-fold training patients")
    try:
        conformal = MondrianConformal.fit(calibration["prob"], calibration["label"], alpha, too_few=too_few,
                                          source=what)
    except ConformalError as exc:
        raise ConformalError(f"{exc} (conformal.alpha and conformal.too_few in the study config)") from None
    calibrated_on = {split: int((calibration["split"] == split).sum()) for split in splits}
    (folder / RECALIBRATION).unlink(missing_ok=True)  # an earlier run's, with the recalibration on or other patients
    conformal.save(folder / CONFORMAL, model=name, calibrated_on=calibrated_on, training_in_sample=in_sample)
    record: dict[str, Any] = {"n_calibration": dict(zip(("no BM", "BM"), conformal.counts)),
                              "calibrated_on": calibrated_on,
                              "excludable": dict(zip(("no BM", "BM"), conformal.excludable()))}
    if recalibrate:
        try:
            held_out = "validation patients" if in_sample else "validation and out-of-fold training patients"
            fitted = LogisticRecalibration.fit(calibration["prob"], calibration["label"], source=held_out)
        except RecalibrationError as exc:  # the study goes on; the model's probabilities stay as they are
            record["recalibration"] = {"fitted": False, "reason": str(exc)}
        else:
            fitted.save(folder / RECALIBRATION, model=name, calibrated_on=calibrated_on)
            record["recalibration"] = {"fitted": True, "intercept": fitted.intercept, "slope": fitted.slope}
    rows = []
    for split in JUDGED_SPLITS:
        part = table[table["split"] == split].dropna(subset=["prob", "label"])
        sets = conformal.sets(part["prob"].to_numpy())
        for row in set_coverage(sets, part["label"].to_numpy()):
            index = {"no BM": 0, "BM": 1}.get(row["class"])
            rows.append({"model": name, "split": split, **row, "nominal": 1 - alpha,
                         "n_calibration": conformal.counts[index] if index is not None else sum(conformal.counts),
                         "excludable": conformal.excludable()[index] if index is not None else all(
                             conformal.excludable())})
    return record, rows


__all__ = ["CALIBRATION_SPLITS", "JUDGED_SPLITS", "STAGE", "calibrate_trust", "calibration_rows", "in_sample_training"]
