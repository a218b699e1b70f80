"""`osteomet ct detect`: train, predict, resume and refusal to overwrite."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from osteomet.cli.main import app

runner = CliRunner()


def _run(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output



def test_detect_train_then_predict(ct_cohort: Path, tmp_path: Path) -> None:
    run, pred = tmp_path / "run", tmp_path / "pred"
    output = _run("ct", "detect", "train", "-m", ct_cohort, "-o", run, "--config", "tiny", "--model", "densenet121",
                  "--max-epochs", "1")
    assert "lesion_fraction" in output and "densenet121: final validation AUC" in output  # tiny: weights final
    patients = pd.read_csv(run / "patients.csv")
    assert set(patients["split"]) == {"train", "val", "test"}
    _run("ct", "detect", "predict", "-m", ct_cohort, "--model", run, "-o", pred, "--n-boot", "50", "--cache", run / "slices")
    metrics = pd.read_csv(pred / "densenet121" / "metrics.csv")
    assert {"auc", "precision", "recall", "f1"} <= set(metrics["metric"])
    # rerunning training into the same folder is refused instead of overwriting the model
    result = runner.invoke(app, ["ct", "detect", "train", "-m", str(ct_cohort), "-o", str(run), "--config", "tiny",
                                 "--model", "densenet121", "--max-epochs", "1"])
    assert result.exit_code == 2 and "already" in result.output and "--resume" in result.output
    # --resume continues the recorded run for one more epoch
    output = _run("ct", "detect", "train", "-m", ct_cohort, "-o", run, "--model", "densenet121", "--max-epochs", "2",
                  "--resume")
    assert pd.read_csv(run / "densenet121" / "history.csv")["epoch"].tolist() == [0, 1]
    assert (pred / "comparison.csv").is_file() and (pred / "densenet121" / "gradcam" / "localisation.json").is_file()
