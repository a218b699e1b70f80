"""The CT patient-rules stage on a small synthetic run folder (slice scores and masks shaped as `run ct` writes
them, no training), and how `predict ct` applies its rules to a new patient."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from osteomet.data.images import write_image
from osteomet.data.manifest import write_manifest
from osteomet.layout import RunLayout, open_run_dir
from osteomet.pipeline.ct_rules import (
    PATIENT_CALLS,
    PATIENT_METRICS,
    RULES,
    choose_ct_patient_rules,
    read_rules,
    rules_folder,
)
from osteomet.pipeline.predict_ct import _markdown, patient_calls, patient_rules_of

SHAPE = (3, 10, 10)  # z, y, x; voxels of 10 mm, so 1 ml each


def _image(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((10.0, 10.0, 10.0))
    return image


def _mask(*voxels: tuple[int, int, int]) -> sitk.Image:
    array = np.zeros(SHAPE, np.uint8)
    for v in voxels:
        array[v] = 1
    return _image(array)


def _slices(pid: str, split: str, n: int, lesion: dict[int, float], blips: dict[int, float] = {}) -> list[dict]:
    """Rows with the columns of ct/detection/infer.py's slice_scores.csv."""
    return [{"patient_id": pid, "slice": i, "label": int(i in lesion), "lesion_voxels": 9 * int(i in lesion),
             "split": split, "probability": lesion.get(i, blips.get(i, 0.1)),
             "predicted": int(lesion.get(i, blips.get(i, 0.1)) >= 0.038)} for i in range(n)]


@pytest.fixture
def study(tmp_path: Path) -> dict[str, Path]:
    """A run folder with a study manifest (3 validation, 3 test patients), one detector's slice scores and threshold,
    and one segmenter's masks.

    Detector: validation A (lesion slices 12-14 at 0.9/0.8/0.7), B (14-15 at 0.6/0.5), N (lesion-free, one 0.95 blip);
    test T1 (lesion 0.7/0.6 on slices 8-9), T2 and T3 (lesion-free, T2 with one 0.9 blip, T3 with two neighbouring
    0.5 slices). Segmenter: A (3 ml lesion found, 1 ml blob), B (2 ml lesion found, 2 ml blob), N (1 ml blob);
    T1 (4 ml lesion found), T2 (2 ml blob), T3 (1 ml blob).
    """
    run = open_run_dir(tmp_path / "run", kind="ct")
    layout = RunLayout(run)
    data = tmp_path / "data"
    ct = write_image(_image(np.zeros(SHAPE, np.int16)), data / "ct.nii.gz")
    lesion_a = [(0, 0, 0), (0, 0, 1), (0, 0, 2)]
    lesion_b = [(0, 5, 0), (0, 5, 1)]
    lesion_t1 = [(1, 2, 2), (1, 2, 3), (1, 3, 2), (1, 3, 3)]
    cases = {"A": ("val", lesion_a, lesion_a + [(2, 9, 9)]), "B": ("val", lesion_b, lesion_b + [(2, 9, 8), (2, 9, 9)]),
             "N": ("val", [], [(2, 9, 9)]), "T1": ("test", lesion_t1, lesion_t1),
             "T2": ("test", [], [(2, 0, 8), (2, 0, 9)]), "T3": ("test", [], [(2, 0, 9)])}
    seg = layout.ct_segmentation / "predictions" / "unet" / "masks"
    rows = []
    for pid, (split, reference, predicted) in cases.items():
        rows.append({"patient_id": pid, "ct": str(ct), "split": split,
                     "lesion_mask": str(write_image(_mask(*reference), data / f"{pid}_lesion.nii.gz"))})
        write_image(_mask(*predicted), seg / f"{pid}.nii.gz")
    manifest = write_manifest(pd.DataFrame(rows), layout.ct_split / "manifest.csv", kind="ct")
    det = layout.ct_detection
    scores = pd.DataFrame(_slices("A", "val", 20, {12: 0.9, 13: 0.8, 14: 0.7}) + _slices("B", "val", 20, {14: 0.6, 15: 0.5})
                          + _slices("N", "val", 20, {}, {5: 0.95}) + _slices("T1", "test", 20, {8: 0.7, 9: 0.6})
                          + _slices("T2", "test", 20, {}, {3: 0.9}) + _slices("T3", "test", 20, {}, {6: 0.5, 7: 0.5}))
    (det / "predictions" / "resnet18").mkdir(parents=True)
    scores.to_csv(det / "predictions" / "resnet18" / "slice_scores.csv", index=False)
    (det / "model" / "resnet18").mkdir(parents=True)
    (det / "model" / "resnet18" / "threshold.json").write_text(json.dumps({"threshold": 0.038}))
    return {"run": run, "manifest": manifest, "det": det, "seg": layout.ct_segmentation / "predictions",
            "out": rules_folder(layout)}


