"""``osteomet clinical`` on a clinical-only table (no images): a prediction table for every patient."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.data.splits import assign_splits
from osteomet.data.synth.clinical import sample_patients
from osteomet.models.predictions import read_predictions

runner = CliRunner()


def test_a_clinical_only_study(tmp_path: Path) -> None:
    frame = sample_patients(150, seed=4, missing_rate=0.05)
    frame.insert(0, "patient_id", [f"C{i:03d}" for i in range(len(frame))])
    frame["split"] = assign_splits(frame, seed=4)
    columns = ["patient_id", "split", "label", "age", "psa", "gleason", "isup", "hematuria", "leukocyturia"]
    frame[columns].to_csv(tmp_path / "clinical.csv", index=False)
    out = tmp_path / "clinical"
    result = runner.invoke(app, ["clinical", "-m", str(tmp_path / "clinical.csv"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    predictions = read_predictions(out / "predictions.csv")
    assert len(predictions) == 150 and set(predictions["model"]) == {"clinical"}
    assert predictions["prob"].notna().all() and "test" in result.output
    again = runner.invoke(app, ["clinical", "-m", str(tmp_path / "clinical.csv"), "-o", str(out)])
    assert "up to date" in again.output
    pd.DataFrame({"patient_id": ["A"], "comment": ["x"]}).to_csv(tmp_path / "none.csv", index=False)
    bad = runner.invoke(app, ["clinical", "-m", str(tmp_path / "none.csv"), "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "clinical-only table" in " ".join(bad.output.split())
