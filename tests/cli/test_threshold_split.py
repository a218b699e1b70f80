"""``evaluate predictions --threshold-split``: only the splits a threshold may be tuned on; a typo is exit 2."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.evaluation.errors import EvaluationInputError
from osteomet.evaluation.predictions import THRESHOLD_SPLITS, choose_threshold

runner = CliRunner()


@pytest.fixture
def predictions(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    label = np.tile([0, 1], 20)
    split = ["train"] * 20 + ["val"] * 10 + ["test"] * 10
    path = tmp_path / "a.csv"
    pd.DataFrame({"patient_id": [f"P{i:02d}" for i in range(40)], "label": label, "split": split,
                  "prob": 1 / (1 + np.exp(-(2 * label - 1 + rng.normal(0, 1, 40))))}).to_csv(path, index=False)
    return path


def _evaluate(predictions: Path, out: Path, value: str):
    return runner.invoke(app, ["evaluate", "predictions", "-p", str(predictions), "-o", str(out),
                               "--n-resamples", "10", "--threshold-split", value])


@pytest.mark.parametrize("value", ["trian+val", "train+test", "test", "external", "train + val"])
def test_a_misspelt_or_biased_threshold_split_is_exit_2_with_the_allowed_values(predictions: Path, tmp_path: Path,
                                                                               value: str):
    out = tmp_path / "eval"
    result = _evaluate(predictions, out, value)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.replace("│", " ").split())
    assert "--threshold-split" in text and "train, val, train+val, val+train" in text
    assert not out.exists()


@pytest.mark.parametrize("value", THRESHOLD_SPLITS)
def test_each_allowed_threshold_split_is_used(predictions: Path, tmp_path: Path, value: str):
    out = tmp_path / "eval"
    result = _evaluate(predictions, out, value)
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(out / "metrics.csv")["threshold_split"]) == {value}


def test_choose_threshold_refuses_a_split_name_it_does_not_know(predictions: Path):
    table = pd.read_csv(predictions)
    with pytest.raises(EvaluationInputError, match=r"'trian\+val' is not one of train, val, train\+val, val\+train"):
        choose_threshold(table, "trian+val")  # before: quietly tuned on 'val' alone
    assert choose_threshold(table, "val+train")[1] == "val+train"
    assert choose_threshold(table, "train+val")[0] == choose_threshold(table, "val+train")[0]
