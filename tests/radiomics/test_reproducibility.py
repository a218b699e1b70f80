"""ICC by radiomics feature class: values against psych::ICC fixtures and the ANOVA by hand, table checks, plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from osteomet.errors import MissingInputError, OutputExistsError
from osteomet.evaluation.icc import summarize_by_class
from osteomet.radiomics.features import FeatureTableError, read_feature_table
from osteomet.radiomics.reproducibility import CLASSES, feature_class, feature_table_icc, plot_icc_by_class, run_icc
from tests.evaluation.r_reference import icc_data, icc_matrix, icc_results


def _anova_icc(x: np.ndarray) -> tuple[float, float]:
    """ICC(2,1) and ICC(3,1) of an n x 2 matrix from the two-way ANOVA mean squares (Shrout & Fleiss)."""
    n, k = x.shape
    grand = x.mean()
    ssr = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ssc = n * ((x.mean(axis=0) - grand) ** 2).sum()
    sse = ((x - grand) ** 2).sum() - ssr - ssc
    msr, msc, mse = ssr / (n - 1), ssc / (k - 1), sse / ((n - 1) * (k - 1))
    return (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n), (msr - mse) / (msr + (k - 1) * mse)


def _tables(rng: np.random.Generator, n: int = 12) -> tuple[pd.DataFrame, pd.DataFrame]:
    names = ["original_firstorder_Mean", "original_shape_MeshVolume", "wavelet-LLH_glcm_Contrast",
             "log-sigma-1-0-mm-3D_gldm_DependenceEntropy", "original_glrlm_RunEntropy", "original_glszm_ZoneEntropy",
             "original_ngtdm_Busyness", "original_firstorder_Energy"]
    truth = rng.normal(size=(n, len(names))) * rng.uniform(1, 50, len(names))
    ids = [f"C{i:02d}" for i in range(n)]
    manual = pd.DataFrame(truth + rng.normal(scale=0.2, size=truth.shape), columns=names)
    predicted = pd.DataFrame(truth + rng.normal(scale=0.5, size=truth.shape) + 0.3, columns=names)
    manual.insert(0, "case_id", ids)
    predicted.insert(0, "case_id", ids)
    predicted = predicted.sample(frac=1.0, random_state=0).reset_index(drop=True)  # rows matched by id, not order
    return manual, predicted


def test_feature_class_from_pyradiomics_names() -> None:
    assert feature_class("original_firstorder_Mean") == "firstorder"
    assert feature_class("wavelet-LLH_glcm_Contrast") == "glcm"
    assert feature_class("log-sigma-1-0-mm-3D_gldm_DependenceEntropy") == "gldm"
    assert feature_class("ct_original_shape_Sphericity") == "shape"  # osteomet's sequence prefix
    assert feature_class("original_shape2D_Perimeter") == "shape"
    assert feature_class("volume_ml") is None


def test_icc_column_matches_psych_fixtures_and_anova(tmp_path: Path) -> None:
    """Two features whose values are the psych::ICC fixture data (2 raters): the ICC equals R's."""
    data = icc_data()
    cases = ["two_masks_n25", "no_agreement"]
    matrices = {c: icc_matrix(data, c) for c in cases}
    n = max(m.shape[0] for m in matrices.values())
    padded = {c: np.vstack([m, np.full((n - m.shape[0], 2), np.nan)]) for c, m in matrices.items()}
    ids = [f"P{i}" for i in range(n)]
    manual = pd.DataFrame({"case_id": ids, "original_glcm_Contrast": padded[cases[0]][:, 0],
                           "original_firstorder_Mean": padded[cases[1]][:, 0]})
    predicted = pd.DataFrame({"case_id": ids, "original_glcm_Contrast": padded[cases[0]][:, 1],
                              "original_firstorder_Mean": padded[cases[1]][:, 1]})
    manual.to_csv(tmp_path / "manual.csv", index=False)
    predicted.to_parquet(tmp_path / "predicted.parquet")
    results = icc_results().set_index(["case", "type"])
    for model, psych_type, which in (("2,1", "ICC2", 0), ("3,1", "ICC3", 1)):
        _, paths = run_icc(tmp_path / "manual.csv", tmp_path / "predicted.parquet", tmp_path / f"icc_{which}.csv",
                                model=model)
        out = pd.read_csv(paths["icc"]).set_index("feature")
        assert list(out.columns) == ["class", "icc", "ci_low", "ci_high", "n_cases"]
        for feature, case in (("original_glcm_Contrast", cases[0]), ("original_firstorder_Mean", cases[1])):
            assert out.loc[feature, "icc"] == pytest.approx(_anova_icc(matrices[case])[which], abs=1e-9)
            ref = results.loc[(case, psych_type)]
            assert out.loc[feature, "icc"] == pytest.approx(ref["icc"], abs=1e-6)
            assert out.loc[feature, "ci_low"] == pytest.approx(ref["ci_low"], abs=1e-6)
            assert out.loc[feature, "ci_high"] == pytest.approx(ref["ci_high"], abs=1e-6)
            assert out.loc[feature, "n_cases"] == matrices[case].shape[0]
        assert out.loc["original_glcm_Contrast", "class"] == "glcm"
        assert paths["summary"].is_file() and paths["plot"].is_file()


