"""``osteomet ct detect`` and ``osteomet ct segment`` as a user runs them, bad inputs included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.ct import slice_cache
from osteomet.data.io import write_image
from osteomet.data.manifest import write_manifest
from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort

runner = CliRunner()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory, easy_lesions: CTSynthConfig) -> Path:
    return generate_ct_cohort(tmp_path_factory.mktemp("ct_cli") / "cohort", 8, seed=4, config=easy_lesions)


def _run(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_help_lists_train_and_predict() -> None:
    for group in ("detect", "segment"):
        output = _run("ct", group, "--help")
        assert "train" in output and "predict" in output


def test_detect_train_then_predict(cohort: Path, tmp_path: Path) -> None:
    run, pred = tmp_path / "run", tmp_path / "pred"
    output = _run("ct", "detect", "train", "-m", cohort, "-o", run, "--config", "tiny", "--model", "densenet121",
                  "--max-epochs", "1")
    assert "lesion_fraction" in output and "densenet121: final validation AUC" in output  # tiny: weights final
    patients = pd.read_csv(run / "patients.csv")
    assert set(patients["split"]) == {"train", "val", "test"}
    _run("ct", "detect", "predict", "-m", cohort, "--model", run, "-o", pred, "--n-boot", "50", "--cache", run / "slices")
    metrics = pd.read_csv(pred / "densenet121" / "metrics.csv")
    assert {"auc", "precision", "recall", "f1"} <= set(metrics["metric"])
    # rerunning training into the same folder is refused instead of overwriting the model
    result = runner.invoke(app, ["ct", "detect", "train", "-m", str(cohort), "-o", str(run), "--config", "tiny",
                                 "--model", "densenet121", "--max-epochs", "1"])
    assert result.exit_code == 2 and "already" in result.output and "--resume" in result.output
    # --resume continues the recorded run for one more epoch
    output = _run("ct", "detect", "train", "-m", cohort, "-o", run, "--model", "densenet121", "--max-epochs", "2",
                  "--resume")
    assert pd.read_csv(run / "densenet121" / "history.csv")["epoch"].tolist() == [0, 1]
    assert (pred / "comparison.csv").is_file() and (pred / "densenet121" / "gradcam" / "localisation.json").is_file()


def test_segment_train_predict_compare(cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run, pred = tmp_path / "run", tmp_path / "pred"
    output = _run("ct", "segment", "train", "-m", cohort, "-o", run, "--config", "tiny", "--model", "unet",
                  "--model", "resunet", "--max-epochs", "2")
    assert "unet: final validation Dice" in output and "resunet: final validation Dice" in output  # tiny: weights final
    visits: list[str] = []
    cache_case = slice_cache.cache_case
    monkeypatch.setattr(slice_cache, "cache_case", lambda root, record, config: visits.append(record.patient_id)
                        or cache_case(root, record, config))
    _run("ct", "segment", "predict", "-m", cohort, "--model", run, "-o", pred, "--compare-split", "all")
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


def _bad_manifest(tmp_path: Path, ct: np.ndarray, mask_spacing: tuple[float, float, float] | None,
                  name: str = "bad.csv") -> Path:
    image = sitk.GetImageFromArray(ct)
    image.SetSpacing((2.0, 2.0, 3.0))
    ct_path = write_image(image, tmp_path / "bad_ct.nii.gz")
    row = {"patient_id": "B1", "ct": str(ct_path)}
    if mask_spacing is not None:
        mask = sitk.GetImageFromArray(np.zeros(ct.shape, np.uint8))
        mask.SetSpacing(mask_spacing)
        row["lesion_mask"] = str(write_image(mask, tmp_path / "bad_mask.nii.gz"))
    return write_manifest(pd.DataFrame([row]), tmp_path / name, kind="ct")


@pytest.mark.parametrize("group", ["detect", "segment"])
def test_ct_not_in_hounsfield_units_is_a_clear_error(group: str, tmp_path: Path) -> None:
    raw = np.random.default_rng(0).integers(0, 4096, (4, 16, 16)).astype(np.int16)
    manifest = _bad_manifest(tmp_path, raw, None)
    result = runner.invoke(app, ["ct", group, "train", "-m", str(manifest), "-o", str(tmp_path / "run"),
                                 "--config", "tiny"])
    assert result.exit_code == 2
    assert "lesion_mask" in result.output  # training needs masks: asked for by the manifest check
    manifest = _bad_manifest(tmp_path, raw, (2.0, 2.0, 3.0), "bad_with_mask.csv")
    result = runner.invoke(app, ["ct", group, "train", "-m", str(manifest), "-o", str(tmp_path / "run"),
                                 "--config", "tiny"])
    assert result.exit_code == 2
    assert "bad_ct.nii.gz" in result.output and "Hounsfield" in result.output


def test_mask_on_another_grid_is_a_clear_error(tmp_path: Path) -> None:
    hu = np.full((4, 16, 16), -1000, np.int16)
    manifest = _bad_manifest(tmp_path, hu, (1.0, 1.0, 3.0))
    result = runner.invoke(app, ["ct", "segment", "train", "-m", str(manifest), "-o", str(tmp_path / "run"),
                                 "--config", "tiny"])
    assert result.exit_code == 2
    flat = " ".join(result.output.split())
    assert "bad_mask.nii.gz" in flat and "bad_ct.nii.gz" in flat and "spacing" in flat
