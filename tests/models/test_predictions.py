"""The prediction-table contract: what is written validates, what is read is completed and checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osteomet.models.predictions import (
    COLUMNS,
    PredictionTableError,
    by_model,
    prediction_table,
    read_predictions,
    write_predictions,
)


def _scores(seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = np.tile([0, 1], 30)
    prob = 1 / (1 + np.exp(-(shift * label + rng.normal(0, 1, label.size))))
    return pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(label.size)], "prob": prob, "label": label,
                         "split": "test"})


def test_round_trip_of_a_written_table(tmp_path: Path) -> None:
    table = prediction_table(["P1", "P2", "P3"], ["train", "test", "external"], [1, 0, None], [0.9, 0.2, np.nan],
                             "radiomics")
    assert tuple(table.columns) == COLUMNS
    path = write_predictions(table, tmp_path / "predictions.csv")
    back = read_predictions(path)
    pd.testing.assert_frame_equal(back, table)
    assert np.isnan(back.loc[2, "label"]) and np.isnan(back.loc[2, "prob"])
    parquet = write_predictions(table, tmp_path / "p.parquet")
    pd.testing.assert_frame_equal(read_predictions(parquet), table)


def test_a_users_minimal_table_is_completed_from_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "mine.csv").write_text("patient_id;prob\nA;2.5\nB;-1.0\n")  # scores, not probabilities; semicolons
    manifest = pd.DataFrame({"patient_id": ["A", "B", "C"], "label": [1, 0, 1], "split": ["test", "test", "val"]})
    table = read_predictions(tmp_path / "mine.csv", manifest)
    assert table["model"].tolist() == ["mine", "mine"] and table["split"].tolist() == ["test", "test"]
    assert table["label"].tolist() == [1.0, 0.0] and table["prob"].tolist() == [2.5, -1.0]
    with pytest.raises(PredictionTableError, match="no 'label' column; pass the cohort manifest"):
        read_predictions(tmp_path / "mine.csv")


@pytest.mark.parametrize("column, value, message", [
    ("prob", "high", r"column 'prob' must be a finite number \(or empty\) in every row; row 2 \(patient 'P2', "
                     r"line 3 of the file\) has 'high'"),
    ("label", "2", r"column 'label' must be 0 or 1 \(or empty\) in every row; row 2 \(patient 'P2', line 3"),
    ("split", "training", r"column 'split' must be one of .* row 2 \(patient 'P2'\) has 'training'"),
    ("prob", "inf", r"column 'prob' must be a finite number .* row 2 \(patient 'P2', line 3 of the file\) has inf"),
    ("patient_id", "P1", r"patient 'P1' appears more than once for model 'm'"),
])
def test_broken_tables_are_refused_naming_file_column_and_row(tmp_path: Path, column: str, value: str,
                                                              message: str) -> None:
    frame = pd.DataFrame({"patient_id": ["P1", "P2"], "split": ["test", "test"], "label": ["1", "0"], "model": "m",
                          "prob": ["0.4", "0.6"]})
    frame.loc[1, column] = value
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(PredictionTableError, match=message) as caught:
        read_predictions(tmp_path / "bad.csv")
    assert "bad.csv" in str(caught.value)


def test_osteomet_writes_probabilities_only_and_several_models_split_apart(tmp_path: Path) -> None:
    with pytest.raises(PredictionTableError, match=r"probability in \[0, 1\]"):
        prediction_table(["P1"], ["test"], [1], [1.7], "deep")
    both = pd.concat([prediction_table(["P1", "P2"], ["test"] * 2, [1, 0], [0.7, 0.1], name)
                      for name in ("clinical", "fusion")])
    write_predictions(both, tmp_path / "all.csv")
    parts = by_model(read_predictions(tmp_path / "all.csv"))
    assert list(parts) == ["clinical", "fusion"] and all(len(p) == 2 for p in parts.values())


def test_bad_prediction_files_are_named(tmp_path):
    path = tmp_path / "pred.csv"
    pd.DataFrame({"patient_id": ["A", "A"], "prob": [0.1, 0.2], "label": [0, 1], "split": ["train"] * 2}).to_csv(path, index=False)
    with pytest.raises(PredictionTableError, match=r"pred\.csv.*'A' appears more than once"):
        read_predictions(path)
    pd.DataFrame({"patient_id": ["A"], "score": [0.1]}).to_csv(path, index=False)
    with pytest.raises(PredictionTableError, match=r"pred\.csv: no 'prob' column"):
        read_predictions(path)
    pd.DataFrame({"patient_id": ["A", "Z"], "prob": [0.1, 0.3]}).to_csv(path, index=False)
    manifest = pd.DataFrame({"patient_id": ["A", "B"], "label": [0, 1], "split": ["train", "train"]})
    with pytest.raises(PredictionTableError, match=r"\['Z'\] are not in the manifest"):
        read_predictions(path, manifest)


def test_non_numeric_scores_name_the_file_the_column_and_the_first_bad_row(tmp_path):
    table = _scores(4, 1.0)
    csv = tmp_path / "model_a.csv"
    text = table.to_csv(index=False).splitlines()
    text[6] = text[6].replace(text[6].split(",")[1], "0.71%", 1)  # line 7 of the file = data row 6 (patient P005)
    text[9] = text[9].replace(text[9].split(",")[1], "high", 1)
    csv.write_text("\n".join(text) + "\n")
    assert not pd.api.types.is_numeric_dtype(pd.read_csv(csv)["prob"])  # as pandas reads it: text, not numbers
    with pytest.raises(PredictionTableError) as info:
        read_predictions(csv)
    assert str(info.value) == (f"{csv}: column 'prob' must be a finite number (or empty) in every row; row 6 "
                               "(patient 'P005', line 7 of the file) has '0.71%', and 1 more row(s)")
    parquet = tmp_path / "model_b.parquet"
    bad = table.assign(prob=table["prob"].map(lambda v: f"{v:.4f}"))  # scores exported as text
    bad.loc[11, "prob"] = "n/a"
    bad.to_parquet(parquet)
    with pytest.raises(PredictionTableError, match=r"model_b\.parquet: column 'prob' .* row 12 \(patient 'P011'\) has 'n/a'$"):
        read_predictions(parquet)
    table.assign(prob=np.where(table.index == 3, np.inf, table["prob"])).to_csv(csv, index=False)
    with pytest.raises(PredictionTableError, match=r"column 'prob' .* row 4 \(patient 'P003', line 5 of the file\) has inf"):
        read_predictions(csv)
    table.assign(label=np.where(table.index == 2, 2, table["label"])).to_csv(csv, index=False)
    with pytest.raises(PredictionTableError, match=r"column 'label' must be 0 or 1 .* row 3 \(patient 'P002', line 4"):
        read_predictions(csv)
    table.assign(prob=np.where(table.index == 2, np.nan, table["prob"])).to_csv(csv, index=False)
    assert read_predictions(csv)["prob"].isna().sum() == 1  # an empty score is an unscored patient, not an error


def test_evaluation_reads_probabilities_only_every_patient_scored_and_labels_as_the_manifest(tmp_path):
    from osteomet.models.predictions import LabelMismatchError, MissingProbabilityError, ProbabilityRangeError

    path = tmp_path / "model.csv"
    path.write_text("patient_id,label,prob\nA,1,0.9\nB,0,1.2\nC,0,\nD,1,-0.5\n")
    manifest = pd.DataFrame({"patient_id": ["A", "B", "C", "D"], "label": [1, 0, 0, 1], "split": ["test"] * 4})
    assert read_predictions(path, manifest)["prob"].tolist()[:2] == [0.9, 1.2]  # scores: the default reader
    with pytest.raises(ProbabilityRangeError, match=r"model\.csv: column 'prob' must be a probability in \[0, 1\]; "
                                                   r"2 row\(s\) are not: row 2 \(patient 'B', line 3 of the file\) "
                                                   r"has 1\.2; row 4 \(patient 'D', line 5 of the file\) has -0\.5$"):
        read_predictions(path, manifest, probabilities=True)
    with pytest.raises(MissingProbabilityError, match=r"model\.csv: 1 patient\(s\) have no probability "
                                                     r"\(empty 'prob'\): row 3 \(patient 'C', line 4 of the file\)$"):
        read_predictions(path, manifest, allow_missing=False)
    flipped = manifest.assign(label=[1, 1, 0, 1])
    with pytest.raises(LabelMismatchError, match=r"model\.csv and cohort\.csv: 1 patient\(s\) have different labels: "
                                                r"patient 'B' \(line 3\): 0 in model\.csv, 1 in the manifest"):
        read_predictions(path, flipped, manifest_name="cohort.csv")
    path.write_text("patient_id,label,prob\nA,,0.9\nB,0,0.2\n")  # a label left empty is taken from the manifest
    assert read_predictions(path, manifest)["label"].tolist() == [1.0, 0.0]
