"""Evaluating saved predictions: threshold from validation only, tidy metrics, paired DeLong per split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osteomet.evaluation import delong_ci, delong_test, threshold_metrics, youden_threshold
from osteomet.evaluation.errors import EvaluationInputError
from osteomet.evaluation.predictions import choose_threshold, compare_predictions, evaluate_predictions, not_evaluated


def _table(seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    splits = ["train"] * 60 + ["val"] * 20 + ["test"] * 40 + ["external"] * 30
    label = rng.integers(0, 2, len(splits))
    label[:4] = [0, 1, 0, 1]
    label[60:64] = label[120:124] = label[150 - 4:] = [0, 1, 0, 1]
    prob = 1 / (1 + np.exp(-(shift * label + rng.normal(0, 1, len(splits)))))
    return pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(len(splits))], "prob": prob,
                         "label": label, "split": splits})


def test_threshold_comes_from_train_and_validation_and_is_applied_unchanged():
    table = _table(0, 1.5)
    val = table[table["split"] == "val"]
    assert choose_threshold(table, "val") == (pytest.approx(youden_threshold(val["label"], val["prob"])), "val")
    pooled = table[table["split"].isin(["train", "val"])]
    threshold, used = choose_threshold(table)
    assert used == "train+val"
    assert threshold == pytest.approx(youden_threshold(pooled["label"], pooled["prob"]))
    with pytest.raises(EvaluationInputError, match="bias"):
        choose_threshold(table, "train+test")
    metrics = evaluate_predictions({"m": table}, n_resamples=50)
    test = table[table["split"] == "test"]
    expected = threshold_metrics(test["label"], test["prob"], threshold)
    rows = metrics[(metrics["cohort"] == "test") & (metrics["ci_method"] == "bootstrap")].set_index("metric")
    for name in ("acc", "sensitivity", "specificity", "f1"):
        assert rows.loc[name, "estimate"] == pytest.approx(expected[name])
    auc = metrics[(metrics["cohort"] == "external") & (metrics["ci_method"] == "delong")].iloc[0]
    ext = table[table["split"] == "external"]
    assert (auc["estimate"], auc["ci_low"], auc["ci_high"]) == pytest.approx(tuple(delong_ci(ext["label"], ext["prob"])))
    assert list(pd.unique(metrics["cohort"])) == ["train", "val", "test", "external"]
    assert set(metrics["threshold"]) == {threshold}


def test_paired_delong_per_split_on_shared_patients_with_holm():
    a, b, c = _table(1, 2.0), _table(1, 0.5), _table(2, 1.0)
    b = b.iloc[5:]  # model b did not score five training patients
    table = compare_predictions({"a": a, "b": b, "c": c})
    assert len(table) == 3 * 4
    row = table[(table["split"] == "train") & (table["model_a"] == "a") & (table["model_b"] == "b")].iloc[0]
    shared = a[a["split"] == "train"].merge(b[["patient_id", "prob"]], on="patient_id")
    expected = delong_test(shared["label"], shared["prob_x"], shared["prob_y"])
    assert row["n"] == len(shared) == 55
    assert (row["z"], row["p"]) == pytest.approx((expected.z, expected.p))
    test_rows = table[table["split"] == "test"]
    p = np.sort(test_rows["p"].to_numpy())
    assert np.sort(test_rows["p_holm"].to_numpy())[0] == pytest.approx(min(1.0, 3 * p[0]))




def test_a_split_too_small_for_delong_still_gets_its_auc():
    table = _table(0, 1.5)
    tiny = table[table["split"] == "val"].head(3).copy()
    tiny["label"] = [0, 1, 0]
    table = pd.concat([table[table["split"] != "val"], tiny])
    metrics = evaluate_predictions({"m": table}, n_resamples=20)
    row = metrics[(metrics["cohort"] == "val") & (metrics["ci_method"] == "delong")].iloc[0]
    expected = float(np.mean(tiny.loc[tiny["label"] == 1, "prob"].iloc[0] > tiny.loc[tiny["label"] == 0, "prob"]))
    assert row["estimate"] == pytest.approx(expected) and np.isnan(row["ci_low"]) and np.isnan(row["ci_high"])


def test_a_one_class_split_is_reported_with_the_reason_not_dropped():
    table = _table(3, 1.5)
    table.loc[table["split"] == "external", "label"] = 0  # an external cohort without metastases
    metrics = evaluate_predictions({"m": table}, n_resamples=30)
    external = metrics[metrics["cohort"] == "external"]
    assert len(external) == 1
    row = external.iloc[0]
    assert row["metric"] == "auc" and row["ci_method"] == "none" and np.isnan(row["estimate"])
    assert (row["n"], row["n_pos"]) == (30, 0)
    assert row["note"] == ("not evaluated: all 30 scored patient(s) of this split are controls (label 0); "
                           "the AUC and the threshold metrics need both classes")
    assert not_evaluated(metrics) == [f"m / external: {row['note']}"]
    # the other splits are exactly what evaluating them without the external cohort gives
    without = evaluate_predictions({"m": table[table["split"] != "external"]}, n_resamples=30)
    pd.testing.assert_frame_equal(metrics[metrics["cohort"] != "external"].reset_index(drop=True), without)
    assert (without["note"] == "").all() and not_evaluated(without) == []
    cases_only = table.assign(label=np.where(table["split"] == "test", 1, table["label"]))
    note = evaluate_predictions({"m": cases_only}, n_resamples=30).set_index("cohort").loc["test", "note"]
    assert "all 40 scored patient(s) of this split are cases (label 1)" in note




def test_the_score_check_of_the_statistics_names_the_first_bad_value():
    from osteomet.evaluation import auc

    with pytest.raises(EvaluationInputError, match=r"^scores must be numeric; element 2 \(0-based\) is 'x'$"):
        auc([0, 1, 1, 0], [0.1, 0.4, "x", "y"])


def test_threshold_split_fallbacks():
    without_val = _table(0, 1.0).query("split != 'val'")
    assert choose_threshold(without_val)[1] == "train"
    with pytest.raises(EvaluationInputError, match="no scored, labelled patients of both classes in split 'val'"):
        choose_threshold(without_val, "val")