def _choose(study: dict[str, Path], **kwargs):
    from osteomet.ct.patient_rules import PatientRuleSettings

    settings = PatientRuleSettings(margin_slices=1, min_negative_slices=5, n_resamples=200)
    return choose_ct_patient_rules(study["manifest"], study["det"] / "predictions", study["seg"], study["out"],
                                   detection_model=study["det"] / "model", settings=settings, **kwargs)


def test_stage_chooses_rules_on_validation_writes_metrics_per_split_and_is_then_up_to_date(study):
    outcome = _choose(study)
    assert not outcome.skipped and study["out"] == study["run"] / "ct" / "rules"
    rules = json.loads((study["out"] / RULES).read_text(encoding="utf-8"))
    detector = rules["detectors"]["resnet18"]
    # by hand (as tests/ct/test_patient_rules.py): k = 1 leaves N's blip positive; 2 slices >= 0.3 keeps A and B
    assert detector["rule"] == {"kind": "top_k", "k": 2, "threshold": pytest.approx(0.3)}
    assert detector["chosen_on_data"] and detector["slice_threshold"] == 0.038
    segmenter = rules["segmenters"]["unet"]
    # 0-1 ml keep all 3 validation blobs; 2 ml removes A's and N's (1 ml), keeps B's 2 ml lesion: 1 FP, 2/2 lesions
    # the detector cannot help: its lesion slices (12-15) are not the masks' (0-2), where it says 0.1
    assert segmenter["rule"] == {"min_lesion_ml": 2.0, "detector": None, "min_detector_probability": 0.0}
    assert segmenter["chosen_on_data"]
    assert segmenter["validation"]["false_positives"] == 1 and segmenter["validation"]["lesion_sensitivity"] == 1.0

    metrics = pd.read_csv(study["out"] / PATIENT_METRICS)
    assert {"task", "model", "rule", "split", "metric", "estimate", "ci_low", "ci_high", "numerator", "denominator",
            "n_patients"} <= set(metrics.columns)

    def row(model: str, rule: str, metric: str) -> pd.Series:
        found = metrics[(metrics["model"] == model) & (metrics["rule"] == rule) & (metrics["split"] == "test")
                        & (metrics["metric"] == metric)]
        assert len(found) == 1
        return found.iloc[0]

    # test, detector: T1 (0.6 >= 0.3) positive; T2 (one blip: 2nd highest 0.1) negative; T3 (two 0.5 slices) positive
    assert row("resnet18", "chosen", "patient_sensitivity")[["numerator", "denominator"]].tolist() == [1, 1]
    assert row("resnet18", "chosen", "patient_specificity")[["numerator", "denominator"]].tolist() == [1, 2]
    assert row("resnet18", "old", "patient_specificity")["numerator"] == 0  # any slice >= 0.038 flags both
    # test, segmenter at 2 ml: T2's 2 ml blob stays, T3's 1 ml goes
    assert row("unet", "chosen", "patient_specificity")[["numerator", "denominator"]].tolist() == [1, 2]
    assert row("unet", "chosen", "fp_lesions_per_lesion_free_patient")["estimate"] == pytest.approx(0.5)
    assert row("unet", "old", "fp_lesions_per_lesion_free_patient")["estimate"] == pytest.approx(1.0)
    assert row("unet", "chosen", "lesion_sensitivity")[["numerator", "denominator"]].tolist() == [1, 1]
    calls = pd.read_csv(study["out"] / PATIENT_CALLS)
    assert set(calls["patient_id"]) == {"A", "B", "N", "T1", "T2", "T3"} and set(calls["task"]) == {"detector",
                                                                                                     "segmenter"}
    assert _choose(study).skipped  # nothing changed: up to date


