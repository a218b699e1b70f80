"""The CT patient-rules stage: each detector's and segmenter's patient-level rule, chosen on validation, and its
patient-level metrics per split (:mod:`osteomet.ct.patient_rules` says which rules and why).

Reads the detectors' ``<detection predictions>/<architecture>/slice_scores.csv`` (with each detector's slice
threshold, ``<detection model>/<architecture>/threshold.json``, for the fallback rule and the old rule's numbers)
and the segmenters' ``<segmentation predictions>/<architecture>/masks/<patient_id>.nii.gz`` against the
manifest's ``lesion_mask`` (a segmenter's rule may ask a detector's slice scores to confirm its lesions). Writes into its folder (``ct/rules`` of a run):

* ``rules.json``: per detector and segmenter the rule, whether validation chose it (and on what), its validation
  numbers and every candidate's; ``predict ct`` applies these to a new patient;
* ``patient_metrics.csv``: per task, model, rule (``chosen``; ``old``: the maximum slice probability at the slice
  threshold, or every predicted lesion) and split: patient_sensitivity, patient_specificity, and for segmenters
  fp_lesions_per_lesion_free_patient, fp_lesions_per_patient and lesion_sensitivity, each with estimate, ci_low,
  ci_high, numerator, denominator, n_patients, ci_method;
* ``patient_calls.csv``: every patient's call under the chosen rule (score or lesions counted).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from osteomet.errors import InputError, MissingInputError
from osteomet.layout import METRICS, SLICE_SCORES, THRESHOLD, RunLayout
from osteomet.pipeline.inputs import manifest_inputs
from osteomet.stage import Stage, StageOutcome
from osteomet.utils.files import read_json, write_json_atomic, write_text_atomic

STAGE_NAME = "ct-patient-rules"
RULES = "rules.json"
PATIENT_METRICS = "patient_metrics.csv"
PATIENT_CALLS = "patient_calls.csv"
OUTPUTS = (RULES, PATIENT_METRICS, PATIENT_CALLS)


def rules_folder(layout: RunLayout) -> Path:
    """The run's patient-rules stage folder (``ct/rules``)."""
    return layout.ct_rules


def read_rules(path: Path) -> dict[str, dict[str, Any]]:
    """``rules.json`` as {"detectors": {arch: RuleChoice}, "segmenters": {arch: RuleChoice}}; an unreadable file is
    an :class:`InputError` naming it."""
    from osteomet.ct.patient_rules import RuleChoice

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return {task: {arch: RuleChoice.from_dict(entry) for arch, entry in (data.get(task) or {}).items()}
                for task in ("detectors", "segmenters")}
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise InputError(f"{path}: patient rules unreadable ({exc}); rerun `osteomet run ct`") from None
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def slice_threshold(model: Path | None, predictions: Path, architecture: str) -> float:
    """The detector's validation slice threshold: ``threshold.json`` beside its weights, else its metrics.csv."""
    if model is not None:
        record = read_json(model / architecture / THRESHOLD)
        if record and record.get("threshold") is not None:
            return float(record["threshold"])
    metrics = predictions / architecture / METRICS
    if metrics.is_file():
        table = pd.read_csv(metrics)
        if "threshold" in table and table["threshold"].notna().any():
            return float(table["threshold"].dropna().iloc[0])
    return math.nan


def _smoothing(model: Path | None) -> int:
    """Neighbouring slices a detector averaged into each slice (its recorded ``slice_smoothing``; 0 if unknown)."""
    from osteomet.config import recorded_settings

    settings = recorded_settings(model) if model is not None else None
    try:
        return int((settings or {}).get("slice_smoothing") or 0)
    except (TypeError, ValueError):
        return 0


def detector_tables(predictions: Path | None) -> dict[str, Path]:
    """Each detector's slice-score table in a detection predictions folder."""
    if predictions is None or not Path(predictions).is_dir():
        return {}
    return {p.parent.name: p for p in sorted(Path(predictions).glob(f"*/{SLICE_SCORES}"))}


def segmenter_mask_folders(predictions: Path | None) -> dict[str, Path]:
    """Each segmenter's predicted masks (``<architecture>/masks``) in a segmentation predictions folder."""
    if predictions is None or not Path(predictions).is_dir():
        return {}
    return {p.parent.name: p for p in sorted(Path(predictions).glob("*/masks")) if p.is_dir()}


