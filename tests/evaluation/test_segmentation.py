"""Per-case overlap (hand-computed cases, empty-mask convention) and paired model comparison."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from osteomet.evaluation import EvaluationInputError, compare_models, overlap


def test_overlap_hand_computed() -> None:
    pred = np.zeros((4, 4, 2), bool)
    ref = np.zeros((4, 4, 2), bool)
    pred[0, :3, 0] = True  # 3 voxels
    ref[0, 1:, 0] = True  # 3 voxels, 2 shared
    ref[3, 3, 1] = True  # 4th reference voxel
    m = overlap(pred, ref)
    assert m == pytest.approx({"dice": 2 * 2 / (3 + 4), "precision": 2 / 3, "recall": 2 / 4})


def test_empty_mask_convention() -> None:
    empty, one = np.zeros((3, 3)), np.eye(3)
    assert overlap(empty, empty) == {"dice": 1.0, "precision": 1.0, "recall": 1.0}
    missed = overlap(empty, one)
    assert missed["dice"] == 0.0 and missed["recall"] == 0.0 and math.isnan(missed["precision"])
    false_alarm = overlap(one, empty)
    assert false_alarm["dice"] == 0.0 and false_alarm["precision"] == 0.0 and math.isnan(false_alarm["recall"])


def test_overlap_shape_mismatch() -> None:
    with pytest.raises(EvaluationInputError, match="shape"):
        overlap(np.zeros((2, 3)), np.zeros((3, 2)))


def _per_case() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 0.9, 25)
    rows = []
    for name, shift in (("unetr", 0.0), ("nnunet", 0.05), ("swin", 0.01)):
        dice = np.clip(base + shift + rng.normal(0, 0.04, 25), 0, 1)
        rows += [{"case_id": f"P{i:02d}", "model": name, "dice": d} for i, d in enumerate(dice)]
    frame = pd.DataFrame(rows)
    frame.loc[(frame["model"] == "swin") & (frame["case_id"] == "P03"), "dice"] = np.nan  # undefined case
    return frame.sample(frac=1.0, random_state=1)  # row order must not matter


@pytest.mark.parametrize("method", ["holm", "bh"])
def test_compare_models_matches_scipy(method: str) -> None:
    frame = _per_case()
    table = compare_models(frame, metric="dice", adjust=method)
    assert len(table) == 3
    wide = frame.pivot(index="case_id", columns="model", values="dice")
    for _, row in table.iterrows():
        pair = wide[[row["model_a"], row["model_b"]]].dropna()
        a, b = pair.iloc[:, 0], pair.iloc[:, 1]
        assert row["n"] == len(pair)
        assert row["mean_diff"] == pytest.approx((a - b).mean())
        t = stats.ttest_rel(a, b)
        w = stats.wilcoxon(a, b)
        assert (row["t_stat"], row["t_p"]) == pytest.approx((t.statistic, t.pvalue))
        assert (row["wilcoxon_stat"], row["wilcoxon_p"]) == pytest.approx((w.statistic, w.pvalue))
    sm = {"holm": "holm", "bh": "fdr_bh"}[method]
    np.testing.assert_allclose(table["t_p_adj"], multipletests(table["t_p"], method=sm)[1])
    np.testing.assert_allclose(table["wilcoxon_p_adj"], multipletests(table["wilcoxon_p"], method=sm)[1])
    with_swin = (table["model_a"] == "swin") | (table["model_b"] == "swin")
    assert table.loc[with_swin, "n"].tolist() == [24, 24] and table.loc[~with_swin, "n"].tolist() == [25]


def test_compare_models_errors() -> None:
    frame = _per_case()
    with pytest.raises(EvaluationInputError, match="column"):
        compare_models(frame, metric="hd95")
    with pytest.raises(EvaluationInputError, match="more than once"):
        compare_models(pd.concat([frame, frame.head(1)]))
    with pytest.raises(EvaluationInputError, match="two models"):
        compare_models(frame[frame["model"] == "unetr"])


def test_summarise_overlap_per_group_with_undefined_cases_counted() -> None:
    """The one per-patient Dice summary (MRI per split, CT per model): bootstrap CI of the mean over cases."""
    from osteomet.evaluation.bootstrap import bootstrap_mean
    from osteomet.evaluation.segmentation import summarise_overlap

    table = pd.DataFrame({"model": ["b", "b", "b", "a", "a"], "dice": [0.2, 0.4, 0.9, 0.5, 0.7],
                          "precision": [np.nan, 0.5, 1.0, 0.6, 0.8], "recall": [np.nan] * 3 + [0.1, 0.3]})
    summary = summarise_overlap(table, "model", n_resamples=500, seed=3)
    assert list(summary.columns) == ["model", "metric", "n", "n_undefined", "mean", "ci_low", "ci_high", "sd",
                                     "median", "q1", "q3"]
    assert summary[["model", "metric"]].values.tolist() == [["b", "dice"], ["b", "precision"], ["b", "recall"],
                                                            ["a", "dice"], ["a", "precision"], ["a", "recall"]]
    row = summary.set_index(["model", "metric"]).loc[("b", "precision")]
    ci = bootstrap_mean([0.5, 1.0], 500, 3)
    assert (row["n"], row["n_undefined"]) == (2, 1)
    assert (row["mean"], row["ci_low"], row["ci_high"]) == pytest.approx((0.75, ci.low, ci.high))
    assert row["median"] == pytest.approx(0.75) and row["sd"] == pytest.approx(np.std([0.5, 1.0], ddof=1))
    empty = summary.set_index(["model", "metric"]).loc[("b", "recall")]
    assert empty["n"] == 0 and empty["n_undefined"] == 3 and np.isnan(empty["mean"]) and np.isnan(empty["ci_low"])
