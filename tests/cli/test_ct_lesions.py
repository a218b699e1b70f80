"""``osteomet ct lesions``, ``ct lesions-cohort`` and ``ct icc`` end to end, including bad inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from osteomet.cli.main import app

runner = CliRunner()


def _write(array: np.ndarray, path: Path, spacing=(1.0, 1.0, 2.0)) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture()
def case(tmp_path: Path) -> dict[str, Path]:
    bones = np.zeros((30, 24, 40), np.uint16)
    bones[:, 2:12, 2:12] = 29  # L3
    bones[:, 2:12, 22:34] = 77  # hip_left
    ref = np.zeros(bones.shape, np.uint8)
    ref[3:5, 4:7, 4:7] = 1  # L3 nodule
    ref[20:23, 4:8, 24:28] = 1  # hip nodule, 15 slices later: another cluster
    pred = ref.copy()
    pred[20:23] = 0  # the hip lesion is missed
    pred[10, 15:18, 15:18] = 1  # a false positive outside bone
    ct = np.where(bones > 0, 250, 40).astype(np.int16)
    ct[ref > 0] = 700
    return {"bones": _write(bones, tmp_path / "bones.nii.gz"), "ref": _write(ref, tmp_path / "ref.nii.gz"),
            "pred": _write(pred, tmp_path / "pred.nii.gz"), "ct": _write(ct, tmp_path / "ct.nii.gz"),
            "dir": tmp_path}


def test_ct_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["ct", "--help"])
    assert result.exit_code == 0
    for name in ("lesions", "lesions-cohort", "icc"):
        assert name in result.output


def test_lesions_one_patient_with_reference(case: dict[str, Path]) -> None:
    out = case["dir"] / "out"
    result = runner.invoke(app, ["ct", "lesions", "--mask", str(case["pred"]), "--bones", str(case["bones"]),
                                 "--reference", str(case["ref"]), "--ct", str(case["ct"]), "--out", str(out),
                                 "--criterion", "any"])
    assert result.exit_code == 0, result.output
    lesions = pd.read_csv(out / "lesions.csv")
    assert len(lesions) == 2 and set(lesions["patient_id"]) == {"pred"}
    assert lesions["true_positive"].tolist() == [True, False]
    assert lesions["bone_status"].tolist() == ["assigned", "outside_bone"]
    assert lesions.loc[0, "mean_hu"] == 700 and lesions.loc[0, "bone_name"] == "vertebrae_L3"
    reference = pd.read_csv(out / "reference_lesions.csv")
    assert reference["detected"].tolist() == [True, False]
    assert reference["bone_group"].tolist() == ["spine", "pelvis"] and reference["cluster_id"].tolist() == [1, 2]
    metrics = pd.read_csv(out / "metrics.csv").set_index(["metric", "breakdown", "subgroup"])
    assert metrics.loc[("lesion_sensitivity", "all", "all"), "estimate"] == 0.5
    assert metrics.loc[("fp_per_patient", "all", "all"), "estimate"] == 1.0
    bones = pd.read_csv(out / "bones.csv").set_index("bone_name")
    assert bones.loc["hip_left", "reference_positive"] and not bones.loc["hip_left", "predicted_positive"]
    patients = pd.read_csv(out / "patients.csv")
    assert patients.loc[0, "n_lesions"] == 2 and patients.loc[0, "n_detected"] == 1
    assert "detected 1" in result.output


def test_lesions_bad_inputs_exit_2_with_a_message(case: dict[str, Path]) -> None:
    other = _write(np.zeros((30, 24, 40), np.uint16), case["dir"] / "bones_other.nii.gz", spacing=(1.0, 1.0, 3.0))
    result = runner.invoke(app, ["ct", "lesions", "--mask", str(case["pred"]), "--bones", str(other),
                                 "--out", str(case["dir"] / "o1")])
    assert result.exit_code == 2
    assert "bones_other.nii.gz" in result.output and "spacing" in result.output
    bad = np.zeros((30, 24, 40), np.uint16)
    bad[0, 0, 0] = 250
    bad_path = _write(bad, case["dir"] / "bones_bad.nii.gz")
    result = runner.invoke(app, ["ct", "lesions", "--mask", str(case["pred"]), "--bones", str(bad_path),
                                 "--out", str(case["dir"] / "o2")])
    assert result.exit_code == 2 and "250" in result.output and "TotalSegmentator" in result.output
    result = runner.invoke(app, ["ct", "lesions", "--mask", str(case["pred"]), "--bones", str(case["bones"]),
                                 "--out", str(case["dir"] / "o3"), "--criterion", "dice"])
    assert result.exit_code == 2 and "'iou' or 'any'" in result.output
    assert not (case["dir"] / "o1").exists() and not (case["dir"] / "o2").exists()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort

    config = CTSynthConfig(inplane_size=64, region="abdomen_pelvis", lesion_free_fraction=0.3)
    return generate_ct_cohort(tmp_path_factory.mktemp("ct_cli_cohort"), 5, seed=5, config=config)


def test_lesions_cohort_describes_and_evaluates(cohort: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["ct", "lesions-cohort", "--manifest", str(cohort), "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    lesions = pd.read_csv(tmp_path / "a" / "lesions.csv")
    patients = pd.read_csv(tmp_path / "a" / "patients.csv")
    assert len(patients) == 5 and patients["n_lesions"].sum() == len(lesions)
    truth = pd.read_csv(cohort.parent / "lesions_truth.csv")
    assert set(lesions["patient_id"]) == set(truth["patient_id"])
    # predictions: the reference masks, with the first lesion-bearing patient's mask emptied
    manifest = pd.read_csv(cohort)
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    missed = truth["patient_id"].iloc[0]
    for row in manifest.itertuples():
        target = pred_dir / f"{row.patient_id}.nii.gz"
        shutil.copy(cohort.parent / row.lesion_mask, target)
        if row.patient_id == missed:
            image = sitk.ReadImage(str(target))
            empty = sitk.Image(image.GetSize(), image.GetPixelID())
            empty.CopyInformation(image)
            sitk.WriteImage(empty, str(target))
    result = runner.invoke(app, ["ct", "lesions-cohort", "--manifest", str(cohort), "--predictions", str(pred_dir),
                                 "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    metrics = pd.read_csv(tmp_path / "b" / "metrics.csv").set_index(["metric", "breakdown", "subgroup"])
    reference = pd.read_csv(tmp_path / "b" / "reference_lesions.csv")
    n_missed = int((reference["patient_id"] == missed).sum())
    sens = metrics.loc[("lesion_sensitivity", "all", "all")]
    assert (sens["numerator"], sens["denominator"]) == (len(reference) - n_missed, len(reference))
    assert metrics.loc[("fp_per_patient", "all", "all"), "estimate"] == 0.0
    assert metrics.loc[("patient_specificity", "all", "all"), "estimate"] == 1.0
    assert metrics.loc[("bone_specificity", "all", "all"), "estimate"] == 1.0
    assert "lesion_sensitivity" in result.output
    # a missing prediction is named
    (pred_dir / f"{missed}.nii.gz").unlink()
    result = runner.invoke(app, ["ct", "lesions-cohort", "--manifest", str(cohort), "--predictions", str(pred_dir),
                                 "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and missed in result.output


def test_icc_command(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(10, 3)) * [1, 10, 100]
    names = ["original_firstorder_Mean", "original_glcm_Contrast", "original_shape_MeshVolume"]
    ids = [f"C{i}" for i in range(10)]
    manual = pd.DataFrame(truth + rng.normal(scale=0.1, size=truth.shape), columns=names).assign(case_id=ids)
    predicted = pd.DataFrame(truth + rng.normal(scale=0.3, size=truth.shape), columns=names).assign(case_id=ids)
    manual.to_csv(tmp_path / "manual.csv", index=False)
    predicted.to_parquet(tmp_path / "predicted.parquet")
    out = tmp_path / "res" / "icc.csv"
    result = runner.invoke(app, ["ct", "icc", "--manual", str(tmp_path / "manual.csv"), "--predicted",
                                 str(tmp_path / "predicted.parquet"), "--out", str(out), "--icc", "3,1"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns[:5]) == ["feature", "class", "icc", "ci_low", "ci_high"]
    assert table["class"].tolist() == ["firstorder", "glcm", "shape"]
    x = np.column_stack([manual["original_glcm_Contrast"], predicted["original_glcm_Contrast"]])
    n = len(x)
    msr = 2 * ((x.mean(axis=1) - x.mean()) ** 2).sum() / (n - 1)
    sse = ((x - x.mean(axis=1, keepdims=True) - x.mean(axis=0) + x.mean()) ** 2).sum()
    mse = sse / (n - 1)
    assert table.loc[1, "icc"] == pytest.approx((msr - mse) / (msr + mse))  # ICC(3,1) by hand
    assert (tmp_path / "res" / "icc_by_class.csv").is_file() and (tmp_path / "res" / "icc_by_class.png").is_file()
    predicted.iloc[:-1].to_csv(tmp_path / "short.csv", index=False)
    result = runner.invoke(app, ["ct", "icc", "--manual", str(tmp_path / "manual.csv"), "--predicted",
                                 str(tmp_path / "short.csv"), "--out", str(tmp_path / "x.csv")])
    assert result.exit_code == 2 and "C9" in result.output and "only" in result.output
