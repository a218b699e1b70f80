"""The evaluation stages: saved predictions to metrics, DeLong comparisons and ROC figures; the cohort table."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from osteomet.data.manifest import read_manifest
from osteomet.errors import InputError
from osteomet.layout import CALIBRATION, DELONG, METRICS, roc_figure
from osteomet.stage import Stage, StageOutcome, refuse_overwriting_inputs
from osteomet.utils.text import shown as as_shown

PREDICTIONS_STAGE = "evaluate-predictions"


def load_prediction_files(files: Sequence[str | Path], manifest: str | Path | None = None,
                          names: Sequence[str] | None = None, *, scores: bool = False,
                          allow_missing: bool = True) -> dict[str, pd.DataFrame]:
    """One validated prediction table per model (several models in one file are split by ``model``).

    ``prob`` must be a probability in [0, 1] unless ``scores``; an empty ``prob`` is refused unless
    ``allow_missing``; a patient's label must be the same in every table (and the manifest's).
    """
    return _read_models(files, manifest, names, scores=scores, allow_missing=allow_missing)[0]


def _read_models(files: Sequence[str | Path], manifest: str | Path | None, names: Sequence[str] | None, *,
                 scores: bool, allow_missing: bool) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """The models and the file each came from."""
    from osteomet.models.predictions import MissingProbabilityError, ProbabilityRangeError, by_model, read_predictions

    if names and len(names) != len(files):
        raise InputError(f"{len(names)} --name value(s) for {len(files)} --predictions file(s)")
    cohort = read_manifest(manifest, require=("label",)).to_frame() if manifest else None
    models: dict[str, pd.DataFrame] = {}
    sources: dict[str, str] = {}
    for i, path in enumerate(files):
        try:
            table = read_predictions(path, cohort, model=names[i] if names else None, probabilities=not scores,
                                     allow_missing=allow_missing, manifest_name=str(manifest))
        except ProbabilityRangeError as exc:
            raise type(exc)(f"{exc}. If the column holds scores rather than probabilities (logits, ranks: higher = "
                            "bone metastasis), pass --scores") from None
        except MissingProbabilityError as exc:
            raise type(exc)(f"{exc}. Fill them in, or pass --allow-missing to leave these patients out of the "
                            "evaluation (the count per model is reported)") from None
        for name, part in by_model(table).items():
            while name in models:
                name += "_"
            models[name] = part
            sources[name] = str(path)
    _check_labels_agree(models, sources)
    return models, sources


def _check_labels_agree(models: dict[str, pd.DataFrame], sources: dict[str, str]) -> None:
    """Refuse a patient whose known label differs between two tables (or two models of one table)."""
    rows = pd.concat([t.loc[t["label"].notna(), ["patient_id", "label"]].assign(model=name)
                      for name, t in models.items()], ignore_index=True)
    if rows.empty:
        return
    counts = rows.groupby("patient_id", sort=False)["label"].nunique()
    bad = counts.index[counts > 1].tolist()
    if not bad:
        return

    def where(model: str) -> str:
        return f"{sources[model]}" if list(sources.values()).count(sources[model]) == 1 else \
            f"{sources[model]} (model {model!r})"

    shown = []
    for patient in bad[:5]:
        seen = rows[rows["patient_id"] == patient]
        shown.append(f"patient {patient!r}: " + ", ".join(f"{label:g} in {where(model)}"
                                                           for model, label in zip(seen["model"], seen["label"])))
    more = f"; and {len(bad) - 5} more patient(s)" if len(bad) > 5 else ""
    raise InputError(f"{len(bad)} patient(s) have different labels in different prediction tables: "
                     f"{'; '.join(shown)}{more}. Correct the wrong table, or give the cohort manifest with -m "
                     "(its labels are then used, and each table's own labels must agree with it)")


def _scored(table: pd.DataFrame) -> pd.DataFrame:
    """The rows a DeLong comparison can use: a probability and a label."""
    return table.dropna(subset=["prob", "label"])


def patient_set_differences(models: dict[str, pd.DataFrame]) -> list[dict]:
    """For each pair of models scoring different (labelled) patients: the counts in A only, B only and both."""
    import itertools

    found = []
    for (name_a, a), (name_b, b) in itertools.combinations(models.items(), 2):
        ids_a, ids_b = set(_scored(a)["patient_id"]), set(_scored(b)["patient_id"])
        if ids_a != ids_b:
            found.append({"model_a": name_a, "model_b": name_b, "a_only": len(ids_a - ids_b),
                          "b_only": len(ids_b - ids_a), "both": len(ids_a & ids_b),
                          "examples_a_only": sorted(ids_a - ids_b)[:3], "examples_b_only": sorted(ids_b - ids_a)[:3]})
    return found


def _examples(ids: list[str]) -> str:
    return f" (e.g. {', '.join(map(repr, ids))})" if ids else ""


def _refuse_unpaired(differences: list[dict], sources: dict[str, str]) -> None:
    parts = []
    for d in differences:
        a, b = d["model_a"], d["model_b"]
        parts.append(f"model {a!r} ({sources[a]}) and model {b!r} ({sources[b]}) scored different patients: "
                     f"{d['a_only']} in {a!r} only{_examples(d['examples_a_only'])}, {d['b_only']} in {b!r} only"
                     f"{_examples(d['examples_b_only'])}, {d['both']} in both")
    raise InputError("; ".join(parts) + ". A DeLong comparison needs the same patients in both models: give tables "
                     "of the same patients, or pass --paired-subset to compare the models on the patients both "
                     "scored (the counts are recorded in delong.csv)")


def delong_table(models: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """:func:`compare_predictions` with ``n_a_only`` and ``n_b_only`` (of the split) after ``n`` (both)."""
    from osteomet.evaluation.predictions import compare_predictions

    table = compare_predictions(models)
    scored = {name: _scored(t) for name, t in models.items()}
    a_only, b_only = [], []
    for row in table.itertuples(index=False):
        a, b = scored[row.model_a], scored[row.model_b]
        a_only.append(int((~a.loc[a["split"] == row.split, "patient_id"].isin(b["patient_id"])).sum()))
        b_only.append(int((~b.loc[b["split"] == row.split, "patient_id"].isin(a["patient_id"])).sum()))
    at = list(table.columns).index("n") + 1
    table.insert(at, "n_a_only", pd.Series(a_only, index=table.index, dtype=int))
    table.insert(at + 1, "n_b_only", pd.Series(b_only, index=table.index, dtype=int))
    return table


def evaluate_prediction_files(files: Sequence[str | Path], out: str | Path, *, manifest: str | Path | None = None,
                              names: Sequence[str] | None = None, threshold_split: str | None = None,
                              n_resamples: int = 1000, seed: int = 0, scores: bool = False,
                              allow_missing: bool = True, paired_subset: bool = True,
                              patients: Sequence[str] | None = None) -> tuple[StageOutcome, pd.DataFrame]:
    """Each model on each split (AUC with DeLong CI, threshold metrics with bootstrap CIs), paired DeLong, ROC.

    ``prob`` must lie in [0, 1] unless ``scores``. ``allow_missing``: patients with an empty ``prob``
    are left out (counted per model in the stage summary, ``missing_probabilities``) instead of
    refused. ``paired_subset``: models that scored different patients are compared on the shared
    ones (counts in ``delong.csv`` and the summary's ``paired_subset``) instead of refused. Both
    default to True for the study pipeline (``run mri``: the deep model scores only patients with
    a ROI crop, a failed extraction leaves ``prob`` empty); ``osteomet evaluate predictions``
    passes False unless the user gives ``--allow-missing`` / ``--paired-subset``. ``patients``: evaluate
    every model on these patients only (the study's one patient set per cohort, from its patient flow).
    """
    from osteomet.evaluation.plots import plot_calibration, plot_decision_curve, plot_roc
    from osteomet.evaluation.predictions import evaluate_predictions
    from osteomet.utils.files import write_text_atomic

    out = Path(out)
    settings = {"names": list(names or []), "threshold_split": threshold_split, "n_resamples": n_resamples,
                "seed": seed, "scores": scores, "allow_missing": allow_missing, "paired_subset": paired_subset,
                "patients": None if patients is None else sorted(map(str, patients))}
    stage = Stage(PREDICTIONS_STAGE, out, settings=settings,
                  inputs={"predictions": list(files), "manifest": manifest}, outputs=(METRICS, DELONG, CALIBRATION))
    stage.check()

    def work() -> dict:
        models, sources = _read_models(files, manifest, names, scores=scores, allow_missing=allow_missing)
        if patients is not None:
            chosen = set(map(str, patients))
            models = {name: t[t["patient_id"].astype(str).isin(chosen)].reset_index(drop=True)
                      for name, t in models.items()}
        missing = {name: int(t["prob"].isna().sum()) for name, t in models.items() if t["prob"].isna().any()}
        differences = patient_set_differences(models) if len(models) > 1 else []
        if differences and not paired_subset:
            _refuse_unpaired(differences, sources)
        refuse_overwriting_inputs([out / roc_figure(s) for m in models.values() for s in m["split"].unique()], files)
        metrics = evaluate_predictions(models, threshold_split=threshold_split, n_resamples=n_resamples, seed=seed)
        write_text_atomic(out / METRICS, metrics.to_csv(index=False))
        if len(models) > 1:
            write_text_atomic(out / DELONG, delong_table(models).to_csv(index=False))
        write_text_atomic(out / CALIBRATION, calibration_table(models).to_csv(index=False))
        for split in metrics.loc[metrics["ci_method"] != "none", "cohort"].unique():  # one-class splits: no curve
            plot_roc(models, split, out / roc_figure(split))
            plot_calibration(models, split, out / f"calibration_{split}.png")
            plot_decision_curve(models, split, out / f"decision_curve_{split}.png")
        return {"models": list(models), "cohorts": [str(c) for c in metrics["cohort"].unique()],
                "missing_probabilities": missing,
                "paired_subset": [{k: d[k] for k in ("model_a", "model_b", "a_only", "b_only", "both")}
                                  for d in differences]}

    outcome = stage.run(work)
    return outcome, pd.read_csv(out / METRICS)


def calibration_table(models: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Brier score, calibration intercept and slope (95% Wald CIs, as R's CalibrationCurves), Emax and Eavg per
    model and split (splits with both classes)."""
    from osteomet.evaluation.calibration import calibration

    rows = []
    for name, table in models.items():
        data = table.dropna(subset=["prob", "label"])
        for split, part in data.groupby("split", sort=False):
            if part["label"].nunique() == 2 and part["prob"].between(0, 1).all():
                c = calibration(part["label"], part["prob"])
                rows.append({"model": name, "cohort": split, "n": c.n, "events": c.events, "brier": c.brier,
                             "calibration_intercept": c.intercept, "calibration_intercept_low": c.intercept_low,
                             "calibration_intercept_high": c.intercept_high, "calibration_slope": c.slope,
                             "calibration_slope_low": c.slope_low, "calibration_slope_high": c.slope_high,
                             "emax": c.emax, "eavg": c.eavg})
    return pd.DataFrame(rows, columns=["model", "cohort", "n", "events", "brier", "calibration_intercept",
                                       "calibration_intercept_low", "calibration_intercept_high", "calibration_slope",
                                       "calibration_slope_low", "calibration_slope_high", "emax", "eavg"])


def write_cohort_table(manifest: str | Path, out: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """The study's cohort characteristics by BM status as CSV; returns the table and the fitting notes."""
    from osteomet.evaluation.cohort import write_characteristics_csv
    from osteomet.evaluation.study_characteristics import study_characteristics

    refuse_overwriting_inputs([out], [manifest])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = study_characteristics(read_manifest(manifest, check_files=False).to_frame())
    write_characteristics_csv(table, out)
    notes = sorted({str(w.message) for w in caught if "osteomet" in str(w.filename) or "fit" in str(w.message)})
    return table, notes


def significant_variables(table: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """Variables of the cohort table with BH-adjusted p below ``alpha``."""
    tested = table.dropna(subset=["p_adj"])
    return sorted(tested.loc[tested["p_adj"].astype(float) < alpha, "variable"].unique().tolist())


def _read_table(path: Path) -> pd.DataFrame:
    from osteomet.errors import MissingInputError

    if not path.is_file():
        raise MissingInputError(f"{path}: file not found")
    try:
        return pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path, sep=None,
                                                                                          engine="python")
    except Exception as exc:  # pandas raises many types for unreadable files
        raise InputError(f"{path}: cannot be read as a table ({exc})") from exc


def _column(table: pd.DataFrame, path: Path, name: str, what: str) -> pd.Series:
    if name not in table.columns:
        raise InputError(f"{path}: no {what} column {name!r} (columns: {', '.join(map(str, table.columns))})")
    values = pd.to_numeric(table[name], errors="coerce")
    bad = values.isna()
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(f"{path}: column {name!r} must be numeric with no missing values; row {row + 2} has "
                         f"{as_shown(table[name].iloc[row])} ({int(bad.sum())} such row(s))")
    return values


def roc_from_file(path: str | Path, truth: str, scores: Sequence[str], *, paired: bool = True,
                  n_resamples: int = 2000, seed: int = 0) -> dict:
    """ROC statistics of one or two score columns of a table against its 0/1 truth column (pROC's numbers)."""
    from osteomet.evaluation.errors import EvaluationInputError
    from osteomet.evaluation.roc_summary import roc_summary

    path = Path(path)
    if not 1 <= len(scores) <= 2:
        raise InputError(f"give one or two --score columns, got {len(scores)}")
    if len(set(scores)) != len(scores):
        raise InputError(f"the two --score columns are the same ({scores[0]!r})")
    table = _read_table(path)
    y = _column(table, path, truth, "truth")
    bad = ~y.isin([0, 1])
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(f"{path}: truth column {truth!r} must be 0 or 1; row {row + 2} has {as_shown(table[truth].iloc[row])}")
    values = {name: _column(table, path, name, "score") for name in scores}
    try:
        return roc_summary(y.to_numpy(), {k: v.to_numpy() for k, v in values.items()}, paired=paired,
                           n_resamples=n_resamples, seed=seed)
    except EvaluationInputError as exc:
        raise InputError(f"{path}: {exc}") from None


def evaluate_segmentation_folders(pred: str | Path, truth: str | Path, out: str | Path) -> pd.DataFrame:
    """Per-case Dice, precision, recall and HD95 (mm) of predicted masks against reference masks, by file name."""
    import SimpleITK as sitk

    from osteomet.data.formats import VOLUME_SUFFIXES
    from osteomet.data.label_masks import read_mask
    from osteomet.errors import MissingInputError
    from osteomet.evaluation.segmentation import overlap
    from osteomet.evaluation.surface import hausdorff_distance
    from osteomet.utils.files import full_suffix, write_text_atomic

    pred, truth, out = Path(pred), Path(truth), Path(out)

    def cases(folder: Path) -> dict[str, Path]:
        if not folder.is_dir():
            raise MissingInputError(f"{folder}: folder not found")
        found = {}
        for path in sorted(folder.iterdir()):
            suffix = full_suffix(path)
            if path.is_file() and suffix in VOLUME_SUFFIXES and not path.name.startswith("."):
                found[path.name[: len(path.name) - len(suffix)]] = path
        if not found:
            raise InputError(f"{folder}: no mask files ({', '.join(VOLUME_SUFFIXES)})")
        return found

    predicted, reference = cases(pred), cases(truth)
    refuse_overwriting_inputs([out], [*predicted.values(), *reference.values()])
    missing = sorted(set(reference) - set(predicted))
    extra = sorted(set(predicted) - set(reference))
    if missing or extra:
        parts = ([f"no prediction for {', '.join(missing[:10])}"] if missing else []) + \
                ([f"no reference for {', '.join(extra[:10])}"] if extra else [])
        raise InputError(f"{pred} vs {truth}: cases are matched by file name; " + "; ".join(parts))
    rows = []
    for case, ref_path in reference.items():
        ref = read_mask(ref_path, allow_empty=True)
        mask = read_mask(predicted[case], reference=ref, reference_name=ref_path, allow_empty=True)
        p, r = sitk.GetArrayViewFromImage(mask), sitk.GetArrayViewFromImage(ref)
        spacing = tuple(reversed(ref.GetSpacing()))  # array order (z, y, x)
        rows.append({"case": case, **overlap(p, r), "hd95_mm": hausdorff_distance(p, r, spacing),
                     "pred_voxels": int(np.count_nonzero(p)), "ref_voxels": int(np.count_nonzero(r))})
    table = pd.DataFrame(rows)
    write_text_atomic(out, table.to_csv(index=False))
    return table
