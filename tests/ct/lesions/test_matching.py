"""Per-lesion matching (IoU / any-overlap, one-to-one) and the lesion-, patient-, bone-level statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy.stats import binomtest

from osteomet.ct.lesions.analysis import analyse_lesions
from osteomet.ct.lesions.labels import label_lesions
from osteomet.ct.lesions.matching import match_lesions, overlap_counts
from osteomet.ct.lesions.metrics import evaluate_patient, lesion_metrics
from osteomet.evaluation.bootstrap import bootstrap_mean
from osteomet.evaluation.proportions import wilson_interval

L3, L4, HIP_LEFT, RIB = 29, 28, 77, 110


def _image(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint16 if array.max() > 1 else np.uint8))
    image.SetSpacing((1.0, 1.0, 2.0))
    return image


def test_overlap_counts_equal_a_dense_count() -> None:
    rng = np.random.default_rng(3)
    pred = label_lesions(rng.random((10, 20, 20)) < 0.15)
    ref = label_lesions(rng.random((10, 20, 20)) < 0.15)
    lp, lr = pred.to_array(), ref.to_array()
    dense = np.zeros((pred.n + 1, ref.n + 1), np.int64)
    np.add.at(dense, (lp.ravel(), lr.ravel()), 1)
    assert np.array_equal(overlap_counts(pred, ref), dense[1:, 1:])


def test_iou_threshold_and_any_overlap() -> None:
    ref = np.zeros((3, 10, 30), np.uint8)
    ref[1, 0:10, 0:10] = 1  # 100 voxels
    pred = np.zeros_like(ref)
    pred[1, 0:10, 9:20] = 1  # 110 voxels, 10 shared: IoU = 10 / 200 = 0.05
    p, r = label_lesions(pred), label_lesions(ref)
    strict = match_lesions(p, r, criterion="iou", iou_threshold=0.1)
    assert not strict.reference["detected"].any() and strict.predicted["true_positive"].sum() == 0
    assert strict.predicted.loc[0, "max_iou"] == pytest.approx(0.05) and strict.predicted.loc[0, "overlaps_reference"]
    loose = match_lesions(p, r, criterion="iou", iou_threshold=0.05)  # >= threshold is a hit
    assert loose.reference["detected"].all()
    anyhit = match_lesions(p, r, criterion="any")
    assert anyhit.reference["detected"].all() and anyhit.pairs.loc[0, "iou"] == pytest.approx(0.05)
    assert anyhit.pairs.loc[0, "overlap_voxels"] == 10
    with pytest.raises(ValueError, match="'iou' or 'any'"):
        match_lesions(p, r, criterion="dice")
    with pytest.raises(ValueError, match="iou_threshold"):
        match_lesions(p, r, criterion="iou", iou_threshold=0.0)


def test_one_to_one_fragments_and_hungarian() -> None:
    ref = np.zeros((2, 10, 40), np.uint8)
    ref[0, 0:10, 0:10] = 1
    pred = np.zeros_like(ref)
    pred[0, 0:10, 0:4] = 1  # two fragments of one reference lesion
    pred[0, 0:10, 6:10] = 1
    m = match_lesions(label_lesions(pred), label_lesions(ref), criterion="any")
    assert m.predicted["true_positive"].tolist().count(True) == 1
    assert m.predicted["overlaps_reference"].all()  # the unmatched fragment is flagged for review
    # Hungarian vs greedy: A overlaps R1 (IoU 8/35) more than B does (1/20), and R2 (5/38); greedy would give
    # A-R1 and leave B unmatched, the one-to-one optimum matches both (A-R2, B-R1)
    refs = np.zeros((2, 1, 40), np.uint8)
    refs[:, 0, 0:10] = 1  # R1: slices 0-1, x 0-9
    refs[:, 0, 20:30] = 1  # R2: slices 0-1, x 20-29
    preds = np.zeros_like(refs)
    preds[0, 0, 2:25] = 1  # A (slice 0)
    preds[1, 0, 0:1] = 1  # B (slice 1, x 0; x 1 stays empty so B does not touch A, even diagonally: two lesions)
    m = match_lesions(label_lesions(preds), label_lesions(refs), criterion="any")
    assert m.reference["detected"].tolist() == [True, True]
    pairs = dict(zip(m.pairs["pred_id"], m.pairs["ref_id"]))
    assert pairs == {1: 2, 2: 1}  # A (first in raster order) takes R2, B takes R1


def _patient(bones: np.ndarray, ref: np.ndarray, pred: np.ndarray, pid: str):
    b = _image(bones)
    return evaluate_patient(analyse_lesions(_image(pred), b, patient_id=pid),
                            analyse_lesions(_image(ref), b, patient_id=pid), criterion="any")


def _bones() -> np.ndarray:
    bones = np.zeros((6, 20, 40), np.uint16)
    bones[:, 0:10, 0:10] = L3
    bones[:, 0:10, 20:30] = HIP_LEFT
    bones[:, 12:14, 0:40] = RIB
    return bones


def test_cohort_statistics_by_hand() -> None:
    bones = _bones()
    empty = np.zeros(bones.shape, np.uint8)
    # P1: reference lesions in L3 (focal) and hip (focal); prediction finds L3 only, plus a FP on the rib
    r1, p1 = empty.copy(), empty.copy()
    r1[2, 2:4, 2:4] = 1
    r1[2, 2:4, 22:24] = 1
    p1[2, 2:4, 2:4] = 1
    p1[2, 12:14, 30:33] = 1
    # P2: no reference lesion, prediction has a FP in the hip -> patient FP
    p2 = empty.copy()
    p2[4, 5:7, 25:27] = 1
    # P3: no reference lesion, no prediction -> true negative
    # P4: diffuse L3 lesion (whole vertebra on 2 slices) found
    r4 = empty.copy()
    r4[1:3][bones[1:3] == L3] = 1
    evaluations = [_patient(bones, r1, p1, "P1"), _patient(bones, empty, p2, "P2"),
                   _patient(bones, empty, empty, "P3"), _patient(bones, r4, r4.copy(), "P4")]
    metrics = lesion_metrics(evaluations, n_resamples=500).set_index(["metric", "breakdown", "subgroup"])

    def get(metric: str, breakdown: str = "all", subgroup: str = "all") -> pd.Series:
        return metrics.loc[(metric, breakdown, subgroup)]

    sens = get("lesion_sensitivity")
    assert (sens["numerator"], sens["denominator"], sens["estimate"]) == (2, 3, pytest.approx(2 / 3))
    ci = binomtest(2, 3).proportion_ci(confidence_level=0.95, method="wilson")
    assert (sens["ci_low"], sens["ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    fp = get("fp_per_patient")
    assert (fp["numerator"], fp["denominator"], fp["estimate"]) == (2, 4, pytest.approx(0.5))
    assert 0.0 <= fp["ci_low"] <= 0.5 <= fp["ci_high"] <= 1.0
    spec = get("patient_specificity")
    assert (spec["numerator"], spec["denominator"]) == (1, 2)  # P3 TN, P2 FP
    assert get("patient_sensitivity")["estimate"] == 1.0  # P1 and P4 each have a detected lesion
    # bone level: 4 patients x 3 bones = 12 pairs; positives P1-L3, P1-hip, P4-L3; FP calls P1-rib, P2-hip
    bone_spec = get("bone_specificity")
    assert (bone_spec["numerator"], bone_spec["denominator"]) == (7, 9)
    bone_sens = get("bone_sensitivity")
    assert (bone_sens["numerator"], bone_sens["denominator"]) == (2, 3)
    # breakdowns
    assert get("lesion_sensitivity", "bone_group", "pelvis")[["numerator", "denominator"]].tolist() == [0, 1]
    assert get("lesion_sensitivity", "bone_group", "spine")[["numerator", "denominator"]].tolist() == [2, 2]
    assert get("lesion_sensitivity", "kind", "diffuse")[["numerator", "denominator"]].tolist() == [1, 1]
    assert get("lesion_sensitivity", "kind", "focal")[["numerator", "denominator"]].tolist() == [1, 2]
    assert get("fp_per_patient", "bone_group", "ribs")["numerator"] == 1
    assert get("fp_per_patient", "weight_bearing", "True")["estimate"] == pytest.approx(0.25)
    assert get("bone_specificity", "bone_group", "ribs")[["numerator", "denominator"]].tolist() == [3, 4]
    assert get("bone_specificity", "weight_bearing", "True")[["numerator", "denominator"]].tolist() == [4, 5]
    summary = evaluations[0].summary()
    assert (summary["n_reference"], summary["n_detected"], summary["n_false_positive"]) == (2, 1, 1)


def test_wilson_and_bootstrap_helpers() -> None:
    est, low, high = wilson_interval(7, 20)
    ci = binomtest(7, 20).proportion_ci(method="wilson")
    assert (est, low, high) == (pytest.approx(0.35), pytest.approx(ci.low), pytest.approx(ci.high))
    assert all(np.isnan(wilson_interval(0, 0)))
    values = np.array([0, 0, 1, 3, 0, 2, 0, 0])
    mean, low, high = bootstrap_mean(values, n_resamples=4000, seed=1)
    # the percentile interval of the mean brackets it and is reproducible with the same seed
    assert mean == pytest.approx(0.75) and low < mean < high
    assert bootstrap_mean(values, n_resamples=4000, seed=1) == (mean, low, high)
    rng = np.random.default_rng(1)  # independent check: same resampling scheme by hand
    manual = [values[rng.integers(0, 8, 8)].mean() for _ in range(4000)]
    assert (low, high) == (pytest.approx(np.quantile(manual, 0.025)), pytest.approx(np.quantile(manual, 0.975)))
    with pytest.raises(ValueError, match="no patients"):
        lesion_metrics([])
