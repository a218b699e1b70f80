"""Characteristics table (summaries, group tests, BH) checked against scipy and statsmodels computed independently here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from osteomet.evaluation import EvaluationInputError, characteristics_table, write_characteristics_csv
from tests.evaluation.characteristics import CATEGORICAL, CONTINUOUS, header, synthetic_frame


def test_group_tests_match_scipy(frame: pd.DataFrame, table: pd.DataFrame) -> None:
    g0, g1 = frame[frame["label"] == 0], frame[frame["label"] == 1]
    for g in (g0, g1):  # the test data really are normal / non-normal by the KS rule
        x = g["age"].to_numpy()
        assert stats.kstest((x - x.mean()) / x.std(ddof=1), "norm").pvalue > 0.05
    age = header(table, "age")
    assert age["test"] == "t-test" and age["summary"] == "mean (SD)"
    assert age["p"] == pytest.approx(stats.ttest_ind(g0["age"], g1["age"]).pvalue, rel=1e-12)
    psa = header(table, "psa")
    assert psa["test"] == "Mann-Whitney U" and psa["n_missing"] == 3
    expected = stats.mannwhitneyu(g0["psa"].dropna(), g1["psa"].dropna(), alternative="two-sided")
    assert psa["p"] == pytest.approx(expected.pvalue, rel=1e-12)
    centre = header(table, "centre")
    assert centre["test"] == "chi-square"
    assert centre["p"] == pytest.approx(stats.chi2_contingency(pd.crosstab(frame["centre"], frame["label"]))[1])
    hem = header(table, "hematuria")
    assert hem["test"] == "Fisher exact"
    assert hem["p"] == pytest.approx(stats.fisher_exact(pd.crosstab(frame["hematuria"], frame["label"])).pvalue)


def test_bh_adjustment_matches_statsmodels(table: pd.DataFrame) -> None:
    headers = table[(table["level"] == "") & (table["variable"] != "n")]
    np.testing.assert_allclose(headers["p_adj"], multipletests(headers["p"], method="fdr_bh")[1])


def test_counts_and_percentages(frame: pd.DataFrame, table: pd.DataFrame) -> None:
    row = table[(table["variable"] == "centre") & (table["level"] == "C2")].iloc[0]
    c2 = frame["centre"] == "C2"
    n1 = int((c2 & (frame["label"] == 1)).sum())
    assert row["label=1"] == f"{n1} ({100 * n1 / (frame['label'] == 1).sum():.1f}%)"
    assert table.iloc[0]["overall"] == str(len(frame))


def test_write_csv_is_atomic_and_round_trips(table: pd.DataFrame, tmp_path) -> None:
    path = write_characteristics_csv(table, tmp_path / "out" / "table1.csv")
    back = pd.read_csv(path, keep_default_na=False, na_values=["NaN", ""])
    assert list(back.columns) == list(table.columns)
    assert back["p"].dropna().to_numpy() == pytest.approx(table["p"].dropna().to_numpy())
    assert [p.name for p in path.parent.iterdir()] == ["table1.csv"]  # no temp file left


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns="psa"), "not in the data"),
        (lambda f: f.assign(label=f["label"].where(f.index > 2)), "missing value"),
        (lambda f: f.assign(label=0), "only one class"),
        (lambda f: f.assign(psa="high"), "not numeric"),
    ],
)
def test_errors(mutate, message: str) -> None:
    with pytest.raises(EvaluationInputError, match=message):
        characteristics_table(mutate(synthetic_frame()), continuous=CONTINUOUS, categorical=CATEGORICAL)
