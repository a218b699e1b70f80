"""`osteomet deep` as a user meets it: the prediction table contract, features, Grad-CAM, clear errors."""

import json

import pandas as pd
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.data.manifest import read_manifest

runner = CliRunner()


def test_predict_writes_the_prediction_table(trained_grid, roi_cohort, tmp_path):
    out, _, winner, _ = trained_grid
    manifest, pre = roi_cohort
    result = runner.invoke(app, ["deep", "predict", "-p", str(pre), "-m", str(manifest), "--model", str(out),
                                 "-o", str(tmp_path / "predictions.csv"), "--oof-folds", "2"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "predictions.csv", dtype={"patient_id": str})
    assert len(list((tmp_path / "predictions_folds").glob("fold_*/checkpoints/best.pt"))) == 2
    in_sample = runner.invoke(app, ["deep", "predict", "-p", str(pre), "-m", str(manifest), "--model", str(out),
                                    "-o", str(tmp_path / "in_sample.csv"), "--oof-folds", "0"])
    assert in_sample.exit_code == 0, in_sample.output
    plain = pd.read_csv(tmp_path / "in_sample.csv", dtype={"patient_id": str})
    train = table["split"] == "train"  # training rows come from the fold models, the others from the winner
    assert (table.loc[~train, "prob"].to_numpy() == plain.loc[~train, "prob"].to_numpy()).all()
    assert (table.loc[train, "prob"].to_numpy() != plain.loc[train, "prob"].to_numpy()).any()
    assert list(table.columns) == ["patient_id", "split", "label", "model", "prob"]
    frame = read_manifest(manifest).to_frame()
    merged = table.merge(frame, on="patient_id", suffixes=("", "_manifest"))
    assert len(merged) == len(frame) == 20
    assert (merged["split"] == merged["split_manifest"]).all() and (merged["label"] == merged["label_manifest"]).all()
    assert table["prob"].between(0, 1).all() and (table["model"] == f"deep_{winner['name']}").all()
    assert "AUC per split" in result.output


def test_features_and_gradcam_commands(trained_grid, roi_cohort, tmp_path):
    out, _, _, _ = trained_grid
    manifest, pre = roi_cohort
    base = ["-p", str(pre), "-m", str(manifest), "--model", str(out)]
    result = runner.invoke(app, ["deep", "features", *base, "-o", str(tmp_path / "feat"), "--pca", "2"])
    assert result.exit_code == 0, result.output
    features = pd.read_parquet(tmp_path / "feat" / "features.parquet")
    assert features.shape == (20, 3) and json.loads((tmp_path / "feat" / "features.json").read_text(encoding="utf-8"))["pca"]
    pid = features["patient_id"].iloc[0]
    result = runner.invoke(app, ["deep", "gradcam", *base, "-o", str(tmp_path / "cam"), "--patient", pid])
    assert result.exit_code == 0, result.output
    cam = pd.read_csv(tmp_path / "cam" / "gradcam.csv")
    assert cam["patient_id"].tolist() == [pid]
    assert (tmp_path / "cam" / "t2" / f"{pid}.nii.gz").exists() and (tmp_path / "cam" / "png" / f"{pid}.png").exists()


def test_user_errors_are_one_paragraph_with_exit_code_2(roi_cohort, tmp_path):
    manifest, pre = roi_cohort
    base = ["-p", str(pre), "-m", str(manifest)]
    result = runner.invoke(app, ["deep", "predict", *base, "--model", str(tmp_path), "-o", str(tmp_path / "p.csv")])
    assert result.exit_code == 2 and "neither a grid folder" in result.output
    result = runner.invoke(app, ["deep", "gradcam", *base, "--model", str(tmp_path), "-o", str(tmp_path / "c"),
                                 "--patient", "nobody"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["deep", "train", *base, "-o", str(tmp_path / "r"), "--config", "tiny",
                                 "--depth", "19"])
    assert result.exit_code == 2 and "depth" in result.output


def test_train_command_refuses_an_existing_run_and_resumes_it(roi_cohort, tmp_path):
    manifest, pre = roi_cohort
    args = ["deep", "train", "-p", str(pre), "-m", str(manifest), "-o", str(tmp_path / "run"), "--config", "tiny",
            "--depth", "10", "--optimizer", "sgd", "--lr", "0.001", "--max-epochs", "1"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    result = json.loads((tmp_path / "run" / "result.json").read_text(encoding="utf-8"))
    assert result["name"] == "resnet10_sgd_lr0.001" and result["epochs_run"] == 1
    assert set(pd.read_csv(tmp_path / "run" / "patients.csv")["mask_source"]) == {"manifest"}
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0 and json.loads((tmp_path / "run" / "result.json").read_text(encoding="utf-8")) == result


def test_resume_with_other_settings_is_refused(roi_cohort, tmp_path):
    manifest, pre = roi_cohort
    base = ["deep", "train", "-p", str(pre), "-m", str(manifest), "-o", str(tmp_path / "run"), "--config", "tiny",
            "--depth", "10", "--lr", "0.001", "--max-epochs", "1"]
    assert runner.invoke(app, [*base, "--optimizer", "sgd"]).exit_code == 0
    (tmp_path / "run" / "result.json").unlink()  # as if interrupted after its last checkpoint
    other = runner.invoke(app, [*base, "--optimizer", "adam", "--resume"])
    assert other.exit_code == 2 and "other settings" in other.output
    same = runner.invoke(app, [*base, "--optimizer", "sgd", "--resume"])
    assert same.exit_code == 0 and (tmp_path / "run" / "result.json").exists()
