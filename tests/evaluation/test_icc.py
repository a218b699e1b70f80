"""ICC against psych::ICC (committed fixtures, live R when installed) and feature summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osteomet.evaluation import EvaluationInputError, feature_class, feature_icc, icc, icc_table, summarize_by_class
from osteomet.evaluation.icc import PSYCH_NAMES
from tests.evaluation.r_reference import TOL, icc_data, icc_matrix, icc_results, requires_r, run_r

COLUMNS = ["icc", "ci_low", "ci_high", "f", "df1", "df2", "p"]


def _compare(ratings: np.ndarray, ref: pd.DataFrame) -> None:
    ours = icc_table(ratings).set_index("type")
    ref = ref.set_index("type")
    assert set(ours.index) == set(ref.index)
    for name in ref.index:
        for col in COLUMNS:
            rtol = 1e-6 if col == "p" else 0  # p-values can be ~1e-30: compare relatively
            np.testing.assert_allclose(
                ours.loc[name, col],
                ref.loc[name, col],
                atol=TOL if col != "p" else 1e-12,
                rtol=rtol,
                err_msg=f"{name} {col}",
            )


@pytest.mark.parametrize("case", sorted(icc_results()["case"].unique()))
def test_matches_psych_fixtures(case: str) -> None:
    ref = icc_results()
    _compare(icc_matrix(icc_data(), case), ref[ref["case"] == case])


def test_shrout_fleiss_published_values() -> None:
    """Shrout & Fleiss (1979) Table 4: ICC(1,1)=.17, ICC(2,1)=.29, ICC(3,1)=.71, ICC(1,k)=.44, (2,k)=.62, (3,k)=.91."""
    x = icc_matrix(icc_data(), "shrout_fleiss_1979")
    assert icc(x, "2,1").icc == pytest.approx(0.29, abs=0.005)
    assert icc(x, "3,1").icc == pytest.approx(0.71, abs=0.005)
    assert icc(x, "3,k").icc == pytest.approx(0.91, abs=0.005)
    assert icc(x, "1,1").icc == pytest.approx(0.17, abs=0.005)
    assert icc(x, "1,k").icc == pytest.approx(0.44, abs=0.005)
    assert icc(x, "2,k").icc == pytest.approx(0.62, abs=0.005)


def test_icc_picks_the_requested_row() -> None:
    x = icc_matrix(icc_data(), "three_raters_bias")
    table = icc_table(x).set_index("model")
    for model in PSYCH_NAMES:
        assert tuple(icc(x, model)) == pytest.approx(tuple(table.loc[model, COLUMNS]))
    assert icc(x, "ICC(3,1)") == icc(x, "3,1")


def test_errors() -> None:
    with pytest.raises(EvaluationInputError, match="unknown ICC model"):
        icc(np.ones((5, 2)), "4,1")
    with pytest.raises(EvaluationInputError, match="NaN"):
        icc(np.array([[1.0, 2.0], [np.nan, 1.0], [3.0, 3.0]]))
    with pytest.raises(EvaluationInputError, match="2 subjects and 2 raters"):
        icc(np.ones((5, 1)))


def test_feature_icc_and_class_summary() -> None:
    rng = np.random.default_rng(0)
    patients = [f"P{i}" for i in range(30)]
    names = [
        "t2_original_firstorder_Mean",
        "t2_original_glcm_Contrast",
        "adc_original_glcm_Idm",
        "t2_original_shape_Sphericity",
    ]
    truth = rng.normal(size=(30, 4)) * [1, 2, 3, 4]
    manual = pd.DataFrame(truth + rng.normal(scale=0.1, size=(30, 4)), index=patients, columns=names)
    auto = pd.DataFrame(truth + rng.normal(scale=[0.1, 3, 0.5, 1], size=(30, 4)), index=patients, columns=names)
    auto.iloc[0, 0] = np.nan  # one missing value drops that patient for that feature only
    auto = auto.iloc[::-1]  # order by patient must not matter
    per_feature = feature_icc(manual, auto, model="2,1")
    assert list(per_feature["feature_class"]) == ["firstorder", "glcm", "glcm", "shape"]
    assert list(per_feature["n"]) == [29, 30, 30, 30]
    expected = icc(np.column_stack([manual.iloc[:, 1], auto.loc[patients].iloc[:, 1]]), "2,1")
    assert per_feature.iloc[1]["icc"] == pytest.approx(expected.icc)
    summary = summarize_by_class(per_feature).set_index("feature_class")
    glcm = per_feature[per_feature["feature_class"] == "glcm"]["icc"]
    assert summary.loc["glcm", ["min", "median", "max"]].tolist() == pytest.approx(
        [glcm.min(), glcm.median(), glcm.max()]
    )
    assert summary.loc["all", "n_features"] == 4
    assert feature_class("original_shape2D_Elongation") == "shape2D"


@pytest.mark.r
@requires_r
def test_matches_live_psych_on_fresh_random_data(tmp_path) -> None:
    seed = int(np.random.SeedSequence().entropy % 2**32)
    print(f"live psych comparison seed: {seed}")
    rng = np.random.default_rng(seed)
    frames, matrices = [], {}
    for i, (n, k, noise) in enumerate([(8, 2, 0.5), (20, 3, 1.0), (40, 2, 3.0), (15, 5, 0.2), (10, 2, 10.0)]):
        x = rng.normal(size=(n, 1)) + rng.normal(size=(1, k)) * 0.3 + rng.normal(scale=noise, size=(n, k))
        matrices[f"live{i}"] = x
        frames.append(
            pd.DataFrame(
                {
                    "case": f"live{i}",
                    "subject": np.repeat(np.arange(1, n + 1)[None, :], k, axis=0).ravel(),
                    "rater": np.repeat(np.arange(1, k + 1), n),
                    "value": x.T.ravel(),
                }
            )
        )
    results = run_r("icc", pd.concat(frames, ignore_index=True), tmp_path)
    for case, x in matrices.items():
        _compare(x, results[results["case"] == case])
