"""``osteomet predict ct``: one new CT through a finished CT study's models.

The *bundle* is the run directory of ``osteomet run ct``: the slice detectors (each with the
decision threshold it fixed on its validation slices) and the lesion segmenters (each with the
post-processing it chose on validation), as pickle-free checkpoints. The new CT goes through the
same functions as the study's patients: its slices are cached, every detector scores them and
flags the slices at or above its threshold, the chosen segmenter (default: the one with the best
validation Dice) draws the lesion mask in the CT's own geometry, and the per-lesion analysis
describes each lesion (volume, bone and bone group from a TotalSegmentator map when one is given,
weight-bearing, diffuse or focal, cluster, mean HU).

The patient-level call: where the run chose patient rules on its validation patients
(``ct/rules/rules.json``, :mod:`osteomet.pipeline.ct_rules`), each detector calls the patient
positive by its rule (e.g. at least 2 consecutive slices at or above a threshold) and the segmenter
by its (a lesion of at least its minimum volume, where validation chose so on a slice a detector
scores at least a probability: ``detector_probability`` in ``lesions.csv``), and ``result.json``/``result.md`` give each call
with the rule and whether validation chose it. A run made before the rules has no ``rules.json``:
the result says so, and the calls are the old ones (any flagged slice, any drawn lesion).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from osteomet.errors import InputError, MissingInputError
from osteomet.layout import CHECKPOINTS, HISTORY, LESIONS, MANIFEST, RESULT, SLICE_SCORES, RunLayout, open_run_dir
from osteomet.utils.files import write_json_atomic, write_text_atomic


def trained(model_dir: Path, task: str) -> list[str]:
    """The task's trained architectures in a `run ct` folder (none when the study left the task out)."""
    if not model_dir.is_dir():
        return []
    if task == "detection":
        from osteomet.ct.detection.infer import trained_architectures
    else:
        from osteomet.ct.segmentation.infer import trained_architectures
    return trained_architectures(model_dir)


def best_segmenter(model_dir: Path) -> str:
    """The segmenter with the highest validation Dice of its kept epoch (ties: alphabetical)."""
    scores = {}
    for architecture in trained(model_dir, "segmentation"):
        history = model_dir / architecture / HISTORY
        table = pd.read_csv(history) if history.is_file() else pd.DataFrame()
        scores[architecture] = float(table["val_dice"].dropna().iloc[-1]) if "val_dice" in table and \
            table["val_dice"].notna().any() else float("-inf")
    if not scores:
        raise MissingInputError(f"{model_dir}: no trained segmenter (no <architecture>/{CHECKPOINTS}/best.pt); run "
                                f"`osteomet run ct` first")
    return max(sorted(scores), key=lambda a: scores[a])


