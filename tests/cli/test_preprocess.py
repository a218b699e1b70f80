"""`osteomet preprocess mri`: exit codes and messages when some or all patients cannot be read."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.data.synth.mri import generate_mri_cohort

runner = CliRunner()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_mri_cohort(tmp_path_factory.mktemp("pre_cli") / "cohort", 3, seed=2)


def _cut_t2(manifest: Path, patient: str) -> None:
    """Cut a patient's T2 file in half, as an interrupted copy leaves it."""
    table = pd.read_csv(manifest, dtype={"patient_id": str})
    t2 = manifest.parent / table.loc[table["patient_id"] == patient, "t2"].item()
    t2.write_bytes(t2.read_bytes()[: t2.stat().st_size // 2])


def _copy(cohort: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(cohort.parent, to)
    return to / cohort.name


def _preprocess(manifest: Path, out: Path):
    return runner.invoke(app, ["preprocess", "mri", "-m", str(manifest), "-o", str(out), "--seg-config", "tiny"])


def test_some_patients_failing_exit_3_naming_them_and_the_reason(cohort: Path, tmp_path: Path):
    manifest = _copy(cohort, tmp_path / "c")
    patients = pd.read_csv(manifest, dtype={"patient_id": str})["patient_id"].tolist()
    _cut_t2(manifest, patients[0])
    result = _preprocess(manifest, tmp_path / "pre")
    flat = " ".join(result.output.split())
    assert result.exit_code == 3, result.output
    assert patients[0] in flat and "truncated" in flat and "1 failed" in flat
    index = pd.read_csv(tmp_path / "pre" / "index.csv", dtype={"patient_id": str})
    assert set(index.loc[index["status"] != "failed", "patient_id"]) == set(patients[1:])


def test_every_patient_failing_exits_2(cohort: Path, tmp_path: Path):
    manifest = _copy(cohort, tmp_path / "c")
    for patient in pd.read_csv(manifest, dtype={"patient_id": str})["patient_id"]:
        _cut_t2(manifest, patient)
    result = _preprocess(manifest, tmp_path / "pre")
    assert result.exit_code == 2, result.output
    assert "3 failed" in " ".join(result.output.split())
