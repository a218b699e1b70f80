"""`osteomet radiomics extract | train | predict` on a small synthetic cohort."""

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from osteomet.cli.main import app

runner = CliRunner()


def test_extract_rerun_train_predict(tmp_path: Path):
    cohort = tmp_path / "cohort"
    assert runner.invoke(app, ["synth", "mri", "--n", "10", "--out", str(cohort), "--seed", "5"]).exit_code == 0
    manifest = cohort / "manifest.csv"
    out = tmp_path / "radiomics"
    result = runner.invoke(app, ["radiomics", "extract", "-m", str(manifest), "-o", str(out), "--params", "tiny"])
    assert result.exit_code == 0, result.output
    assert "10 extracted, 0 from cache, 0 failed" in result.output
    table = pd.read_parquet(out / "features.parquet")
    assert len(table) == 10 and "binWidth" in (out / "settings.yaml").read_text(encoding="utf-8")
    again = runner.invoke(app, ["radiomics", "extract", "-m", str(manifest), "-o", str(out), "--params", "tiny"])
    assert "0 extracted, 10 from cache" in again.output

    # the user moves all but one positive training patient to test: too few for out-of-fold predictions
    edited = pd.read_csv(manifest)
    positives = edited.index[(edited["split"] == "train") & (edited["label"] == 1)]
    edited.loc[positives[1:], "split"] = "test"
    manifest = cohort / "one_positive_in_training.csv"
    edited.to_csv(manifest, index=False)
    model_out = tmp_path / "model"
    trained = runner.invoke(app, ["radiomics", "train", "-f", str(out / "features.parquet"), "-m", str(manifest),
                                  "-o", str(model_out)])
    assert trained.exit_code == 0, trained.output
    predictions = pd.read_csv(model_out / "predictions.csv")
    scored_rows = predictions["split"] != "train"
    assert len(predictions) == 10 and predictions.loc[scored_rows, "prob"].between(0, 1).all()

    scored = tmp_path / "scored.csv"
    result = runner.invoke(app, ["radiomics", "predict", "--model", str(model_out / "model"),
                                 "-f", str(out / "features.parquet"), "-o", str(scored)])
    assert result.exit_code == 0, result.output
    merged = pd.read_csv(scored).merge(predictions, on="patient_id")
    held_out = merged["split_y"] != "train"  # training patients' predictions are out-of-fold, the rest the full model's
    assert (merged.loc[held_out, "prob_x"] - merged.loc[held_out, "prob_y"]).abs().max() < 1e-6
    # one positive training patient: too few for out-of-fold predictions, so none (never in-sample ones)
    assert merged.loc[~held_out, "prob_y"].isna().all()


def test_extract_with_bad_params_is_a_clear_error(tmp_path: Path, mri_cohort: Path):
    params = tmp_path / "p.yaml"
    params.write_text("imageType:\n  LBP3D: {}\n")
    result = runner.invoke(app, ["radiomics", "extract", "-m", str(mri_cohort), "-o", str(tmp_path / "o"),
                                 "--params", str(params)])
    assert result.exit_code == 2 and "LBP3D" in result.output and "Traceback" not in result.output