def predict_ct(run: str | Path, out: str | Path, *, ct: str | Path, bones: str | Path | None = None,
               patient_id: str = "patient", segmenter: str | None = None, series_uid: str | None = None,
               device: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Slice scores and flagged slices of every detector, the lesion mask and the per-lesion table of one CT, and each
    model's patient-level call (by the run's patient rules where it has them)."""
    from osteomet.ct.detection.infer import predict_detection
    from osteomet.ct.lesions.cohort import LesionSettings
    from osteomet.ct.segmentation.infer import predict_segmentation
    from osteomet.data.manifest import read_manifest, write_manifest
    from osteomet.pipeline.ct_lesions import analyse_lesion_files
    from osteomet.stage import refuse_overwriting_inputs

    layout = RunLayout(Path(run))
    detectors_dir, segmenters_dir = layout.ct_detection / "model", layout.ct_segmentation / "model"
    detectors, segmenters = trained(detectors_dir, "detection"), trained(segmenters_dir, "segmentation")
    if not detectors and not segmenters:
        raise MissingInputError(f"{run}: no trained CT detector or segmenter (ct/detection/model, "
                                f"ct/segmentation/model); give the run directory of `osteomet run ct`")
    if segmenter is not None and segmenter not in segmenters:
        raise InputError(f"--segmenter {segmenter}: not trained in {segmenters_dir} (trained: "
                         f"{', '.join(segmenters) or 'none'})")
    rules, rules_record = patient_rules_of(layout)  # read first: an unreadable rules.json stops before any work
    ct, bones = Path(ct), Path(bones) if bones is not None else None
    for name, path in (("--ct", ct), ("--bones", bones)):
        if path is not None and not path.exists():
            raise MissingInputError(f"{name} {path}: no such file or DICOM folder")
    out = Path(out)
    refuse_overwriting_inputs([out], [p for p in (ct, bones, layout.root) if p is not None])
    open_run_dir(out, kind="predict-ct")
    work = out / "work"
    work.mkdir(exist_ok=True)
    row = {"patient_id": patient_id, "ct": str(ct.resolve()), "bone_map": str(bones.resolve()) if bones else None,
           "ct_series_uid": series_uid}
    manifest = write_manifest(pd.DataFrame([row]), work / MANIFEST, kind="ct", overwrite=True)
    cohort = read_manifest(manifest, kind="ct")
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    result: dict[str, Any] = {"patient_id": patient_id, "ct": str(ct), "bone_map": str(bones) if bones else None,
                              **rules_record}
    if result.get("patient_rules_note"):
        log(result["patient_rules_note"])
    slice_tables: dict[str, pd.DataFrame] = {}
    lesions: pd.DataFrame | None = None

    if detectors:
        tick = time.perf_counter()
        # Grad-CAM of the most confident flagged slices (slice | tile | heat): what a reader checks first
        predict_detection(cohort, detectors_dir, out / "detection", device=device, gradcam=True, n_resamples=100)
        flagged, pictures = {}, {}
        for architecture in detectors:
            scores = slice_tables[architecture] = pd.read_csv(out / "detection" / architecture / SLICE_SCORES)
            flagged[architecture] = sorted(int(s) for s in scores.loc[scores["predicted"] == 1, "slice"])
            pictures[architecture] = sorted(str(p) for p in (out / "detection" / architecture / "gradcam" /
                                                             "flagged").glob("*.png"))
        result["flagged_slices"] = flagged
        result["flagged_overlays"] = pictures
        seconds["detection"] = round(time.perf_counter() - tick, 2)
        log(f"detection: {', '.join(f'{a} {len(s)} slice(s)' for a, s in flagged.items())} flagged "
            f"({seconds['detection']:.1f} s)")
    if segmenters:
        tick = time.perf_counter()
        chosen = segmenter or best_segmenter(segmenters_dir)
        predict_segmentation(cohort, segmenters_dir, out / "segmentation", architectures=[chosen], device=device)
        mask = out / "segmentation" / chosen / "masks" / f"{patient_id}.nii.gz"
        _, analysis = analyse_lesion_files(mask, bones, out / "lesions", settings=LesionSettings(), ct=ct,
                                           patient_id=patient_id)
        lesions = pd.read_csv(out / "lesions" / LESIONS) if (out / "lesions" / LESIONS).is_file() else pd.DataFrame()
        detector = segmenter_rule_detector(rules, chosen)
        if detector is not None and len(lesions) and detector in slice_tables:
            lesions = with_detector_probability(lesions, mask, slice_tables[detector])
            write_text_atomic(out / "lesions" / LESIONS, lesions.to_csv(index=False))
        if len(lesions):
            import SimpleITK as sitk

            from osteomet.ct.lesions.overlays import lesion_overlays
            from osteomet.data.images import read_image

            result["overlays"] = [str(p) for p in lesion_overlays(read_image(ct, series_uid=series_uid),
                                                                  sitk.ReadImage(str(mask)), lesions,
                                                                  out / "overlays")]
        from osteomet.data.dicom_seg import seg_beside

        seg_file, result["dicom_seg_note"] = seg_beside(mask, ct, out / "lesions.seg.dcm", label="bone lesion",
                                                         series_uid=series_uid)
        result["dicom_seg"] = str(seg_file) if seg_file else None
        log(result["dicom_seg_note"])
        result.update(segmenter=chosen, mask=str(mask), lesions=int(len(lesions)),
                      lesion_volume_ml=round(float(lesions["volume_ml"].sum()), 3) if "volume_ml" in lesions else 0.0,
                      bone_identity=bones is not None)
        seconds["segmentation"] = round(time.perf_counter() - tick, 2)
        log(f"segmentation ({chosen}): {len(lesions)} lesion(s) ({seconds['segmentation']:.1f} s)"
            + ("" if bones else "; no bone map given, so bone identity is unavailable"))
    result["patient_calls"] = patient_calls(rules, slice_tables, result.get("segmenter"), lesions, patient_id)
    for task, calls in result["patient_calls"].items():
        for architecture, call in calls.items():
            log(f"patient call, {task[:-1]} {architecture}: {'positive' if call['positive'] else 'negative'} "
                f"({call['rule']})")
    seconds["total"] = round(time.perf_counter() - started, 2)
    result["seconds"] = seconds
    write_json_atomic(out / RESULT, result)
    write_text_atomic(out / "result.md", _markdown(result, out))
    return result


def segmenter_rule_detector(rules: dict[str, dict[str, Any]] | None, segmenter: str) -> str | None:
    """The detector whose slice probabilities the segmenter's patient rule asks of each lesion (None: volume only)."""
    choice = (rules or {}).get("segmenters", {}).get(segmenter)
    return choice.rule.detector if choice is not None else None


