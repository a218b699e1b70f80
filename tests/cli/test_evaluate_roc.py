"""``osteomet evaluate roc``: JSON agreeing with pROC to 1e-6; ``evaluate segmentation`` against MONAI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from osteomet.cli.main import app
from tests.evaluation.r_reference import TOL, requires_r

runner = CliRunner()

PROC = r"""
suppressMessages(library(pROC))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
r1 <- roc(d$truth, d$a, levels = c(0, 1), direction = "<", quiet = TRUE)
r2 <- roc(d$truth, d$b, levels = c(0, 1), direction = "<", quiet = TRUE)
c1 <- ci.auc(r1, method = "delong"); c2 <- ci.auc(r2, method = "delong")
t1 <- coords(r1, "best", ret = "threshold", best.method = "youden")$threshold
t2 <- coords(r2, "best", ret = "threshold", best.method = "youden")$threshold
p <- roc.test(r1, r2, method = "delong", paired = TRUE)
u <- roc.test(r1, r2, method = "delong", paired = FALSE)
out <- c(c1[2], c1[1], c1[3], t1[1], c2[2], c2[1], c2[3], t2[1], p$statistic, p$p.value, u$statistic, u$parameter,
         u$p.value)
writeLines(sprintf("%.17g", out), args[2])
"""


def _data(path: Path, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, 150)
    frame = pd.DataFrame({"id": np.arange(150), "truth": truth, "a": truth * 0.9 + rng.normal(0, 1, 150),
                          "b": np.round(truth * 0.5 + rng.normal(0, 1, 150), 1)})  # b has ties
    frame.to_csv(path, index=False, float_format="%.17g")
    return frame


def _json(args: list[str]) -> dict:
    result = runner.invoke(app, ["evaluate", "roc", *args, "--json", "--n-resamples", "200"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # stdout holds only the JSON


@requires_r
def test_roc_json_agrees_with_proc(tmp_path: Path) -> None:
    _data(tmp_path / "p.csv")
    script, out = tmp_path / "proc.R", tmp_path / "r.txt"
    script.write_text(PROC)
    proc = subprocess.run(["Rscript", str(script), str(tmp_path / "p.csv"), str(out)], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode and "there is no package called" in proc.stderr:
        pytest.skip("pROC is not installed in R")
    assert proc.returncode == 0, proc.stderr
    r = [float(v) for v in out.read_text(encoding="utf-8").split()]
    paired = _json([str(tmp_path / "p.csv"), "--truth", "truth", "--score", "a", "--score", "b"])
    for name, offset in (("a", 0), ("b", 4)):
        got = paired["scores"][name]
        assert [got["auc"], *got["ci_delong"], got["threshold"]] == pytest.approx(r[offset:offset + 4], abs=TOL)
        low, high = got["ci_bootstrap"]
        assert low < got["auc"] < high
    assert paired["test"]["method"] == "delong" and paired["test"]["paired"] is True
    assert [paired["test"]["z"], paired["test"]["p"]] == pytest.approx(r[8:10], abs=TOL)
    unpaired = _json([str(tmp_path / "p.csv"), "--truth", "truth", "--score", "a", "--score", "b", "--unpaired"])
    assert unpaired["test"]["paired"] is False
    assert [unpaired["test"]["z"], unpaired["test"]["df"], unpaired["test"]["p"]] == pytest.approx(r[10:13], abs=TOL)
    single = _json([str(tmp_path / "p.csv"), "--truth", "truth", "--score", "a"])
    assert "test" not in single and single["scores"]["a"]["auc"] == pytest.approx(r[0], abs=TOL)


def test_table_output_and_bad_inputs(tmp_path: Path) -> None:
    frame = _data(tmp_path / "p.csv")
    shown = runner.invoke(app, ["evaluate", "roc", str(tmp_path / "p.csv"), "--truth", "truth", "--score", "a"])
    assert shown.exit_code == 0 and "Youden" in shown.output

    def error(table: pd.DataFrame, *args: str) -> str:
        table.to_csv(tmp_path / "bad.csv", index=False)
        result = runner.invoke(app, ["evaluate", "roc", str(tmp_path / "bad.csv"), *args])
        assert result.exit_code == 2, result.output
        return " ".join(result.output.split())

    assert "no score column 'c'" in error(frame, "--truth", "truth", "--score", "c")
    assert "only negative (0) labels" in error(frame.assign(truth=0), "--truth", "truth", "--score", "a")
    nan = frame.copy()
    nan.loc[3, "a"] = np.nan
    assert "column 'a' must be numeric with no missing values; row 5" in error(nan, "--truth", "truth", "--score", "a")
    assert "truth column 'truth' must be 0 or 1; row 2" in error(frame.assign(truth=2), "--truth", "truth",
                                                                   "--score", "a")


def _write(array: np.ndarray, path: Path, spacing=(0.8, 0.8, 3.0)) -> None:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))


def test_segmentation_metrics_and_hd95_match_monai(tmp_path: Path) -> None:
    from monai.metrics import compute_hausdorff_distance

    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir(), truth.mkdir()
    rng = np.random.default_rng(0)
    expected = {}
    for case in ("c1", "c2", "c3"):
        ref = np.zeros((12, 40, 40), bool)
        z, y, x = rng.integers(3, 8), rng.integers(10, 25), rng.integers(10, 25)
        ref[z:z + 4, y:y + 10, x:x + 8] = True
        shift = rng.integers(-2, 3, 3)
        guess = np.roll(ref, tuple(shift), axis=(0, 1, 2))
        _write(ref, truth / f"{case}.nii.gz")
        _write(guess, pred / f"{case}.nii.gz")
        monai = compute_hausdorff_distance(guess[None, None].astype(float), ref[None, None].astype(float),
                                           percentile=95, spacing=(3.0, 0.8, 0.8))
        expected[case] = (float(monai), 2 * (guess & ref).sum() / (guess.sum() + ref.sum()))
    out = tmp_path / "seg.csv"
    result = runner.invoke(app, ["evaluate", "segmentation", "--pred", str(pred), "--truth", str(truth), "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out).set_index("case")
    for case, (hd95, dice) in expected.items():
        assert table.loc[case, "hd95_mm"] == pytest.approx(hd95, rel=1e-6)
        assert table.loc[case, "dice"] == pytest.approx(dice)
    (pred / "c3.nii.gz").unlink()
    missing = runner.invoke(app, ["evaluate", "segmentation", "--pred", str(pred), "--truth", str(truth),
                                  "-o", str(tmp_path / "x.csv")])
    assert missing.exit_code == 2 and "no prediction for c3" in " ".join(missing.output.split())