def test_rows_are_matched_by_case_id_and_summary_by_class(tmp_path: Path) -> None:
    manual, predicted = _tables(np.random.default_rng(0))
    report = feature_table_icc(manual.set_index("case_id"), predicted.set_index("case_id"))
    aligned = predicted.set_index("case_id").loc[manual["case_id"]]
    for feature in manual.columns[1:]:
        x = np.column_stack([manual[feature].to_numpy(), aligned[feature].to_numpy()])
        row = report.per_feature.set_index("feature").loc[feature]
        assert row["icc"] == pytest.approx(_anova_icc(x)[0])
        assert row["ci_low"] < row["icc"] < row["ci_high"]
    by_class = report.by_class.set_index("class")
    first = report.per_feature[report.per_feature["class"] == "firstorder"]["icc"]
    assert by_class.loc["firstorder", ["min", "median", "max"]].tolist() == \
        pytest.approx([first.min(), first.median(), first.max()])
    assert by_class.loc["firstorder", "n_features"] == 2 and by_class.loc["all", "n_features"] == 8
    assert list(by_class.index) == ["firstorder", "shape", "glcm", "gldm", "glrlm", "glszm", "ngtdm", "all"]
    png = tmp_path / "box.png"
    plot_icc_by_class(report.per_feature, png)
    image = imread(png)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
    assert summarize_by_class(report.per_feature, class_column="class", order=CLASSES).equals(report.by_class)


def test_missing_values_constant_features_and_notes() -> None:
    manual, predicted = _tables(np.random.default_rng(1))
    manual.loc[0, "original_firstorder_Mean"] = np.nan
    manual["original_ngtdm_Busyness"] = 1.0
    predicted["original_ngtdm_Busyness"] = 1.0
    manual["error"] = None  # radiomics extract's column: ignored
    manual["diagnostics_Versions_PyRadiomics"] = "3.0.1"
    manual["age"] = 60  # numeric but not a feature: left out with a note
    predicted["age"] = 61
    report = feature_table_icc(manual.set_index("case_id"), predicted.set_index("case_id"))
    table = report.per_feature.set_index("feature")
    assert table.loc["original_firstorder_Mean", "n_cases"] == 11
    assert np.isnan(table.loc["original_ngtdm_Busyness", "icc"])
    assert "age" not in table.index
    assert any("not pyradiomics feature names" in note and "age" in note for note in report.notes)
    assert any("undefined ICC" in note for note in report.notes)


def test_bad_tables_are_reported(tmp_path: Path) -> None:
    manual, predicted = _tables(np.random.default_rng(2))
    a, b = manual.set_index("case_id"), predicted.set_index("case_id")
    with pytest.raises(FeatureTableError, match=r"in manual only: C03.*in predicted only: X99"):
        feature_table_icc(a, b.rename(index={"C03": "X99"}))
    bad = a.copy()
    bad["wavelet-LLH_glcm_Contrast"] = bad["wavelet-LLH_glcm_Contrast"].astype(object)
    bad.loc["C05", "wavelet-LLH_glcm_Contrast"] = "high"
    with pytest.raises(FeatureTableError, match=r"'wavelet-LLH_glcm_Contrast' is not numeric \(C05='high'\)"):
        feature_table_icc(bad, b)
    with pytest.raises(FeatureTableError, match="in predicted only: original_glcm_Extra"):
        feature_table_icc(a, b.assign(original_glcm_Extra=1.0))
    with pytest.raises(ValueError, match="ICC model"):
        feature_table_icc(a, b, model="1,1")
    manual.rename(columns={"case_id": "id"}).to_csv(tmp_path / "noid.csv", index=False)
    with pytest.raises(FeatureTableError, match=r"noid.csv: no 'patient_id' \(or 'case_id'\) column"):
        read_feature_table(tmp_path / "noid.csv")
    pd.concat([manual, manual.iloc[:1]]).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(FeatureTableError, match="duplicated case_id value.*C00"):
        read_feature_table(tmp_path / "dup.csv")
    with pytest.raises(MissingInputError, match="does not exist"):
        read_feature_table(tmp_path / "nothing.csv")
    manual.to_csv(tmp_path / "manual.csv", index=False)
    with pytest.raises(OutputExistsError, match="overwrite an input"):
        run_icc(tmp_path / "manual.csv", tmp_path / "manual.csv", tmp_path / "manual.csv")
    # patient_id (radiomics extract) is accepted as the id column
    manual.rename(columns={"case_id": "patient_id"}).to_csv(tmp_path / "pid.csv", index=False)
    assert read_feature_table(tmp_path / "pid.csv").columns[0] == "patient_id"