def with_detector_probability(lesions: pd.DataFrame, mask: Path, scores: pd.DataFrame) -> pd.DataFrame:
    """``lesions`` (``lesions.csv`` of ``mask``) with each lesion's highest slice probability from a detector's slice
    scores, in the column the segmenter rule reads."""
    import SimpleITK as sitk

    from osteomet.ct.lesions.labels import label_lesions
    from osteomet.ct.patient_rules import DETECTOR_COLUMN, lesion_detector_probability, lesion_slices

    image = sitk.ReadImage(str(mask))
    labels = label_lesions(sitk.GetArrayViewFromImage(image) != 0)  # as the analysis labels: ids 1..n in order
    if labels.n != len(lesions):
        raise InputError(f"{mask}: {labels.n} lesion(s) in the mask but {len(lesions)} in its lesion table")
    probability = lesion_detector_probability(lesion_slices(labels, image), scores)
    return lesions.assign(**{DETECTOR_COLUMN: probability[lesions["lesion_id"].astype(int).to_numpy() - 1]})


#: What a run without ``rules.json`` (made before patient rules existed) calls a patient on.
OLD_RULES = {"detector": "any slice at or above the detector's validation slice threshold",
             "segmenter": "any predicted lesion"}


def patient_rules_of(layout: RunLayout) -> tuple[dict[str, dict[str, Any]] | None, dict[str, Any]]:
    """The run's patient rules (``ct/rules/rules.json``) and what ``result.json`` records of them; no rules, and a
    note saying so, for a run made before they existed."""
    from osteomet.pipeline.ct_rules import RULES, read_rules, rules_folder

    path = rules_folder(layout) / RULES
    if not path.is_file():
        return None, {"patient_rules": None, "patient_rules_note": (
            f"this run has no patient-level rules ({path} is absent: a run made before they existed); the patient "
            f"calls are the old ones: {OLD_RULES['detector']} (detectors), {OLD_RULES['segmenter']} (segmenter)")}
    return read_rules(path), {"patient_rules": str(path)}


def patient_calls(rules: dict[str, dict[str, Any]] | None, slice_tables: dict[str, pd.DataFrame],
                  segmenter: str | None, lesions: pd.DataFrame | None, patient_id: str) -> dict[str, dict[str, Any]]:
    """Each detector's and the segmenter's call on the patient, with the rule used and whether validation chose it.

    Without a rule for a model (``rules`` None: an older run) the old call stands: any flagged slice
    (``predicted`` in the slice table), any drawn lesion.
    """
    from osteomet.ct.patient_rules import apply_detector_rule, apply_segmenter_rule

    calls: dict[str, dict[str, Any]] = {"detectors": {}, "segmenters": {}}
    for architecture, scores in slice_tables.items():
        choice = (rules or {}).get("detectors", {}).get(architecture)
        if choice is None:
            calls["detectors"][architecture] = {"positive": bool((scores["predicted"] == 1).any()),
                                                "rule": OLD_RULES["detector"], "chosen_on_data": False,
                                                "basis": "no patient rule recorded for this detector"}
            continue
        called = apply_detector_rule(choice.rule, scores).iloc[0]
        calls["detectors"][architecture] = {"positive": bool(called["predicted"]), "score": float(called["score"]),
                                            "rule": choice.rule.describe(), "chosen_on_data": choice.chosen_on_data,
                                            "basis": choice.basis}
    if segmenter is not None:
        lesions = lesions if lesions is not None else pd.DataFrame()
        choice = (rules or {}).get("segmenters", {}).get(segmenter)
        if choice is None:
            calls["segmenters"][segmenter] = {"positive": bool(len(lesions)), "lesions_counted": int(len(lesions)),
                                              "lesions_below_rule": 0, "rule": OLD_RULES["segmenter"],
                                              "chosen_on_data": False,
                                              "basis": "no patient rule recorded for this segmenter"}
        else:
            table = lesions if "patient_id" in lesions else lesions.assign(patient_id=patient_id)
            called = apply_segmenter_rule(choice.rule, table, [patient_id]).iloc[0]
            calls["segmenters"][segmenter] = {
                "positive": bool(called["predicted"]), "lesions_counted": int(called["n_kept"]),
                "lesions_below_rule": int(called["n_lesions"] - called["n_kept"]), "rule": choice.rule.describe(),
                "min_lesion_ml": choice.rule.min_lesion_ml, "detector": choice.rule.detector,
                "min_detector_probability": choice.rule.min_detector_probability,
                "chosen_on_data": choice.chosen_on_data,
                "basis": choice.basis}
    return calls