def test_predict_ct_applies_the_runs_rules_to_a_new_patient(study):
    _choose(study)
    layout = RunLayout(study["run"])
    rules, record = patient_rules_of(layout)
    assert record == {"patient_rules": str(study["out"] / RULES)}
    assert rules == read_rules(study["out"] / RULES)
    # one blip at 0.95 (flagged by the old rule) and two lesions, 0.5 ml and 2.5 ml
    scores = pd.DataFrame(_slices("NEW", None, 20, {}, {4: 0.95}))
    lesions = pd.DataFrame({"patient_id": ["NEW", "NEW"], "lesion_id": [1, 2], "volume_ml": [0.5, 2.5]})
    calls = patient_calls(rules, {"resnet18": scores}, "unet", lesions, "NEW")
    detector, segmenter = calls["detectors"]["resnet18"], calls["segmenters"]["unet"]
    assert not detector["positive"] and detector["rule"] == "at least 2 slices with probability >= 0.3"
    assert detector["chosen_on_data"]
    assert segmenter["positive"] and segmenter["lesions_counted"] == 1 and segmenter["lesions_below_rule"] == 1
    text = _markdown({"patient_id": "NEW", "patient_calls": calls}, study["run"])
    assert "detector resnet18: **negative** (at least 2 slices with probability >= 0.3; rule chosen on validation)" \
        in text
    assert "segmenter unet: **positive** (any predicted lesion of at least 2 ml; 1 lesion(s) not counted by the rule" in text


