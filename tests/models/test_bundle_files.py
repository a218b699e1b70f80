"""A saved XGBoost model folder damaged as users damage files: one paragraph naming the file, never a traceback.

The folder is written by `osteomet radiomics train` and read back by `osteomet radiomics predict`,
the same loader `predict mri` uses for a study's models.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from osteomet.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A radiomics model trained by the CLI on a small feature table, and that table."""
    folder = tmp_path_factory.mktemp("radiomics")
    rng = np.random.default_rng(0)
    n = 60
    y = np.arange(n) % 2
    table = pd.DataFrame(rng.normal(size=(n, 8)), columns=[f"t2_original_glcm_F{i}" for i in range(8)])
    table["adc_original_firstorder_Mean"] = y * 1.5 + rng.normal(0, 1, n)
    table["t2_original_shape_Volume"] = y * 1.2 + rng.normal(0, 1, n)
    table.insert(0, "patient_id", [f"R{i:03d}" for i in range(n)])
    table.to_csv(folder / "features.csv", index=False)
    pd.DataFrame({"patient_id": table["patient_id"], "label": y, "split": ["train"] * 45 + ["test"] * 15,
                  "age": rng.integers(50, 80, n)}).to_csv(folder / "manifest.csv", index=False)
    result = runner.invoke(app, ["radiomics", "train", "-f", str(folder / "features.csv"), "-m",
                                 str(folder / "manifest.csv"), "-o", str(folder / "out"), "--max-features", "4"])
    assert result.exit_code == 0, result.output
    return folder / "out" / "model", folder / "features.csv"


def _copy(model: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    target.mkdir()
    for file in model.iterdir():
        (target / file.name).write_bytes(file.read_bytes())
    return target


def _predict(model: Path, features: Path, out: Path):
    result = runner.invoke(app, ["radiomics", "predict", "--model", str(model), "-f", str(features), "-o", str(out)])
    assert "Traceback" not in result.output
    return result, " ".join(result.output.split())


def test_the_intact_model_scores(trained, tmp_path: Path):
    model, features = trained
    result, _ = _predict(_copy(model, tmp_path), features, tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "p.csv")["prob"].between(0, 1).all()


def test_a_model_file_cut_in_half_names_it_and_what_to_do(trained, tmp_path: Path):
    model, features = trained
    copy = _copy(model, tmp_path)
    xgb = copy / "xgboost.json"
    xgb.write_bytes(xgb.read_bytes()[: xgb.stat().st_size // 2])
    result, text = _predict(copy, features, tmp_path / "p.csv")
    assert result.exit_code == 2, result.output
    assert f"{xgb}: damaged or edited model file (XGBoost cannot read it:" in text
    assert "restore it from a copy of the run" in text and "rerun the command that trained the model" in text
    assert "Stack trace" not in text and "[bt]" not in text


@pytest.mark.parametrize("edit, expected", [
    (lambda text: text[: len(text) // 2], "not valid JSON"),
    (lambda text: "[]", "a JSON list, not the radiomics model's record"),
    (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "selector"}), "no entry 'selector'"),
], ids=["truncated", "not-a-record", "entry-deleted"])
def test_a_damaged_feature_list_names_the_file(trained, tmp_path: Path, edit, expected):
    model, features = trained
    copy = _copy(model, tmp_path)
    meta = copy / "radiomics_model.json"
    meta.write_text(edit(meta.read_text(encoding="utf-8")))
    result, text = _predict(copy, features, tmp_path / "p.csv")
    assert result.exit_code == 2, result.output
    assert str(meta) in text and expected in text


def test_a_feature_dropped_from_the_list_no_longer_matches_the_xgboost_file(trained, tmp_path: Path):
    model, features = trained
    copy = _copy(model, tmp_path)
    meta = copy / "radiomics_model.json"
    record = json.loads(meta.read_text(encoding="utf-8"))
    record["selector"]["selected"] = record["selector"]["selected"][:-1]
    meta.write_text(json.dumps(record))
    result, text = _predict(copy, features, tmp_path / "p.csv")
    assert result.exit_code == 2, result.output
    assert str(meta) in text and "do not belong together" in text


def test_a_renamed_feature_names_the_feature_list_and_both_names(trained, tmp_path: Path):
    """The table a user gives has ``...Mean2`` where the model's list says ``...Mean``."""
    model, features = trained
    selected = json.loads((model / "radiomics_model.json").read_text(encoding="utf-8"))["selector"]["selected"]
    name = selected[0]
    table = pd.read_csv(features).rename(columns={name: name + "2"})
    table.to_csv(tmp_path / "renamed.csv", index=False)
    copy = _copy(model, tmp_path)
    result, text = _predict(copy, tmp_path / "renamed.csv", tmp_path / "p.csv")
    assert result.exit_code == 2, result.output
    assert str(copy / "radiomics_model.json") in text
    assert f"'{name}' (closest name in the table: '{name}2')" in text
