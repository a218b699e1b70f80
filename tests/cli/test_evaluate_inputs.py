"""``osteomet evaluate predictions`` refuses prediction tables a user broke by hand, naming file, patient and value.

Each test writes real CSV files, edits them the way a user would (a probability typed as 1.2,
a deleted cell, a flipped label, a deleted row) and runs the real command line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.evaluation import delong_test

runner = CliRunner()
N = 60


def _write_models(folder: Path) -> tuple[Path, Path]:
    """Two models' probabilities of the same 60 patients (train, val, test), as their own CSV files."""
    rng = np.random.default_rng(11)
    label = np.tile([0, 1], N // 2)
    split = ["train"] * 30 + ["val"] * 10 + ["test"] * 20
    frame = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(N)], "label": label, "split": split})
    paths = []
    for name, shift in (("a", 1.5), ("b", 0.5)):
        prob = 1 / (1 + np.exp(-(shift * label - shift / 2 + rng.normal(0, 1, N))))
        path = folder / f"{name}.csv"
        frame.assign(prob=prob.round(4)).to_csv(path, index=False)
        paths.append(path)
    return paths[0], paths[1]


def _edit(path: Path, patient: str, column: str, value: str) -> int:
    """Change one cell of ``path`` as a text editor would; returns the line (1-based) edited."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    for number, line in enumerate(lines):
        cells = line.split(",")
        if cells[0] == patient:
            cells[header.index(column)] = value
            lines[number] = ",".join(cells)
            path.write_text("\n".join(lines) + "\n")
            return number + 1
    raise AssertionError(f"{patient} not in {path}")


def _delete_row(path: Path, patient: str) -> None:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.split(",")[0] != patient]
    path.write_text("\n".join(lines) + "\n")


def _evaluate(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["evaluate", "predictions", *args, "--n-resamples", "20"])
    assert "Traceback" not in result.output
    return result.exit_code, " ".join(result.output.split())


def test_a_probability_outside_0_1_is_refused_naming_file_line_patient_and_value(tmp_path: Path):
    a, b = _write_models(tmp_path)
    line = _edit(a, "P007", "prob", "1.2")
    line2 = _edit(a, "P012", "prob", "-0.3")
    out = tmp_path / "eval"
    code, message = _evaluate("-p", str(a), "-p", str(b), "-o", str(out))
    assert code == 2, message
    assert f"{a}: column 'prob' must be a probability in [0, 1]; 2 row(s) are not:" in message
    assert f"row 8 (patient 'P007', line {line} of the file) has 1.2" in message
    assert f"(patient 'P012', line {line2} of the file) has -0.3" in message
    assert "pass --scores" in message
    assert not out.exists()  # nothing half-made is left behind

    # scores rather than probabilities: accepted when the user says so
    code, message = _evaluate("-p", str(a), "-p", str(b), "-o", str(out), "--scores")
    assert code == 0, message


def test_an_empty_probability_is_refused_unless_allow_missing_and_then_counted(tmp_path: Path):
    a, _ = _write_models(tmp_path)
    line = _edit(a, "P031", "prob", "")
    out = tmp_path / "eval"
    code, message = _evaluate("-p", str(a), "-o", str(out))
    assert code == 2, message
    assert (f"{a}: 1 patient(s) have no probability (empty 'prob'): row 32 (patient 'P031', line {line} of the "
            "file)") in message
    assert "--allow-missing" in message

    code, message = _evaluate("-p", str(a), "-o", str(out), "--allow-missing")
    assert code == 0, message
    assert "note: a: 1 patient(s) with no probability left out (--allow-missing)" in message
    record = json.loads((out / "stage.json").read_text(encoding="utf-8"))
    assert record["summary"]["missing_probabilities"] == {"a": 1}
    metrics = pd.read_csv(out / "metrics.csv")
    n = metrics[metrics["metric"] == "auc"].drop_duplicates("cohort").set_index("cohort")["n"]
    assert n.to_dict() == {"train": 30, "val": 9, "test": 20}  # P031 (val) left out


def test_a_label_that_differs_between_two_tables_is_refused_naming_both_files(tmp_path: Path):
    a, b = _write_models(tmp_path)
    _edit(b, "P004", "label", "1")  # P004 is a control in a.csv
    _edit(b, "P009", "label", "0")
    code, message = _evaluate("-p", str(a), "-p", str(b), "-o", str(tmp_path / "eval"))
    assert code == 2, message
    assert "2 patient(s) have different labels in different prediction tables" in message
    assert f"patient 'P004': 0 in {a}, 1 in {b}" in message
    assert f"patient 'P009': 1 in {a}, 0 in {b}" in message


def test_a_label_that_differs_from_the_manifest_is_refused_naming_the_table_and_the_manifest(mri_cohort: Path,
                                                                                             tmp_path: Path):
    manifest = pd.read_csv(mri_cohort, dtype={"patient_id": str})
    table = manifest[["patient_id", "label"]].assign(prob=np.linspace(0.1, 0.9, len(manifest)))
    table.loc[2, "label"] = 1 - table.loc[2, "label"]  # a label flipped in the user's copy
    path = tmp_path / "mine.csv"
    table.to_csv(path, index=False)
    code, message = _evaluate("-p", str(path), "-m", str(mri_cohort), "-o", str(tmp_path / "eval"))
    assert code == 2, message
    patient, flipped = table.loc[2, "patient_id"], table.loc[2, "label"]
    assert f"{path} and {mri_cohort}: 1 patient(s) have different labels" in message
    assert f"patient '{patient}' (line 4): {flipped:g} in mine.csv, {1 - flipped:g} in the manifest" in message


def test_models_on_different_patients_are_compared_only_with_paired_subset(tmp_path: Path):
    a, b = _write_models(tmp_path)
    _delete_row(b, "P045")  # a test patient the second model did not score
    out = tmp_path / "eval"
    code, message = _evaluate("-p", str(a), "-p", str(b), "-o", str(out))
    assert code == 2, message
    assert (f"model 'a' ({a}) and model 'b' ({b}) scored different patients: 1 in 'a' only (e.g. 'P045'), "
            "0 in 'b' only, 59 in both") in message
    assert "--paired-subset" in message
    assert not out.exists()

    code, message = _evaluate("-p", str(a), "-p", str(b), "-o", str(out), "--paired-subset")
    assert code == 0, message
    assert "note: a vs b: compared on the 59 patient(s) both scored (1 in a only, 0 in b only; --paired-subset)" in message
    delong = pd.read_csv(out / "delong.csv").set_index("split")
    assert delong.loc["test", ["n", "n_a_only", "n_b_only"]].tolist() == [19, 1, 0]
    assert delong.loc["train", ["n", "n_a_only", "n_b_only"]].tolist() == [30, 0, 0]
    pa, pb = pd.read_csv(a), pd.read_csv(b)
    shared = pa[pa["split"] == "test"].merge(pb[["patient_id", "prob"]], on="patient_id")
    expected = delong_test(shared["label"], shared["prob_x"], shared["prob_y"])
    assert delong.loc["test", "z"] == expected.z
    record = json.loads((out / "stage.json").read_text(encoding="utf-8"))
    assert record["summary"]["paired_subset"] == [{"model_a": "a", "model_b": "b", "a_only": 1, "b_only": 0,
                                                   "both": 59}]


def test_valid_tables_evaluate_with_no_flag_and_record_zero_unpaired_counts(tmp_path: Path):
    a, b = _write_models(tmp_path)
    out = tmp_path / "eval"
    code, message = _evaluate("-p", str(a), "-p", str(b), "-o", str(out))
    assert code == 0, message
    assert "note:" not in message
    delong = pd.read_csv(out / "delong.csv")
    assert (delong["n_a_only"] == 0).all() and (delong["n_b_only"] == 0).all()
    assert delong.set_index("split")["n"].to_dict() == {"train": 30, "val": 10, "test": 20}


def test_the_pipeline_keeps_unscored_and_unshared_patients(tmp_path: Path):
    """``run mri`` calls the stage with its defaults: a failed extraction (empty prob) and a deep model that
    scored only patients with a ROI crop are evaluated on what was scored, as before."""
    from osteomet.models.predictions import prediction_table, write_predictions
    from osteomet.pipeline.evaluate import evaluate_prediction_files

    a, b = _write_models(tmp_path)
    pa, pb = pd.read_csv(a), pd.read_csv(b)
    pa.loc[3, "prob"] = np.nan
    files = []
    for name, frame in (("radiomics", pa), ("deep", pb.drop(index=[40, 41]))):
        table = prediction_table(frame["patient_id"], frame["split"], frame["label"], frame["prob"], name)
        files.append(write_predictions(table, tmp_path / name / "predictions.csv"))
    outcome, metrics = evaluate_prediction_files(files, tmp_path / "eval", n_resamples=20)
    assert set(metrics["model"]) == {"radiomics", "deep"}
    assert outcome.summary["missing_probabilities"] == {"radiomics": 1}
    delong = pd.read_csv(tmp_path / "eval" / "delong.csv").set_index("split")
    assert delong.loc["train", ["n", "n_a_only", "n_b_only"]].tolist() == [29, 0, 1]
    assert delong.loc["test", ["n", "n_a_only", "n_b_only"]].tolist() == [18, 2, 0]