def _call_lines(result: dict[str, Any]) -> list[str]:
    """The patient-level calls of ``result.md``."""
    lines = ["", "## Patient-level call", ""]
    if result.get("patient_rules_note"):
        lines += [f"- {result['patient_rules_note']}"]
    for task, label in (("detectors", "detector"), ("segmenters", "segmenter")):
        for architecture, call in (result.get("patient_calls") or {}).get(task, {}).items():
            how = "rule chosen on validation" if call["chosen_on_data"] else f"rule not chosen on data: {call['basis']}"
            extra = ""
            if label == "segmenter" and call.get("lesions_below_rule"):
                extra = f"; {call['lesions_below_rule']} lesion(s) not counted by the rule"
            lines.append(f"- {label} {architecture}: **{'positive' if call['positive'] else 'negative'}** "
                         f"({call['rule']}{extra}; {how})")
    return lines + ["", "## Slices and lesions", ""]


def _markdown(result: dict[str, Any], out: Path) -> str:
    from osteomet.ct.patient_rules import DETECTOR_COLUMN, SegmenterRule

    lines = [f"# CT of {result['patient_id']}", *_call_lines(result)]
    for architecture, slices in (result.get("flagged_slices") or {}).items():
        lines.append(f"- detector {architecture}: {len(slices)} slice(s) flagged at its slice threshold"
                     + (f" ({', '.join(map(str, slices[:20]))}{' ...' if len(slices) > 20 else ''})" if slices else ""))
        shown = (result.get("flagged_overlays") or {}).get(architecture) or []
        if shown:
            lines.append(f"  - Grad-CAM of its {len(shown)} most confident flagged slice(s): "
                         f"`detection/{architecture}/gradcam/flagged/`")
    if "segmenter" in result:
        lines.append(f"- segmenter {result['segmenter']}: {result['lesions']} lesion(s), "
                     f"{result['lesion_volume_ml']} mL in all; mask: `{Path(result['mask']).relative_to(out)}`")
        lines.append(f"- {result['dicom_seg_note']}")
        if result.get("overlays"):
            lines.append(f"- overlays (bone window, lesion outlined): {len(result['overlays'])} PNG in `overlays/`")
        if not result["bone_identity"]:
            lines.append("- no bone map given (--bones): bone identity and weight-bearing are unavailable")
        table = out / "lesions" / LESIONS
        if table.is_file():
            frame = pd.read_csv(table)
            shown = [c for c in ("lesion_id", "volume_ml", "bone_name", "bone_group", "weight_bearing", "kind",
                                 "cluster", "mean_hu") if c in frame]
            call = (result.get("patient_calls") or {}).get("segmenters", {}).get(result["segmenter"], {})
            rule = SegmenterRule(float(call.get("min_lesion_ml") or 0.0), call.get("detector"),
                                 float(call.get("min_detector_probability") or 0.0))
            if rule != SegmenterRule() and "volume_ml" in frame and len(frame):  # the rule counts only some lesions
                if rule.detector is not None and DETECTOR_COLUMN in frame:
                    shown.append(DETECTOR_COLUMN)
                frame = frame.assign(counted=rule.counts(frame["volume_ml"].to_numpy(float), frame.get(DETECTOR_COLUMN)))
                shown.append("counted")
            if shown and len(frame):
                lines += ["", "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
                lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame[shown].head(30).itertuples(
                    index=False)]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    """A table cell as a reader wants it: volumes to 0.001 mL, HU to 0.1, no float noise (0.2112000062942505)."""
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)
