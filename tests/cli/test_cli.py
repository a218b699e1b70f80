"""The command line as a user meets it: help, synth, manifest check, image info, demo."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from osteomet.cli.main import app

runner = CliRunner()


def test_help_lists_the_stages_and_imports_nothing_heavy():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("synth", "manifest", "image", "demo"):
        assert command in result.output
    code = ("import sys, osteomet.cli.main; heavy = [m for m in ('torch', 'monai', 'radiomics', 'SimpleITK', "
            "'scipy', 'pandas', 'xgboost') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("osteomet")
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, encoding="utf-8", errors="replace")
    assert result.returncode == 0 and "synth" in result.stdout


def test_synth_mri_then_manifest_check(tmp_path: Path):
    out = tmp_path / "cohort"
    result = runner.invoke(app, ["synth", "mri", "--n", "10", "--out", str(out), "--scale", "0.15", "--seed", "2"])
    assert result.exit_code == 0, result.output
    manifest = out / "manifest.csv"
    assert len(pd.read_csv(manifest)) == 10
    result = runner.invoke(app, ["manifest", "check", str(manifest)])
    assert result.exit_code == 0 and "ok" in result.output and "10 patients" in result.output
    # a second run into the same folder is refused and leaves the cohort untouched
    before = manifest.read_bytes()
    result = runner.invoke(app, ["synth", "mri", "--n", "10", "--out", str(out), "--scale", "0.15"])
    assert result.exit_code == 2 and "already exists" in result.output
    assert manifest.read_bytes() == before


def test_manifest_check_reports_bad_rows_without_traceback(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,label,age,t2,dwi,adc\nP1,maybe,70,a.nii,b.nii,c.nii\nP1,1,300,a.nii,b.nii,c.nii\n")
    result = runner.invoke(app, ["manifest", "check", str(bad), "--no-check-files"])
    assert result.exit_code == 2
    assert "line 2 (patient 'P1'): label" in result.output
    assert "line 3 (patient 'P1'): duplicate patient_id" in result.output
    assert "line 3 (patient 'P1'): age" in result.output
    assert "Traceback" not in result.output


def test_image_info_and_unreadable_file(tmp_path: Path, prostatex: Path):
    result = runner.invoke(app, ["image", "info", str(prostatex / "ProstateX-0001" / "adc")])
    assert result.exit_code == 0 and "(84, 128, 19)" in result.output
    broken = tmp_path / "x.nii.gz"
    broken.write_bytes(b"nope")
    result = runner.invoke(app, ["image", "info", str(broken)])
    assert result.exit_code == 2 and "x.nii.gz: cannot be read" in result.output


def test_demo_refuses_a_folder_it_does_not_own(tmp_path: Path):
    (tmp_path / "mine.txt").write_text("user data")
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--n-mri", "4", "--n-ct", "1"])
    assert result.exit_code == 2 and "not an osteomet run directory" in result.output
    assert (tmp_path / "mine.txt").read_text(encoding="utf-8") == "user data"
