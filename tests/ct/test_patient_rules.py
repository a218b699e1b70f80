"""Patient-level decision rules of the CT detectors and segmenters: choice on validation, calls and metrics,
each checked against a case worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from osteomet.ct.lesions.labels import label_lesions
from osteomet.ct.patient_rules import (
    DETECTOR_COLUMN,
    DetectorRule,
    PatientLesions,
    PatientRuleSettings,
    RuleChoice,
    SegmenterRule,
    apply_detector_rule,
    apply_segmenter_rule,
    choose_detector_rule,
    choose_segmenter_rule,
    lesion_detector_probability,
    lesion_outcomes,
    lesion_slices,
    lesion_volumes,
    patient_metrics,
    slice_statistic,
)
from osteomet.errors import InputError

#: A margin of 1 slice and negative scans of >= 5 slices, so the tiny scans below can be worked out by hand.
SMALL = PatientRuleSettings(margin_slices=1, min_negative_slices=5)


def _scan(pid: str, split: str, n: int, lesion: dict[int, float], blips: dict[int, float] = {},
          base: float = 0.1) -> list[dict]:
    """Slice rows as slice_scores.csv has them: lesion slices at their probability, blips on lesion-free slices."""
    return [{"patient_id": pid, "slice": i, "label": int(i in lesion), "lesion_voxels": 9 * int(i in lesion),
             "split": split, "probability": lesion.get(i, blips.get(i, base)), "predicted": 0} for i in range(n)]


def _validation(blips: dict[int, float]) -> pd.DataFrame:
    """Two lesion patients (A: slices 12-14 at 0.9/0.8/0.7, B: slices 14-15 at 0.6/0.5) and a lesion-free N with
    ``blips``; every other slice 0.1."""
    return pd.DataFrame(_scan("A", "val", 20, {12: 0.9, 13: 0.8, 14: 0.7}) + _scan("B", "val", 20, {14: 0.6, 15: 0.5})
                        + _scan("N", "val", 20, {}, blips))


def test_slice_statistic_kth_highest_and_consecutive_runs_that_a_gap_breaks():
    p = [0.9, 0.2, 0.8, 0.7, 0.1]
    assert slice_statistic(p, range(5), "top_k", 1) == 0.9
    assert slice_statistic(p, range(5), "top_k", 2) == 0.8
    assert slice_statistic(p, range(5), "run", 2) == 0.7  # slices 2-3: min(0.8, 0.7); 0-1 only min 0.2
    assert slice_statistic(p, range(5), "run", 3) == 0.2  # windows 0.2, 0.2, 0.1
    assert slice_statistic([0.9, 0.9, 0.9], [0, 2, 4], "run", 2) == 0.0  # no two slices are neighbours
    assert slice_statistic([0.9, 0.9], [0, 1], "top_k", 3) == 0.0  # too few slices to fire
    assert slice_statistic([0.5, 0.9, 0.8], [7, 5, 6], "run", 2) == 0.8  # rows in any order: sorted by slice


def test_one_noisy_slice_makes_the_rule_ask_for_two_slices_at_the_hand_computed_threshold():
    # Negative scans: N (20 slices), A without slices 11-15 (15 left), B without 13-16 (16 left): 3 scans.
    # k = 1: lesion scores 0.9, 0.6 -> both must stay (ceil(0.9 * 2) = 2) -> 0.6; negatives 0.95 (the blip), 0.1,
    #        0.1 -> halfway between 0.1 and 0.6 = 0.35; 2 of 3 negatives below, the lesion-free patient not.
    # k = 2: lesion scores 0.8, 0.5 -> 0.5; negatives 0.1 each -> 0.3; 3 of 3 below. Wins (top_k before run).
    slices = _validation({5: 0.95})
    choice = choose_detector_rule(slices, slice_threshold=0.038, settings=SMALL)
    assert choice.chosen_on_data
    assert choice.rule == DetectorRule("top_k", 2, pytest.approx(0.3))
    first = choice.candidates[0]
    assert (first["kind"], first["k"], first["threshold"]) == ("top_k", 1, pytest.approx(0.35))
    assert (first["true_negatives"], first["negative_scans"], first["lesion_free_true_negatives"]) == (2, 3, 0)
    assert choice.validation["n_negative_scans"] == 3 and choice.validation["n_negative_scans_from_lesion_patients"] == 2
    assert choice.validation["sensitivity"] == 1.0 and choice.validation["specificity"] == 1.0
    calls = apply_detector_rule(choice.rule, slices).set_index("patient_id")
    assert calls["score"].to_dict() == pytest.approx({"A": 0.8, "B": 0.5, "N": 0.1})
    assert calls["predicted"].to_dict() == {"A": 1, "B": 1, "N": 0}
    old = apply_detector_rule(DetectorRule("top_k", 1, 0.038), slices).set_index("patient_id")
    assert old.loc["N", "predicted"] == 1  # the old rule: any slice above the slice threshold flags N


def test_two_separate_blips_are_told_from_a_lesion_by_the_consecutive_run():
    # N has 0.95 on slices 3 and 9: the 2nd-highest is 0.95 (top_k 2 keeps N positive, 2 of 3 negatives), the best
    # 2-slice run only 0.1, so run k = 2 at 0.3 (halfway 0.1 .. 0.5) is the first with 3 of 3.
    choice = choose_detector_rule(_validation({3: 0.95, 9: 0.95}), slice_threshold=0.038, settings=SMALL)
    assert choice.rule == DetectorRule("run", 2, pytest.approx(0.3))
    by_rule = {(c["kind"], c["k"]): c["true_negatives"] for c in choice.candidates}
    assert by_rule[("top_k", 1)] == 2 and by_rule[("top_k", 2)] == 2 and by_rule[("run", 2)] == 3


def test_without_a_validation_lesion_patient_the_old_rule_is_kept_and_marked_as_not_chosen_on_data():
    slices = pd.DataFrame(_scan("N1", "val", 10, {}) + _scan("A", "train", 10, {4: 0.9}))
    choice = choose_detector_rule(slices, slice_threshold=0.038, settings=SMALL)
    assert choice.rule == DetectorRule("top_k", 1, 0.038) and not choice.chosen_on_data
    assert "no labelled patient with a lesion" in choice.basis
    unrecorded = choose_detector_rule(slices, settings=SMALL)
    assert unrecorded.rule.threshold == 0.5 and "no slice threshold" in unrecorded.basis


def test_without_any_negative_scan_the_rule_falls_back():
    # one validation lesion patient whose lesion-free slices are too few to stand in for a lesion-free patient
    slices = pd.DataFrame(_scan("A", "val", 6, {2: 0.9, 3: 0.9}))
    choice = choose_detector_rule(slices, slice_threshold=0.2, settings=SMALL)
    assert not choice.chosen_on_data and choice.rule == DetectorRule("top_k", 1, 0.2)
    assert "no lesion-free patient" in choice.basis


def test_rule_choice_round_trips_through_json():
    choice = choose_detector_rule(_validation({5: 0.95}), slice_threshold=0.038, settings=SMALL)
    again = RuleChoice.from_dict(json.loads(json.dumps(choice.to_dict())))
    assert again.rule == choice.rule and again.chosen_on_data and again.basis == choice.basis
    assert choice.to_dict()["description"] == "at least 2 slices with probability >= 0.3"


def _mask(shape: tuple[int, int, int], *voxels: tuple[int, int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for v in voxels:
        mask[v] = True
    return mask


def _patient(pid: str, split: str, predicted: list[tuple], reference: list[tuple] | None) -> PatientLesions:
    """Voxels of 1 ml (10 mm cubes) on a 3 x 10 x 10 grid."""
    shape = (3, 10, 10)
    pred = label_lesions(_mask(shape, *predicted))
    ref = label_lesions(_mask(shape, *reference)) if reference is not None else None
    return PatientLesions(pid, split, pred, lesion_volumes(pred, 1.0), ref)


def _cohort() -> list[PatientLesions]:
    """val: A (lesion 3 ml found, 1 ml blob), B (lesion 2 ml found, 2 ml blob), C (lesion-free, 1 ml blob);
    test: D (lesion-free, 2 ml blob), E (lesion-free, 1 ml blob), F (lesion 4 ml found)."""
    lesion_a = [(0, 0, 0), (0, 0, 1), (0, 0, 2)]
    lesion_b = [(0, 5, 0), (0, 5, 1)]
    lesion_f = [(1, 2, 2), (1, 2, 3), (1, 3, 2), (1, 3, 3)]
    return [_patient("A", "val", lesion_a + [(2, 9, 9)], lesion_a),
            _patient("B", "val", lesion_b + [(2, 9, 8), (2, 9, 9)], lesion_b),
            _patient("C", "val", [(2, 9, 9)], []),
            _patient("D", "test", [(2, 0, 8), (2, 0, 9)], []),
            _patient("E", "test", [(2, 0, 9)], []),
            _patient("F", "test", lesion_f, lesion_f)]


def test_segmenter_rule_is_the_smallest_volume_with_fewest_false_positives_at_the_lesion_sensitivity_target():
    # 0 ml: 3 false positives (A, B, C), 2/2 lesions; 1.5 ml: only B's 2 ml blob stays, 2/2; 2.5 ml: B's 2 ml lesion
    # goes too, 1/2 = 0.5 < 0.8, not allowed -> 1.5 ml, 1 false positive per 3 patients, C called negative.
    settings = PatientRuleSettings(volumes_ml=(0.0, 1.5, 2.5))
    choice = choose_segmenter_rule(_cohort(), settings)
    assert choice.chosen_on_data and choice.rule == SegmenterRule(1.5)
    assert [c["false_positives"] for c in choice.candidates] == [3, 1, 0]
    assert [c["detected"] for c in choice.candidates] == [2, 2, 1]
    assert choice.validation["fp_per_patient"] == pytest.approx(1 / 3)
    assert choice.validation["fp_per_lesion_free_patient"] == 0.0 and choice.validation["lesion_free_called_negative"] == 1
    # test split under 1.5 ml: D's 2 ml blob stays (D positive), E's goes; F's lesion found
    table = lesion_outcomes(_cohort(), choice.rule, settings).set_index("patient_id")
    assert table.loc[["D", "E", "F"], "predicted"].tolist() == [1, 0, 1]
    metrics = patient_metrics(table.reset_index(), settings)
    test = metrics[metrics["split"] == "test"].set_index("metric")
    assert test.loc["patient_sensitivity", ["numerator", "denominator"]].tolist() == [1, 1]
    assert test.loc["patient_specificity", ["numerator", "denominator", "estimate"]].tolist() == [1, 2, 0.5]
    assert test.loc["fp_lesions_per_lesion_free_patient", "estimate"] == pytest.approx((1 + 0) / 2)
    assert test.loc["fp_lesions_per_lesion_free_patient", "n_patients"] == 2
    assert test.loc["fp_lesions_per_patient", "estimate"] == pytest.approx(1 / 3)
    assert test.loc["lesion_sensitivity", ["numerator", "denominator"]].tolist() == [1, 1]
    low, high = test.loc["fp_lesions_per_lesion_free_patient", ["ci_low", "ci_high"]]
    assert 0.0 <= low <= 0.5 <= high <= 1.0  # a bootstrap over the 2 lesion-free patients (values 1 and 0)


def test_a_detectors_calls_with_the_lesion_columns_empty_give_patient_numbers_only():
    """Detector and segmenter calls in one table (``ct/rules/patient_calls.csv``): the detector's lesion columns are
    empty, so its metrics are the patient ones (counted by hand), not a failed bootstrap over nothing."""
    calls = pd.DataFrame({"patient_id": ["P1", "P2", "N1", "N2", "N3"], "split": "test", "label": [1, 1, 0, 0, 0],
                          "predicted": [1, 0, 0, 1, 0], "n_false_positive": np.nan, "n_reference": np.nan,
                          "n_detected": np.nan})
    metrics = patient_metrics(calls).set_index("metric")
    assert sorted(metrics.index) == ["patient_sensitivity", "patient_specificity"]
    assert metrics.loc["patient_sensitivity", ["numerator", "denominator"]].tolist() == [1, 2]
    assert metrics.loc["patient_specificity", ["numerator", "denominator"]].tolist() == [2, 3]


def test_segmenter_rule_keeps_every_lesion_validation_found_when_the_target_is_out_of_reach():
    # one validation patient, 2 reference lesions, only the 3 ml one found (0.5 < 0.8): the floor is 1 found lesion,
    # so the 1 ml blob may go (1.5 ml) but not the found lesion (3.5 ml)
    found, missed = [(0, 0, 0), (0, 0, 1), (0, 0, 2)], [(2, 5, 5)]
    patients = [_patient("A", "val", found + [(2, 9, 9)], found + missed)]
    choice = choose_segmenter_rule(patients, PatientRuleSettings(volumes_ml=(0.0, 1.5, 3.5)))
    assert choice.rule == SegmenterRule(1.5) and "out of reach" in choice.basis


def test_segmenter_rule_without_validation_reference_lesions_removes_nothing_and_says_so():
    patients = [_patient("C", "val", [(2, 9, 9)], []), _patient("A", "train", [(0, 0, 0)], [(0, 0, 0)])]
    choice = choose_segmenter_rule(patients)
    assert choice.rule == SegmenterRule(0.0) and not choice.chosen_on_data
    assert "no reference lesion" in choice.basis


def test_segmenter_rule_on_a_lesion_table_counts_lesions_at_least_the_minimum_volume():
    lesions = pd.DataFrame({"patient_id": ["P1", "P1", "P2"], "volume_ml": [0.3, 2.0, 0.5]})
    calls = apply_segmenter_rule(SegmenterRule(1.0), lesions, ["P1", "P2", "P3"]).set_index("patient_id")
    assert calls["n_kept"].to_dict() == {"P1": 1, "P2": 0, "P3": 0}
    assert calls["predicted"].to_dict() == {"P1": 1, "P2": 0, "P3": 0}
    assert apply_segmenter_rule(SegmenterRule(1.0), pd.DataFrame(), ["P"])["predicted"].tolist() == [0]


def _confirmed(pid: str, split: str, predicted: list[tuple], reference: list[tuple], slice_probability: dict[int, float],
               detector: str = "resnet34") -> PatientLesions:
    """A patient whose detector scored each slice (z = 0, 1, 2) as given."""
    patient = _patient(pid, split, predicted, reference)
    import SimpleITK as sitk

    image = sitk.Image([10, 10, 3], sitk.sitkUInt8)  # identity direction: LPS slice = array z
    scores = pd.DataFrame({"slice": list(slice_probability), "probability": list(slice_probability.values())})
    patient.detector_probability[detector] = lesion_detector_probability(lesion_slices(patient.predicted, image), scores)
    return patient


def test_segmenter_rule_asks_the_detector_where_volume_cannot_tell_the_blob_from_the_lesion():
    # A: a 1 ml lesion on slice 0 (detector 0.8) and a 2 ml blob on slice 2 (detector 0.3); B: lesion-free, a 2 ml blob
    # on slice 2 (detector 0.6). No volume removes the blobs and keeps the lesion (1/1 needed). Candidates in order:
    # volumes (3 blobs at 0 ml, the lesion lost from 1.5 ml), then resnet34 at 0.25 (0.3 and 0.6 stay: 2 false
    # positives), 0.5 (B's 0.6 stays: 1), 0.75 (0: the first with none) -> 0 ml on a slice scored >= 0.75.
    lesion = [(0, 0, 0)]
    patients = [_confirmed("A", "val", lesion + [(2, 9, 8), (2, 9, 9)], lesion, {0: 0.8, 1: 0.1, 2: 0.3}),
                _confirmed("B", "val", [(2, 5, 5), (2, 5, 6)], [], {0: 0.1, 1: 0.1, 2: 0.6})]
    settings = PatientRuleSettings(volumes_ml=(0.0, 1.5), detector_probabilities=(0.25, 0.5, 0.75, 0.9))
    choice = choose_segmenter_rule(patients, settings)
    assert choice.rule == SegmenterRule(0.0, "resnet34", 0.75)
    assert [(c["min_lesion_ml"], c["min_detector_probability"], c["false_positives"], c["detected"])
            for c in choice.candidates] == [(0.0, 0.0, 2, 1), (1.5, 0.0, 2, 0), (0.0, 0.25, 2, 1), (1.5, 0.25, 2, 0),
                                            (0.0, 0.5, 1, 1), (1.5, 0.5, 1, 0), (0.0, 0.75, 0, 1), (1.5, 0.75, 0, 0),
                                            (0.0, 0.9, 0, 0), (1.5, 0.9, 0, 0)]
    assert choice.validation["lesion_free_called_negative"] == 1
    assert choice.to_dict()["description"] == "any predicted lesion on a slice the resnet34 detector scores >= 0.75"
    assert RuleChoice.from_dict(json.loads(json.dumps(choice.to_dict()))).rule == choice.rule


def test_segmenter_rule_leaves_the_detector_out_when_volume_alone_is_as_good():
    lesion = [(0, 0, 0), (0, 0, 1)]
    patients = [_confirmed("A", "val", lesion + [(2, 9, 9)], lesion, {0: 0.9, 1: 0.1, 2: 0.1})]
    choice = choose_segmenter_rule(patients, PatientRuleSettings(volumes_ml=(0.0, 1.5)))
    assert choice.rule == SegmenterRule(1.5)  # 0 false positives by volume: the detector (also 0) changes more


def test_segmenter_rule_with_a_detector_on_a_lesion_table_needs_the_detector_column():
    rule = SegmenterRule(1.0, "resnet34", 0.5)
    lesions = pd.DataFrame({"patient_id": ["P1", "P1", "P2"], "volume_ml": [2.0, 2.0, 3.0],
                            DETECTOR_COLUMN: [0.2, 0.7, 0.4]})
    calls = apply_segmenter_rule(rule, lesions, ["P1", "P2"]).set_index("patient_id")
    assert calls["n_kept"].to_dict() == {"P1": 1, "P2": 0}
    with pytest.raises(InputError, match="detector_probability.*resnet34"):
        apply_segmenter_rule(rule, lesions.drop(columns=[DETECTOR_COLUMN]), ["P1"])


def test_lesion_detector_probability_reads_the_slices_in_the_slice_cache_orientation():
    """A mask stored feet-first (z axis flipped, as many DICOM series are): its array slice 0 is LPS slice 2, so the
    lesion there takes the detector's slice-2 probability; a slice the detector never scored counts 0."""
    import SimpleITK as sitk

    lesions = label_lesions(_mask((3, 4, 4), (0, 1, 1), (2, 3, 3)))  # ids in raster order: z = 0 first
    image = sitk.Image([4, 4, 3], sitk.sitkUInt8)
    image.SetDirection([1, 0, 0, 0, 1, 0, 0, 0, -1])
    assert [z.tolist() for z in lesion_slices(lesions, image)] == [[2], [0]]
    scores = pd.DataFrame({"slice": [0, 2], "probability": [0.1, 0.9]})
    assert lesion_detector_probability(lesion_slices(lesions, image), scores).tolist() == [0.9, 0.1]
    assert lesion_detector_probability([np.array([1])], scores).tolist() == [0.0]


def test_patient_sensitivity_interval_is_the_wilson_formula():
    # 3 of 4 lesion patients called positive, 95%: centre (p + z^2/2n) / (1 + z^2/n), half-width
    # z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)
    calls = pd.DataFrame({"patient_id": list("abcdef"), "split": "test", "label": [1, 1, 1, 1, 0, 0],
                          "predicted": [1, 1, 1, 0, 0, 1]})
    row = patient_metrics(calls).set_index("metric").loc["patient_sensitivity"]
    z, n, p = 1.959963984540054, 4, 0.75
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert row["estimate"] == 0.75
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(centre - half), pytest.approx(centre + half))
    spec = patient_metrics(calls).set_index("metric").loc["patient_specificity"]
    assert (spec["numerator"], spec["denominator"]) == (1, 2)
