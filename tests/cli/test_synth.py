"""`osteomet synth` as a user meets it: it never writes into a folder of theirs, and its split serves `run mri`."""

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from osteomet.cli.main import app

runner = CliRunner()
MRI = ["synth", "mri", "--scale", "0.15"]
CT = ["synth", "ct", "--size", "32", "--region", "abdomen_pelvis"]


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder`` with its bytes (None for a folder)."""
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


def _users_folder(tmp_path: Path) -> Path:
    """A folder as a user has it: notes, an image with the very name synth would write, a truth table."""
    out = tmp_path / "my data"
    (out / "images").mkdir(parents=True)
    (out / "notes.txt").write_text("my notes\n")
    (out / "images" / "MRI001_t2.nii.gz").write_bytes(b"a scan of mine")
    (out / "images" / "CT001_ct.nii.gz").write_bytes(b"a CT of mine")
    (out / "truth.csv").write_text("patient_id,label\nP1,1\n")
    return out


def _refused(result, out: Path) -> None:
    assert result.exit_code == 2, result.output
    assert str(out) in result.output and "Traceback" not in result.output
    assert "did not write" in result.output or "holds no cohort" in result.output


@pytest.mark.parametrize("command", [MRI + ["--n", "10"], CT + ["--n", "1"]], ids=["mri", "ct"])
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_a_users_folder_is_refused_and_left_as_it_was(tmp_path: Path, command: list[str], overwrite: list[str]):
    out = _users_folder(tmp_path)
    before = _snapshot(out)
    result = runner.invoke(app, command + ["--out", str(out)] + overwrite)
    _refused(result, out)
    assert _snapshot(out) == before


def test_a_user_file_beside_a_previous_cohort_blocks_overwrite(tmp_path: Path):
    out = tmp_path / "cohort"
    assert runner.invoke(app, CT + ["--n", "2", "--out", str(out)]).exit_code == 0
    (out / "labels" / "my_review.nii.gz").write_bytes(b"reviewed by hand")
    (out / "manifest_fixed.csv").write_text("mine\n")
    before = _snapshot(out)
    result = runner.invoke(app, CT + ["--n", "1", "--seed", "3", "--out", str(out), "--overwrite"])
    _refused(result, out)
    assert "labels/my_review.nii.gz" in result.output and "manifest_fixed.csv" in result.output
    assert _snapshot(out) == before


def test_a_file_that_only_shares_a_cohort_name_is_not_the_cohorts(tmp_path: Path):
    """A synth.json of a 1-patient cohort does not make a user's CT002 image synth's to replace."""
    out = tmp_path / "cohort"
    assert runner.invoke(app, CT + ["--n", "1", "--out", str(out)]).exit_code == 0
    (out / "images" / "CT002_ct.nii.gz").write_bytes(b"a CT of mine")
    before = _snapshot(out)
    result = runner.invoke(app, CT + ["--n", "2", "--out", str(out), "--overwrite"])
    _refused(result, out)
    assert _snapshot(out) == before


def test_a_previous_cohort_needs_overwrite_and_then_only_its_files_change(tmp_path: Path):
    out = tmp_path / "cohort"
    assert runner.invoke(app, CT + ["--n", "2", "--out", str(out)]).exit_code == 0
    before = _snapshot(out)
    again = runner.invoke(app, CT + ["--n", "1", "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output and "--overwrite" in again.output
    assert _snapshot(out) == before
    replaced = runner.invoke(app, CT + ["--n", "1", "--seed", "4", "--out", str(out), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    files = {p for p, data in _snapshot(out).items() if data is not None}
    assert files == {"manifest.csv", "lesions_truth.csv", "synth.json", "images/CT001_ct.nii.gz",
                     "labels/CT001_lesions.nii.gz", "labels/CT001_bones.nii.gz"}  # CT002's files went with its cohort
    record = json.loads((out / "synth.json").read_text(encoding="utf-8"))
    assert record["n"] == 1 and record["seed"] == 4 and record["status"] == "complete"


def test_an_empty_or_missing_folder_is_fine(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "new" / "cohort"):
        result = runner.invoke(app, CT + ["--n", "1", "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert (out / "manifest.csv").is_file()


def test_out_on_a_file_is_refused(tmp_path: Path):
    out = tmp_path / "cohort.csv"
    out.write_text("mine\n")
    result = runner.invoke(app, CT + ["--n", "1", "--out", str(out)])
    assert result.exit_code == 2 and str(out) in result.output and out.read_text(encoding="utf-8") == "mine\n"


def _scored(manifest: Path) -> pd.DataFrame:
    frame = pd.read_csv(manifest)
    return frame.groupby(["split", "label"]).size().unstack(fill_value=0).reindex(columns=[0, 1], fill_value=0)


@pytest.mark.parametrize("n", range(10, 21))
def test_the_default_split_serves_run_mri_at_every_accepted_n(tmp_path: Path, n: int):
    out = tmp_path / "cohort"
    result = runner.invoke(app, MRI + ["--n", str(n), "--out", str(out)])
    assert result.exit_code == 0, result.output
    counts = _scored(out / "manifest.csv")
    assert {"train", "val", "test"} <= set(counts.index)
    assert (counts > 0).all(axis=None), counts  # every split it scores has both classes (external too, when present)
    assert counts.loc["val"].sum() >= 2 and (counts.loc["train"] >= 2).all(), counts


def test_a_single_centre_cohort_works_from_8_patients(tmp_path: Path):
    out = tmp_path / "cohort"
    result = runner.invoke(app, MRI + ["--n", "8", "--external-fraction", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    counts = _scored(out / "manifest.csv")
    assert set(counts.index) == {"train", "val", "test"} and (counts > 0).all(axis=None), counts


@pytest.mark.parametrize("args", [["--n", "9"], ["--n", "12", "--external-fraction", "0.5"]])
def test_a_cohort_too_small_for_run_mri_is_refused_before_anything_is_written(tmp_path: Path, args: list[str]):
    out = tmp_path / "cohort"
    result = runner.invoke(app, MRI + args + ["--out", str(out)])
    assert result.exit_code == 2 and "run mri" in result.output and "--n" in result.output, result.output
    assert not out.exists()


def test_a_scale_too_small_for_the_tumours_is_refused_before_any_work(tmp_path: Path):
    """At ``--scale 0.05`` the coarsest grid lets a tumour fall between voxels: refused naming the allowed range."""
    from osteomet.cli.main import MIN_SYNTH_SCALE
    from osteomet.data.synth.mri.config import MIN_SCALE

    assert MIN_SYNTH_SCALE == MIN_SCALE
    out = tmp_path / "tiny"
    result = runner.invoke(app, ["synth", "mri", "--scale", "0.05", "--n", "10", "--out", str(out)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "--scale 0.05: the in-plane matrix factor must be between 0.1 and 1.0" in text
    assert "Traceback" not in result.output and not out.exists()
    assert runner.invoke(app, ["synth", "mri", "--scale", "1.5", "--n", "10", "--out", str(out)]).exit_code == 2


def test_the_smallest_allowed_scale_renders_every_tumour(tmp_path: Path):
    """The scale MIN_SCALE was chosen at renders a tumour on the coarsest grid (C2) for every patient."""
    from osteomet.data.synth.mri.config import MIN_SCALE

    out = tmp_path / "small"
    result = runner.invoke(app, ["synth", "mri", "--scale", str(MIN_SCALE), "--n", "16", "--external-fraction", "0.5",
                                 "--seed", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    truth = pd.read_csv(out / "truth.csv")
    assert (truth["mask_volume_ml"] > 0).all() and (truth["centre"] == "C2").sum() >= 5