def read_patient_lesions(cohort: Any, masks: Path, slice_tables: dict[str, pd.DataFrame] | None = None) -> list:
    """Every manifest patient's predicted lesions (``masks/<patient_id>.nii.gz``) and reference lesions; with
    detectors' slice-score tables, each lesion's highest slice probability per detector that scored the patient."""
    import numpy as np
    import SimpleITK as sitk

    from osteomet.ct.lesions.labels import label_lesions
    from osteomet.ct.patient_rules import PatientLesions, lesion_detector_probability, lesion_slices, lesion_volumes
    from osteomet.data.label_masks import read_mask

    missing = [r.patient_id for r in cohort if not (masks / f"{r.patient_id}.nii.gz").is_file()]
    if missing:
        raise MissingInputError(f"{masks}: no predicted mask <patient_id>.nii.gz for {len(missing)} patient(s): "
                                + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    by_patient = {name: dict(tuple(table.groupby("patient_id", sort=False)))  # read with patient_id as text
                  for name, table in (slice_tables or {}).items()}
    patients = []
    for record in cohort:
        path = masks / f"{record.patient_id}.nii.gz"
        image = read_mask(path, allow_empty=True)
        predicted = label_lesions(sitk.GetArrayViewFromImage(image) > 0)
        voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0  # as lesions.csv (ct/lesions/labels.py) has it
        reference = None
        if record.lesion_mask is not None:
            ref = read_mask(record.lesion_mask, reference=image, reference_name=f"patient {record.patient_id!r}: {path}",
                            allow_empty=True)
            reference = label_lesions(sitk.GetArrayViewFromImage(ref) > 0)
        scored = {name: rows[str(record.patient_id)] for name, rows in by_patient.items()
                  if str(record.patient_id) in rows}
        slices = lesion_slices(predicted, image) if scored and predicted.n else []
        probability = {name: lesion_detector_probability(slices, rows) for name, rows in scored.items()}
        patients.append(PatientLesions(record.patient_id, record.split, predicted, lesion_volumes(predicted, voxel_ml),
                                       reference, probability))
    return patients


def _tagged(frame: pd.DataFrame, **columns: Any) -> pd.DataFrame:
    frame = frame.copy()
    for i, (name, value) in enumerate(columns.items()):
        frame.insert(i, name, value)
    return frame


def choose_ct_patient_rules(study_manifest: Path, detection_predictions: Path | None,
                            segmentation_predictions: Path | None, out: Path, *, detection_model: Path | None = None,
                            settings: Any = None) -> StageOutcome:
    """Choose every detector's and segmenter's patient rule on validation and write rules, metrics and calls.

    ``detection_model``: the detectors' training folder (their slice thresholds and slice smoothing);
    ``settings``: a :class:`~osteomet.ct.patient_rules.PatientRuleSettings` (defaults: the issue's targets).
    """
    from osteomet.ct.patient_rules import (
        DetectorRule,
        PatientRuleSettings,
        SegmenterRule,
        apply_detector_rule,
        check_slice_table,
        choose_detector_rule,
        choose_segmenter_rule,
        lesion_outcomes,
        patient_metrics,
    )
    from osteomet.data.manifest import read_manifest

    settings = settings or PatientRuleSettings()
    cohort = read_manifest(study_manifest, kind="ct")
    detectors = detector_tables(detection_predictions)
    segmenters = segmenter_mask_folders(segmentation_predictions)
    if not detectors and not segmenters:
        raise MissingInputError(f"no detector slice scores (<architecture>/{SLICE_SCORES}) in "
                                f"{detection_predictions} and no segmenter masks (<architecture>/masks) in "
                                f"{segmentation_predictions}: predict with the CT models first")
    thresholds = [detection_model / a / THRESHOLD for a in detectors if detection_model is not None
                  and (detection_model / a / THRESHOLD).is_file()]
    stage = Stage(STAGE_NAME, out, settings=settings,
                  inputs={**manifest_inputs(cohort, study_manifest), "detection": detection_predictions,
                          "segmentation": segmentation_predictions, "thresholds": thresholds,
                          "detector_settings": (detection_model / "settings.yaml") if detection_model is not None
                          and (detection_model / "settings.yaml").is_file() else None},
                  outputs=OUTPUTS)

    def work() -> dict[str, Any]:
        rules: dict[str, Any] = {"settings": settings.model_dump(mode="json"), "detectors": {}, "segmenters": {}}
        metrics, calls = [], []
        tables = {}
        for architecture, path in detectors.items():
            slices = tables[architecture] = pd.read_csv(path, dtype={"patient_id": str})
            check_slice_table(slices, str(path))
            threshold = slice_threshold(detection_model, Path(detection_predictions), architecture)
            choice = choose_detector_rule(slices, slice_threshold=threshold, settings=settings,
                                          smoothing=_smoothing(detection_model))
            rules["detectors"][architecture] = {**choice.to_dict(), "slice_threshold": threshold
                                                if math.isfinite(threshold) else None}
            chosen = apply_detector_rule(choice.rule, slices)
            calls.append(_tagged(chosen, task="detector", model=architecture))
            metrics.append(_tagged(patient_metrics(chosen, settings), task="detector", model=architecture,
                                   rule="chosen", description=choice.rule.describe()))
            if math.isfinite(threshold):
                old = DetectorRule("top_k", 1, threshold)
                metrics.append(_tagged(patient_metrics(apply_detector_rule(old, slices), settings), task="detector",
                                       model=architecture, rule="old", description=old.describe()))
        for architecture, masks in segmenters.items():
            patients = read_patient_lesions(cohort, masks, tables)  # the detectors may confirm lesions
            choice = choose_segmenter_rule(patients, settings)
            rules["segmenters"][architecture] = choice.to_dict()
            chosen = lesion_outcomes(patients, choice.rule, settings)
            calls.append(_tagged(chosen, task="segmenter", model=architecture))
            metrics.append(_tagged(patient_metrics(chosen, settings), task="segmenter", model=architecture,
                                   rule="chosen", description=choice.rule.describe()))
            old = SegmenterRule(0.0)
            if choice.rule != old:
                metrics.append(_tagged(patient_metrics(lesion_outcomes(patients, old, settings), settings),
                                       task="segmenter", model=architecture, rule="old", description=old.describe()))
        write_json_atomic(out / RULES, rules)
        write_text_atomic(out / PATIENT_METRICS, pd.concat(metrics, ignore_index=True).to_csv(index=False))
        write_text_atomic(out / PATIENT_CALLS, pd.concat(calls, ignore_index=True).to_csv(index=False))
        return {task: {a: {"rule": entry["description"], "chosen_on_data": entry["chosen_on_data"]}
                       for a, entry in rules[task].items()} for task in ("detectors", "segmenters")}

    return stage.run(work)


__all__ = ["OUTPUTS", "PATIENT_CALLS", "PATIENT_METRICS", "RULES", "choose_ct_patient_rules",
           "read_rules", "rules_folder"]
