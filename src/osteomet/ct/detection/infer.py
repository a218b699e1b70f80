"""Detection inference: slice probabilities (max over bone tiles, averaged with ``slice_smoothing`` neighbouring
slices when the run set it), patient scores (max over slices), metrics.

Outputs per architecture in ``OUT/<architecture>/``: ``slice_scores.csv`` (patient_id, slice,
split, label, probability, predicted), ``patient_scores.csv`` (patient score = the maximum
slice probability; a patient is positive exactly when one of its slices is),
``metrics.csv`` (level slice/patient, split, n, n_positive, then precision, recall, F1,
AUC and the other threshold metrics with percentile-bootstrap 95% CIs from
:mod:`osteomet.evaluation.bootstrap`), and under ``gradcam/`` the Grad-CAM overlays, ``index.csv``
(every slice called positive, with the distance from the map's maximum to the lesion) and
``localisation.json`` (the share of true positives within 10 mm). ``OUT/comparison.csv`` and
``OUT/boxplot_patient_scores.png`` put the detectors side by side
(:mod:`osteomet.ct.detection.compare`).

The threshold is the one chosen on the validation slices at training time, never re-tuned.
Slice-level CIs come from a cluster bootstrap over patients (slices of one patient are
correlated, so resampling slices as independent would give intervals that are too narrow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from osteomet.ct.detection.compare import write_comparison
from osteomet.ct.detection.config import DetectionConfig
from osteomet.ct.detection.gradcam import localisation_summary, write_gradcam_overlays
from osteomet.ct.detection.train import bone_tiles, load_detector, slice_probabilities
from osteomet.ct.slices import run as slice_run
from osteomet.data.manifest import Manifest
from osteomet.layout import GRADCAM_LOCALISATION, INDEX, METRICS, PATIENT_SCORES, SLICE_SCORES
from osteomet.utils.files import write_json_atomic, write_text_atomic
from osteomet.utils.torch import pick_device


def run_config(run_dir: str | Path) -> DetectionConfig:
    """The settings the detection run was trained with."""
    return slice_run.read_run_config(run_dir, DetectionConfig)


def trained_architectures(run_dir: str | Path) -> list[str]:
    """The run's classifiers that finished training."""
    return slice_run.trained_architectures(run_dir, DetectionConfig, "detector")


def patient_scores(scores: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Patient score = max slice probability; label = any lesion slice (NaN when unlabelled)."""
    grouped = scores.groupby("patient_id", sort=False)
    table = grouped.agg(split=("split", "first"), label=("label", "max"), score=("probability", "max"),
                        n_slices=("slice", "size")).reset_index()
    table["predicted"] = (table["score"] >= threshold).astype(int)
    return table


def detection_metrics(scores: pd.DataFrame, patients: pd.DataFrame, threshold: float, *,
                      n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Bootstrap metrics per level and split (splits where both classes are present).

    Slice-level intervals come from the cluster bootstrap over patients (slices of one patient
    are correlated; resampling them as independent would make the intervals too narrow).
    """
    from osteomet.evaluation.bootstrap import bootstrap_threshold_metrics

    frames = []
    for level, table, score in (("slice", scores, "probability"), ("patient", patients, "score")):
        labelled = table.dropna(subset=["label"])
        for split, part in labelled.groupby("split", sort=False):
            y = part["label"].astype(int).to_numpy()
            if y.min() == y.max():
                continue
            groups = part["patient_id"].to_numpy() if level == "slice" else None
            metrics = bootstrap_threshold_metrics(y, part[score].to_numpy(float), threshold,
                                                  n_resamples=n_resamples, seed=seed, groups=groups)
            metrics.insert(0, "n_positive", int(y.sum()))
            metrics.insert(0, "n", int(y.size))
            metrics.insert(0, "split", split)
            metrics.insert(0, "level", level)
            metrics["threshold"] = threshold
            frames.append(metrics)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["level", "split", "n", "n_positive", "metric", "estimate", "ci_low", "ci_high", "threshold"])


def predict_detection(manifest: Manifest, run_dir: str | Path, out: str | Path, *, cache: str | Path | None = None,
                      architectures: list[str] | None = None, device: str | None = None, gradcam: bool = True,
                      n_resamples: int = 1000, on_cached: Callable[[], None] | None = None,
                      progress: Callable[[], None] | None = None) -> dict[str, pd.DataFrame]:
    """Score every patient of ``manifest`` with each trained architecture; return the metrics per architecture.

    ``on_cached`` is called per patient cached, ``progress`` per patient and architecture scored.
    """
    run_dir, out = Path(run_dir), Path(out)
    config = run_config(run_dir)
    architectures = architectures or trained_architectures(run_dir)
    root, slices, patients = slice_run.cache_for_prediction(manifest, run_dir, out, config.slices, cache=cache,
                                                            on_cached=on_cached)
    slices = slices.merge(patients[["patient_id", "split"]], on="patient_id")
    inputs = bone_tiles(root, config)
    dev = pick_device(device)
    results, patient_tables, thresholds = {}, {}, {}
    for architecture in architectures:
        model, threshold = load_detector(run_dir, architecture, config, dev)
        parts = []
        for _, part in slices.groupby("patient_id", sort=False):
            part = part.copy()
            part["probability"] = slice_probabilities(model, inputs, part, config.batch_size, dev,
                                                      config.slice_smoothing)
            parts.append(part)
            if progress:
                progress()
        table = pd.concat(parts, ignore_index=True)
        table["predicted"] = (table["probability"] >= threshold).astype(int)
        per_patient = patient_scores(table, threshold)
        metrics = detection_metrics(table, per_patient, threshold, n_resamples=n_resamples, seed=config.seed)
        folder = out / architecture
        write_text_atomic(folder / SLICE_SCORES, table.to_csv(index=False))
        write_text_atomic(folder / PATIENT_SCORES, per_patient.to_csv(index=False))
        write_text_atomic(folder / METRICS, metrics.to_csv(index=False))
        if gradcam and config.gradcam_max > 0:
            focus = table[table["split"] == "test"] if (table["split"] == "test").any() else table
            written = write_gradcam_overlays(model, architecture, inputs, focus, threshold, folder / "gradcam",
                                             config.gradcam_max, dev)
            write_text_atomic(folder / "gradcam" / INDEX, written.to_csv(index=False))
            write_json_atomic(folder / "gradcam" / GRADCAM_LOCALISATION, localisation_summary(written))
        results[architecture] = metrics
        patient_tables[architecture], thresholds[architecture] = per_patient, threshold
    write_comparison(results, patient_tables, thresholds, out)
    return results
