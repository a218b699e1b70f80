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
    ("prob", "high", r"column 'prob' must be numeric; row 3 \(patient 'P2'\) has 'high'"),
    ("label", "2", r"column 'label' must be 0, 1 or empty; row 3 \(patient 'P2'\) has 2"),
    ("split", "training", r"column 'split' must be one of .* row 3 \(patient 'P2'\) has 'training'"),
    ("prob", "inf", r"column 'prob' must be finite; row 3"),
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
