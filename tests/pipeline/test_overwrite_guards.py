"""Nothing the user gave is overwritten: outputs that are inputs, and folders osteomet did not make, are refused."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from osteomet.cli.main import app

runner = CliRunner()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(args: list[str], *protected: Path) -> str:
    before = [_digest(p) for p in protected]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert [_digest(p) for p in protected] == before
    return " ".join(result.output.split())


def test_evaluate_cohort_refuses_to_write_over_its_manifest(mri_cohort: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    shutil.copy(mri_cohort, manifest)
    output = _refused(["evaluate", "cohort", "-m", str(manifest), "-o", str(manifest)], manifest)
    assert "would overwrite an input" in output


def test_prediction_and_feature_tables_are_not_overwritten(tmp_path: Path) -> None:
    predictions = tmp_path / "a.csv"
    pd.DataFrame({"patient_id": ["P1", "P2", "P3", "P4"], "label": [0, 1, 0, 1], "split": ["train", "train", "val", "val"],
                  "prob": [0.1, 0.8, 0.3, 0.7]}).to_csv(predictions, index=False)
    out = tmp_path / "eval"
    assert runner.invoke(app, ["evaluate", "predictions", "-p", str(predictions), "-o", str(out),
                               "--n-resamples", "20"]).exit_code == 0
    metrics = out / "metrics.csv"
    output = _refused(["evaluate", "predictions", "-p", str(metrics), "-o", str(out)], metrics)
    assert "metrics.csv" in output and "overwrite an input" in output

    features = tmp_path / "features.csv"
    features.write_text("patient_id,original_firstorder_Mean\nP1,1.0\n")
    output = _refused(["radiomics", "predict", "--model", str(tmp_path), "-f", str(features), "-o", str(features)],
                      features)
    assert "overwrite an input" in output


def test_a_users_folder_is_not_used_as_an_output_folder(mri_cohort: Path, tmp_path: Path) -> None:
    users = tmp_path / "my-results"
    users.mkdir()
    (users / "features.csv").write_text("patient_id,x\nP1,1\n")
    (users / "history.csv").write_text("epoch,loss\n0,1.0\n")
    output = _refused(["radiomics", "extract", "-m", str(mri_cohort), "-o", str(users), "--params", "tiny"],
                      users / "features.csv")
    assert "not written by osteomet" in output
    output = _refused(["preprocess", "mri", "-m", str(mri_cohort), "-o", str(users), "--seg-config", "tiny"],
                      users / "history.csv")
    assert "not written by osteomet" in output
    assert sorted(p.name for p in users.iterdir()) == ["features.csv", "history.csv"]
