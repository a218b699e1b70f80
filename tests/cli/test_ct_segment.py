"""`osteomet ct segment`: train, predict (one caching pass) and compare."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.ct.slices import cache as slice_cache

runner = CliRunner()


def _run(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output



def test_segment_train_predict_compare(ct_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run, pred = tmp_path / "run", tmp_path / "pred"
    output = _run("ct", "segment", "train", "-m", ct_cohort, "-o", run, "--config", "tiny", "--model", "unet",
                  "--model", "resunet", "--max-epochs", "2")
    assert "unet: final validation Dice" in output and "resunet: final validation Dice" in output  # tiny: weights final
    visits: list[str] = []
    cache_case = slice_cache.cache_case
    monkeypatch.setattr(slice_cache, "cache_case", lambda root, record, config: visits.append(record.patient_id)
                        or cache_case(root, record, config))
    _run("ct", "segment", "predict", "-m", ct_cohort, "--model", run, "-o", pred, "--compare-split", "all")
    assert sorted(visits) == sorted(set(visits)) and len(visits) == 8  # the cohort is cached in one pass, into OUT/slices
    assert len(list((pred / "slices").glob("*/cases/*/slices.json"))) == 8
    table = pd.read_csv(pred / "metrics.csv")
    assert set(table["model"]) == {"unet", "resunet"} and table["dice"].between(0, 1).all()
    for mask in table["mask"]:
        assert Path(mask).is_file()
    assert (pred / "comparison" / "pairwise_dice.csv").is_file() and (pred / "comparison" / "boxplot_dice.png").is_file()
    output = _run("ct", "segment", "compare", pred / "unet" / "metrics.csv", pred / "resunet" / "metrics.csv",
                  "-o", tmp_path / "cmp", "--split", "all")
    assert "unet vs resunet" in output
