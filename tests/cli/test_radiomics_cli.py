"""`osteomet radiomics extract | train | predict` on a small synthetic cohort."""

from pathlib import Path

import pandas as pd
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
    assert len(table) == 10 and "binWidth" in (out / "settings.yaml").read_text()
    again = runner.invoke(app, ["radiomics", "extract", "-m", str(manifest), "-o", str(out), "--params", "tiny"])
    assert "0 extracted, 10 from cache" in again.output

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
    for out, extra in ((manual_out, []), (predicted_out, ["--masks", str(predicted)])):
        result = runner.invoke(app, ["radiomics", "extract", "-m", str(cohort / "manifest.csv"), "-o", str(out),
                                     "--params", "tiny", *extra])
        assert result.exit_code == 0, result.output
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
