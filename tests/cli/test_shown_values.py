"""Values in messages read as the user wrote them: ``n/a`` for a blank cell, ``2`` for 2, never ``np.float64(nan)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.utils.text import shown

runner = CliRunner()


def test_evaluate_roc_names_a_blank_score_as_n_a(tmp_path: Path):
    path = tmp_path / "scores.csv"
    path.write_text("patient_id,truth,score\nA,1,0.9\nB,0,\nC,1,0.7\nD,0,0.2\n")  # B's score left blank
    result = runner.invoke(app, ["evaluate", "roc", str(path), "--truth", "truth", "--score", "score"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "column 'score' must be numeric with no missing values; row 3 has n/a" in text
    assert "np." not in text


def test_evaluate_roc_shows_a_wrong_label_as_the_number_written(tmp_path: Path):
    path = tmp_path / "scores.csv"
    path.write_text("patient_id,truth,score\nA,1,0.9\nB,2,0.3\nC,1,0.7\nD,0,0.2\n")
    result = runner.invoke(app, ["evaluate", "roc", str(path), "--truth", "truth", "--score", "score"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "truth column 'truth' must be 0 or 1; row 3 has 2" in text, result.output
    assert "np." not in text


@pytest.mark.parametrize("value, expected", [
    (np.float64("nan"), "n/a"), (None, "n/a"), (float("nan"), "n/a"), (np.int64(2), "2"), (np.float64(0.25), "0.25"),
    (np.float32(1.5), "1.5"), (np.bool_(True), "True"), ("high", "'high'"), (7, "7"),
])
def test_shown(value, expected):
    assert shown(value) == expected
