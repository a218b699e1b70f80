"""``osteomet evaluate``: predictions of two models on a manifest's splits, and the cohort table."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.evaluation import delong_test

runner = CliRunner()


def test_predictions_of_two_models_give_metrics_delong_and_roc_figures(tmp_path: Path):
    rng = np.random.default_rng(4)
    n = 80
    ids = [f"P{i:03d}" for i in range(n)]
    label = np.tile([0, 1], n // 2)
    split = np.array(["train"] * 40 + ["val"] * 16 + ["test"] * 24)
    frame = pd.DataFrame({"patient_id": ids, "label": label, "split": split})
    frame.assign(prob=label * 1.0 + rng.normal(0, 0.8, n)).to_csv(tmp_path / "a.csv", index=False)
    frame.assign(prob=label * 0.3 + rng.normal(0, 0.8, n)).to_csv(tmp_path / "b.csv", index=False)
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "predictions", "-p", str(tmp_path / "a.csv"), "-p", str(tmp_path / "b.csv"),
                                 "--name", "strong", "--name", "weak", "-o", str(out), "--n-resamples", "50",
                                 "--scores"])  # label + noise: scores, not probabilities
    assert result.exit_code == 0, result.output
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["model"]) == {"strong", "weak"} and set(metrics["cohort"]) == {"train", "val", "test"}
    assert (metrics["threshold_split"] == "train+val").all()
    delong = pd.read_csv(out / "delong.csv")
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    test = a["split"] == "test"
    expected = delong_test(a.loc[test, "label"], a.loc[test, "prob"], b.loc[test, "prob"])
    assert delong.set_index("split").loc["test", "z"] == expected.z
    for split in ("train", "val", "test"):
        assert (out / f"roc_{split}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_prediction_file_is_a_clear_error(tmp_path: Path):
    result = runner.invoke(app, ["evaluate", "predictions", "-p", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "nope.csv: prediction file not found" in result.output


def test_cohort_table_from_a_synthetic_manifest(mri_cohort: Path, tmp_path: Path):
    out = tmp_path / "table.csv"
    result = runner.invoke(app, ["evaluate", "cohort", "-m", str(mri_cohort), "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    manifest = pd.read_csv(mri_cohort)
    n_row = table[table["variable"] == "n"].iloc[0]
    assert int(n_row["label=1"]) == int(manifest["label"].sum())
    gleason = table[table["variable"] == "gleason_group"]["level"].dropna().tolist()
    assert gleason == [lvl for lvl in ["6", "7", ">=8"] if lvl in gleason]  # study order, not string order


def test_a_one_class_split_is_named_with_the_reason_and_bad_scores_with_their_row(tmp_path: Path):
    rng = np.random.default_rng(8)
    n = 70
    split = np.array(["train"] * 40 + ["test"] * 20 + ["external"] * 10)
    label = np.where(split == "external", 0, np.tile([0, 1], n // 2))
    frame = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)], "label": label, "split": split,
                          "prob": label + rng.normal(0, 0.8, n)})
    frame.to_csv(tmp_path / "a.csv", index=False)
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "predictions", "-p", str(tmp_path / "a.csv"), "-o", str(out),
                                 "--n-resamples", "20", "--scores"])
    assert result.exit_code == 0, result.output
    assert ("note: a / external: not evaluated: all 10 scored patient(s) of this split are controls (label 0)"
            in " ".join(result.output.split()))
    metrics = pd.read_csv(out / "metrics.csv", keep_default_na=False, na_values=[""])
    assert metrics.loc[metrics["cohort"] == "external", "ci_method"].tolist() == ["none"]
    assert sorted(p.name for p in out.glob("roc_*.png")) == ["roc_test.png", "roc_train.png"]

    # a score written with a decimal comma (quoted by the CSV writer) is text, not a number
    frame.assign(prob=frame["prob"].astype(str).where(frame.index != 4, "0,7")).to_csv(tmp_path / "b.csv", index=False)
    result = runner.invoke(app, ["evaluate", "predictions", "-p", str(tmp_path / "b.csv"), "-o", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    message = " ".join(result.output.split())
    assert "b.csv: column 'prob' must be a finite number (or empty) in every row; row 5 (patient 'P004', line 6" in message


def test_calibration_and_decision_curves_come_with_the_metrics(tmp_path: Path):
    from osteomet.evaluation.calibration import calibration

    rng = np.random.default_rng(9)
    label = np.tile([0, 1], 60)
    prob = 1 / (1 + np.exp(-(1.5 * label - 0.75 + rng.normal(0, 1, label.size))))
    split = np.array(["train"] * 60 + ["val"] * 20 + ["test"] * 40)
    pd.DataFrame({"patient_id": [f"P{i}" for i in range(label.size)], "label": label, "split": split,
                  "prob": prob}).to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", "predictions", "-p", str(tmp_path / "m.csv"), "-o", str(out),
                                 "--n-resamples", "20"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "calibration.csv").set_index("cohort")
    test = split == "test"
    expected = calibration(label[test], prob[test])
    # through a CSV: pandas 2's default float parser may differ from the written value in the last bit
    assert table.loc["test", "calibration_slope"] == pytest.approx(expected.slope, rel=1e-12)
    assert table.loc["test", "brier"] == pytest.approx(expected.brier, rel=1e-12)
    for kind in ("roc", "calibration", "decision_curve"):
        assert (out / f"{kind}_test.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{kind}_test.svg").read_text(encoding='utf-8').lstrip().startswith(("<?xml", "<svg"))