def test_a_detector_can_confirm_the_segmenters_lesions_in_the_stage_and_in_predict_ct(tmp_path):
    """Validation A: a 1 ml lesion on slice 0 (detector 0.9) and a 2 ml blob on slice 2 (0.2); N, lesion-free: a 2 ml
    blob on slice 1 (0.3). No volume keeps A's lesion without both blobs; the detector at 0.25 leaves N's blob, at 0.5
    none -> "on a slice the detector scores >= 0.5". Test T: its lesion (0.8) counts, its 2 ml blob (0.1) does not."""
    from osteomet.ct.patient_rules import PatientRuleSettings
    from osteomet.pipeline.predict_ct import with_detector_probability

    run = open_run_dir(tmp_path / "run", kind="ct")
    layout = RunLayout(run)
    ct = write_image(_image(np.zeros(SHAPE, np.int16)), tmp_path / "data" / "ct.nii.gz")
    lesion, blob_2, blob_1 = [(0, 0, 0)], [(2, 9, 8), (2, 9, 9)], [(1, 5, 5), (1, 5, 6)]
    cases = {"A": ("val", lesion, lesion + blob_2, {0: 0.9, 1: 0.1, 2: 0.2}),
             "N": ("val", [], blob_1, {0: 0.1, 1: 0.3, 2: 0.1}),
             "T": ("test", lesion, lesion + blob_2, {0: 0.8, 1: 0.1, 2: 0.1})}
    seg = layout.ct_segmentation / "predictions" / "unet" / "masks"
    rows, scores = [], []
    for pid, (split, reference, predicted, probability) in cases.items():
        rows.append({"patient_id": pid, "ct": str(ct), "split": split,
                     "lesion_mask": str(write_image(_mask(*reference), tmp_path / "data" / f"{pid}_lesion.nii.gz"))})
        write_image(_mask(*predicted), seg / f"{pid}.nii.gz")
        scores += [{"patient_id": pid, "slice": z, "label": int(any(v[0] == z for v in reference)), "split": split,
                    "probability": p} for z, p in probability.items()]
    manifest = write_manifest(pd.DataFrame(rows), layout.ct_split / "manifest.csv", kind="ct")
    (layout.ct_detection / "predictions" / "resnet18").mkdir(parents=True)
    pd.DataFrame(scores).to_csv(layout.ct_detection / "predictions" / "resnet18" / "slice_scores.csv", index=False)
    settings = PatientRuleSettings(volumes_ml=(0.0, 1.5), n_resamples=200)
    choose_ct_patient_rules(manifest, layout.ct_detection / "predictions", layout.ct_segmentation / "predictions",
                            rules_folder(layout), settings=settings)
    rules = json.loads((rules_folder(layout) / RULES).read_text(encoding="utf-8"))
    assert rules["segmenters"]["unet"]["rule"] == {"min_lesion_ml": 0.0, "detector": "resnet18",
                                                   "min_detector_probability": 0.5}
    metrics = pd.read_csv(rules_folder(layout) / PATIENT_METRICS)
    test = metrics[(metrics["model"] == "unet") & (metrics["rule"] == "chosen") & (metrics["split"] == "test")]
    assert test.set_index("metric").loc["fp_lesions_per_patient", "estimate"] == 0.0

    # predict ct: the lesion table of T's mask gets each lesion's detector probability, and the rule counts one
    lesions = pd.DataFrame({"patient_id": "T", "lesion_id": [1, 2], "volume_ml": [1.0, 2.0]})
    lesions = with_detector_probability(lesions, seg / "T.nii.gz", pd.DataFrame(scores).query("patient_id == 'T'"))
    assert lesions["detector_probability"].tolist() == [0.8, 0.1]
    calls = patient_calls(read_rules(rules_folder(layout) / RULES), {}, "unet", lesions, "T")
    assert calls["segmenters"]["unet"]["lesions_counted"] == 1 and calls["segmenters"]["unet"]["positive"]
    text = _markdown({"patient_id": "T", "patient_calls": calls}, run)
    assert "any predicted lesion on a slice the resnet18 detector scores >= 0.5; 1 lesion(s) not counted" in text
    from osteomet.errors import InputError

    with pytest.raises(InputError, match="resnet18 detector"):
        patient_calls(read_rules(rules_folder(layout) / RULES), {}, "unet", lesions.drop(columns=["detector_probability"]),
                      "T")


def test_predict_ct_on_a_run_without_rules_says_so_and_keeps_the_old_calls(tmp_path):
    layout = RunLayout(open_run_dir(tmp_path / "old_run", kind="ct"))
    rules, record = patient_rules_of(layout)
    assert rules is None and record["patient_rules"] is None
    assert "no patient-level rules" in record["patient_rules_note"]
    scores = pd.DataFrame(_slices("NEW", None, 20, {}, {4: 0.95}))
    calls = patient_calls(None, {"resnet18": scores}, "unet", pd.DataFrame(), "NEW")
    assert calls["detectors"]["resnet18"]["positive"] and not calls["detectors"]["resnet18"]["chosen_on_data"]
    assert not calls["segmenters"]["unet"]["positive"]
    text = _markdown({"patient_id": "NEW", "patient_calls": calls, **record}, tmp_path)
    assert "no patient-level rules" in text and "detector resnet18: **positive**" in text


def test_a_malformed_rules_file_is_refused_naming_it(study):
    from osteomet.errors import InputError

    study["out"].mkdir(parents=True)
    (study["out"] / RULES).write_text(json.dumps({"detectors": {"resnet18": {"task": "detector",
                                                                             "rule": {"kind": "median"}}}}))
    with pytest.raises(InputError, match="rules.json"):
        patient_rules_of(RunLayout(study["run"]))


def test_stage_refuses_a_missing_predicted_mask_naming_the_patient(study):
    from osteomet.errors import MissingInputError

    (study["seg"] / "unet" / "masks" / "T3.nii.gz").unlink()
    with pytest.raises(MissingInputError, match="T3"):
        _choose(study)
    assert not study["out"].exists()  # an input problem leaves no half-made folder
