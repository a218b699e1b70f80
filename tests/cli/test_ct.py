"""`osteomet ct`: the slice-model groups and the input checks they share (Hounsfield units, mask grid)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.data.images import write_image
from osteomet.data.manifest import write_manifest

runner = CliRunner()


def _run(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output



def test_help_lists_train_and_predict() -> None:
    for group in ("detect", "segment"):
        output = _run("ct", group, "--help")
        assert "train" in output and "predict" in output


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