def test_features_from_another_mask_folder_feed_the_icc(tmp_path: Path):
    """Manual vs 'predicted' CT masks: extract both, then ICC by feature class (identical masks -> ICC 1)."""
    import shutil

    cohort = tmp_path / "ct"
    made = runner.invoke(app, ["synth", "ct", "--n", "6", "--out", str(cohort), "--seed", "2", "--size", "64",
                               "--region", "abdomen_pelvis"])
    assert made.exit_code == 0, made.output
    manifest = pd.read_csv(cohort / "manifest.csv")
    predicted = tmp_path / "predicted"
    predicted.mkdir()
    for row in manifest.itertuples():
        shutil.copy(cohort / row.lesion_mask, predicted / f"{row.patient_id}.nii.gz")
    manual_out, predicted_out = tmp_path / "f_manual", tmp_path / "f_pred"
    import SimpleITK as sitk

    lesion_free = [row.patient_id for row in manifest.itertuples()
                   if not sitk.GetArrayFromImage(sitk.ReadImage(str(cohort / row.lesion_mask))).any()]
    assert 0 < len(lesion_free) < len(manifest)
    for out, extra in ((manual_out, []), (predicted_out, ["--masks", str(predicted)])):
        result = runner.invoke(app, ["radiomics", "extract", "-m", str(cohort / "manifest.csv"), "-o", str(out),
                                     "--params", "tiny", *extra])
        # patients without a lesion have no lesion features: reported as failed, exit code 3
        assert result.exit_code == 3, result.output
        assert f"{len(lesion_free)} failed" in result.output
        assert set(pd.read_csv(out / "extraction_log.csv").query("status == 'failed'")["patient_id"]) == set(lesion_free)
    icc_csv = tmp_path / "icc.csv"
    result = runner.invoke(app, ["ct", "icc", "--manual", str(manual_out / "features.parquet"),
                                 "--predicted", str(predicted_out / "features.parquet"), "--out", str(icc_csv)])
    assert result.exit_code == 0, result.output
    icc = pd.read_csv(icc_csv).dropna(subset=["icc"])
    assert len(icc) > 10 and {"firstorder", "shape", "glcm"} <= set(icc["class"])
    assert (icc["icc"] > 0.999999).all()

    (predicted / f"{manifest.patient_id[0]}.nii.gz").unlink()
    result = runner.invoke(app, ["radiomics", "extract", "-m", str(cohort / "manifest.csv"), "-o",
                                 str(tmp_path / "f3"), "--params", "tiny", "--masks", str(predicted)])
    assert result.exit_code == 2 and f"patient '{manifest.patient_id[0]}'" in result.output


def test_extract_exits_3_when_some_patients_failed(tmp_path: Path, mri_cohort: Path):
    manifest = pd.read_csv(mri_cohort)
    broken = tmp_path / "broken_adc.nii.gz"
    broken.write_bytes(b"not an image")
    for column in ("t2", "dwi", "adc", "mask"):
        manifest[column] = [str(mri_cohort.parent / p) for p in manifest[column]]
    manifest = manifest.head(3)
    manifest.loc[1, "adc"] = str(broken)
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    result = runner.invoke(app, ["radiomics", "extract", "-m", str(tmp_path / "manifest.csv"), "-o",
                                 str(tmp_path / "out"), "--params", "tiny"])
    assert result.exit_code == 3, result.output
    output = " ".join(result.output.split())
    assert "2 extracted, 0 from cache, 1 failed" in output
    assert f"1 of 3 case(s) failed: - {manifest.patient_id[1]}: " in output
    assert "broken_adc.nii.gz" in "".join(output.split())  # the console may wrap the long temporary path anywhere
    assert len(pd.read_parquet(tmp_path / "out" / "features.parquet")) == 3  # the others' features are written
    help_text = " ".join(runner.invoke(app, ["radiomics", "extract", "--help"]).output.split())
    assert "3 one or more patients failed" in help_text and "130 interrupted" in help_text


def test_ctrl_c_during_a_dask_run_prints_one_line_and_a_rerun_resumes(tmp_path: Path, mri_cohort: Path):
    """A real SIGINT to the process group (what Ctrl-C in a terminal sends), workers included."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    import osteomet

    out = tmp_path / "out"
    src = str(Path(osteomet.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "osteomet", "radiomics", "extract", "-m", str(mri_cohort), "-o", str(out),
               "--params", "tiny", "--jobs", "2"]

    def entries() -> list[Path]:  # cached patients; not the hidden temporary file of an entry being written
        return [p for p in (out / "cache").glob("*.parquet") if not p.name.startswith(".")]

    # SIGINT back to its default in the child, as in a terminal's foreground job: a shell runs a background
    # job (``pytest &``, ``nohup ... &``) with SIGINT ignored, and the child would inherit that
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not entries() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before it could be interrupted:\n"
                        f"{proc.communicate()[1]}")
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    lines = [line for line in (stdout + stderr).splitlines() if "interrupted" in line]
    assert len(lines) == 1, stderr
    match = re.fullmatch(r"interrupted: (\d+) of 8 patients extracted and cached; rerun the same command to resume",
                         lines[0])
    assert match, lines[0]
    done = int(match.group(1))
    assert 1 <= done < 8 and done == len(entries()), stderr
    assert not (out / "features.parquet").exists()  # nothing half-done presented as a result
    rerun = runner.invoke(app, ["radiomics", "extract", "-m", str(mri_cohort), "-o", str(out), "--params", "tiny"])
    assert rerun.exit_code == 0, rerun.output
    assert f"{8 - done} extracted, {done} from cache, 0 failed" in rerun.output, (stderr, rerun.output)
