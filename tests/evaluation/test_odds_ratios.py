"""Odds ratios of the characteristics table checked against statsmodels formula fits and R's glm (aliased columns)."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from osteomet.evaluation import characteristics_table
from osteomet.evaluation.odds_ratios import aliased_columns
from tests.evaluation.characteristics import header, synthetic_frame
from tests.evaluation.r_reference import FIXTURES, requires_r


def test_odds_ratios_match_statsmodels_formula_fits(frame: pd.DataFrame, table: pd.DataFrame) -> None:
    data = frame.assign(centre=frame["centre"].astype("category"))
    uni = smf.logit("label ~ psa", data=data.dropna(subset=["psa"])).fit(disp=0)
    psa = header(table, "psa")
    assert psa["or_uni"] == pytest.approx(np.exp(uni.params["psa"]), rel=1e-6)
    assert [psa["or_uni_low"], psa["or_uni_high"]] == pytest.approx(
        np.exp(uni.conf_int().loc["psa"]).tolist(), rel=1e-6
    )
    assert psa["p_uni"] == pytest.approx(uni.pvalues["psa"], rel=1e-6)
    multi = smf.logit("label ~ age + psa + C(centre) + C(isup) + C(hematuria)", data=data.dropna()).fit(disp=0)
    isup3 = table[(table["variable"] == "isup") & (table["level"] == "3")].iloc[0]
    assert isup3["or_multi"] == pytest.approx(np.exp(multi.params["C(isup)[T.3]"]), rel=1e-6)
    assert isup3["p_multi"] == pytest.approx(multi.pvalues["C(isup)[T.3]"], rel=1e-6)
    age = header(table, "age")
    assert age["or_multi_high"] == pytest.approx(np.exp(multi.conf_int().loc["age", 1]), rel=1e-6)
    ref = table[(table["variable"] == "isup") & (table["level"] == "1")].iloc[0]
    assert ref["or_ref"] == "ref" and ref["or_uni"] == 1.0


def test_separation_gives_nan_with_warning() -> None:
    frame = synthetic_frame(1, 60)
    frame["marker"] = np.where(frame["label"] == 1, "pos", "neg")  # perfectly separates the label
    with pytest.warns(RuntimeWarning, match="not fitted"):
        out = characteristics_table(frame, continuous=["age"], categorical=["marker"])
    row = out[(out["variable"] == "marker") & (out["level"] == "pos")].iloc[0]
    assert np.isnan(row["or_uni"])


# --- aliased (exactly collinear) columns, as R's glm reports them -------------------------------

GLM_SCRIPT = FIXTURES / "glm_aliased.R"


TERMS = {  # R's coefficient name -> (variable, level) of the table
    "age": ("age", ""), "psa": ("psa", ""), "gleason_group7": ("gleason_group", "7"),
    "gleason_group>=8": ("gleason_group", ">=8"), "psa_group10-100": ("psa_group", "10-100"),
    "psa_group>100": ("psa_group", ">100"), "isup_group4": ("isup_group", "4"), "isup_group5": ("isup_group", "5"),
    "hematuria1": ("hematuria", "1"),
}


def collinear_clinical_frame(seed: int = 0, n: int = 300) -> pd.DataFrame:
    """Manifest-like clinical columns where ISUP follows from Gleason (6 -> 1, 7 -> 2/3, 8 -> 4, 9-10 -> 5)."""
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.4).astype(int)
    high = rng.random(n) < 0.3 + 0.3 * label
    gleason = np.where(high, rng.choice([8, 9, 10], n), rng.choice([6, 7], n, p=[0.3, 0.7]))
    isup = np.select([gleason == 6, gleason == 7, gleason == 8], [1, rng.choice([2, 3], n), 4], 5)
    return pd.DataFrame({"label": label, "age": rng.normal(70, 7, n), "psa": np.exp(rng.normal(2.5, 1.2, n) + 0.7 * label),
                         "gleason": gleason, "isup": isup, "hematuria": (rng.random(n) < 0.3).astype(int)})


def _compare_with_glm(table: pd.DataFrame, r: pd.DataFrame) -> None:
    for row in r.itertuples(index=False):
        if row.term == "(Intercept)":
            continue
        var, lev = TERMS[row.term]
        ours = table[(table["variable"] == var) & (table["level"] == lev)].iloc[0]
        got = ours[["or_multi", "or_multi_low", "or_multi_high", "p_multi"]].to_numpy(dtype=float)
        expected = np.array([row.or_, row.or_low, row.or_high, row.p], dtype=float)
        if np.isnan(expected[0]):  # R: NA coefficient (aliased)
            assert np.isnan(got).all(), row.term
            assert ours["or_note"].startswith("multivariable: aliased with "), ours["or_note"]
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-5, err_msg=row.term)
            assert ours["or_note"] == ""


def _study_table(frame: pd.DataFrame) -> pd.DataFrame:
    from osteomet.evaluation.study_characteristics import study_characteristics

    with pytest.warns(RuntimeWarning, match=r"isup_group=5 \(aliased with gleason_group=>=8 - isup_group=4\)"):
        return study_characteristics(frame)


def test_collinear_gleason_and_isup_groups_match_r_glm_fixture() -> None:
    """glm(label ~ ..., binomial) on committed data (fixtures/glm_aliased.R): NA for isup_group5, the rest fitted."""
    data = pd.read_csv(FIXTURES / "glm_aliased_data.csv")
    r = pd.read_csv(FIXTURES / "glm_aliased_results.csv").rename(columns={"or": "or_"})
    assert r.loc[r["term"] == "isup_group5", "or_"].isna().all()  # R did call it aliased
    table = _study_table(data)
    _compare_with_glm(table, r)
    row = table[(table["variable"] == "isup_group") & (table["level"] == "5")].iloc[0]
    assert row["or_note"] == "multivariable: aliased with gleason_group=>=8 - isup_group=4"
    assert np.isfinite(row["or_uni"])  # alone, ISUP 5 is estimable
    ref = table[(table["variable"] == "isup_group") & (table["level"] == "<=3")].iloc[0]
    assert ref["or_multi"] == 1.0  # the reference level stays OR 1: the variable's other level was fitted


@requires_r
def test_collinear_columns_match_live_r_glm(tmp_path) -> None:
    frame = collinear_clinical_frame(seed=4, n=250)
    src, out = tmp_path / "clinical.csv", tmp_path / "glm.csv"
    frame.to_csv(src, index=False, float_format="%.17g")
    proc = subprocess.run(["Rscript", str(GLM_SCRIPT), str(src), str(out)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    _compare_with_glm(_study_table(pd.read_csv(src)), pd.read_csv(out).rename(columns={"or": "or_"}))


def test_aliased_columns_by_hand() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=40), (rng.random(40) < 0.5).astype(float)
    x = pd.DataFrame({"a": a, "b": b, "sum": a + b, "twice_b_minus_1": 2 * b - 1, "noisy": a + 1e-3 * rng.normal(size=40),
                      "empty": np.zeros(40)})
    notes = aliased_columns(x)
    assert notes == {
        "sum": "aliased with a + b",
        "twice_b_minus_1": "aliased with -intercept + 2*b",
        "empty": "aliased: zero for every patient in the model (no patient at this level)",
    }
    assert aliased_columns(x[["a", "b"]]) == {}
    # the order decides which duplicate is dropped, as in R: the later one
    assert list(aliased_columns(x[["sum", "a", "b"]])) == ["b"]


def test_an_aliased_column_leaves_the_others_as_a_fit_without_it() -> None:
    frame = synthetic_frame(2, 150)
    frame["age_months"] = frame["age"] * 12  # the same variable in other units
    with pytest.warns(RuntimeWarning, match=r"age_months \(aliased with 12\*age\)"):
        table = characteristics_table(frame, continuous=["age", "age_months"], categorical=["centre"])
    without = characteristics_table(frame, continuous=["age"], categorical=["centre"])
    dup = header(table, "age_months")
    assert np.isnan(dup[["or_multi", "or_multi_low", "or_multi_high", "p_multi"]].to_numpy(dtype=float)).all()
    assert dup["or_note"] == "multivariable: aliased with 12*age"
    for var, lev in (("age", ""), ("centre", "C2")):
        a = table[(table["variable"] == var) & (table["level"] == lev)].iloc[0]
        b = without[(without["variable"] == var) & (without["level"] == lev)].iloc[0]
        assert a[["or_multi", "or_multi_low", "or_multi_high", "p_multi"]].tolist() == pytest.approx(
            b[["or_multi", "or_multi_low", "or_multi_high", "p_multi"]].tolist(), rel=1e-12)
