"""`osteomet run ct`: the CT study from a manifest and a ct_study.yaml (the demo test covers a killed run's resume)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.layout import RunLayout

runner = CliRunner()


@pytest.fixture(scope="module")
def ct_manifest(tmp_path_factory) -> Path:
    from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort

    return generate_ct_cohort(tmp_path_factory.mktemp("ct_cohort"), 8, seed=3,
                              config=CTSynthConfig(region="abdomen_pelvis", inplane_size=64))


def _study(folder: Path, **sections) -> Path:
    study = {"split": {"ratios": [5, 2, 3]}, "detection": {"enabled": False}, "segmentation": {"config": "tiny", "architectures": ["unet"],
                                                               "max_epochs": 1},
             "lesions": {"n_resamples": 200}, "icc": {"params": "tiny"}}
    for key, value in sections.items():
        study[key] = {**study.get(key, {}), **value}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ct_study.yaml").write_text(yaml.safe_dump(study))
    return folder / "ct_study.yaml"


@pytest.fixture(scope="module")
def ct_run(ct_manifest, tmp_path_factory) -> Path:
    """A finished tiny CT study through the CLI: one detector (ResNet34) and one segmenter (UNet), one epoch each."""
    folder = tmp_path_factory.mktemp("ct_study")
    config = _study(folder / "config", detection={"enabled": True, "config": "tiny", "architectures": ["resnet34"],
                                                  "max_epochs": 1})
    result = runner.invoke(app, ["run", "ct", "-m", str(ct_manifest), "-o", str(folder / "run"), "--config",
                                 str(config)])
    assert result.exit_code == 0, result.output
    return folder / "run"


def test_run_ct_splits_once_trains_every_model_analyses_every_segmenter_and_reruns_as_up_to_date(ct_run,
                                                                                                  ct_manifest):
    layout = RunLayout(ct_run)
    split = pd.read_csv(layout.ct_split / "manifest.csv")
    assert set(split["split"]) <= {"train", "val", "test"} and {"train", "val", "test"} <= set(split["split"])
    expected = dict(zip(split["patient_id"], split["split"]))
    for task in (layout.ct_detection, layout.ct_segmentation):  # one split for every model
        patients = pd.read_csv(task / "model" / "patients.csv")
        assert dict(zip(patients["patient_id"], patients["split"])) == expected
    assert (layout.ct_detection / "predictions" / "resnet34" / "metrics.csv").is_file()
    assert (layout.ct_lesions_of("unet") / "lesions.csv").is_file()
    assert (layout.ct_icc_of("unet") / "icc" / "icc.csv").is_file()
    assert sorted(p.name for p in (layout.ct_lesions / "figures").glob("*.png"))  # drawn once, for the report
    rules = json.loads((layout.ct_rules / "rules.json").read_text(encoding="utf-8"))
    assert set(rules["detectors"]) == {"resnet34"} and set(rules["segmenters"]) == {"unet"}
    metrics = pd.read_csv(layout.ct_rules / "patient_metrics.csv")
    test = metrics[(metrics["split"] == "test") & (metrics["rule"] == "chosen")]
    assert {"patient_sensitivity", "patient_specificity"} <= set(test["metric"])
    assert set(test.loc[test["task"] == "segmenter", "metric"]) >= {"fp_lesions_per_lesion_free_patient",
                                                                      "lesion_sensitivity"}
    config = ct_run.parent / "config" / "ct_study.yaml"
    again = runner.invoke(app, ["run", "ct", "-m", str(ct_manifest), "-o", str(ct_run), "--config", str(config)])
    assert again.exit_code == 0 and again.output.count("up to date") >= 7, again.output
    assert "done" not in again.output.replace("up to date", "")


def test_run_ct_refuses_an_unknown_architecture_before_any_stage(ct_manifest, tmp_path):
    config = _study(tmp_path / "config", segmentation={"architectures": ["unet", "vnet"]})
    result = runner.invoke(app, ["run", "ct", "-m", str(ct_manifest), "-o", str(tmp_path / "run"), "--config",
                                 str(config)])
    assert result.exit_code == 2 and "vnet" in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_run_ct_refuses_a_split_without_lesions_where_the_models_learn(ct_manifest, tmp_path):
    frame = pd.read_csv(ct_manifest)
    truth = pd.read_csv(ct_manifest.parent / "lesions_truth.csv")
    lesion_free = sorted(set(frame["patient_id"]) - set(truth["patient_id"]))
    assert lesion_free, "the synthetic cohort has lesion-free patients"
    frame["split"] = ["val" if p in lesion_free else "train" for p in frame["patient_id"]]
    base = ct_manifest.parent
    for column in ("ct", "lesion_mask", "bone_map"):
        frame[column] = [str(base / v) for v in frame[column]]
    frame.to_csv(tmp_path / "given.csv", index=False)
    result = runner.invoke(app, ["run", "ct", "-m", str(tmp_path / "given.csv"), "-o", str(tmp_path / "run"),
                                 "--config", str(_study(tmp_path / "config"))])
    assert result.exit_code == 2 and "no patient with a lesion in split 'val'" in " ".join(result.output.split())
    assert not (tmp_path / "run" / "ct" / "split").exists()


def test_predict_ct_on_a_synthetic_patient_scores_slices_masks_and_describes_lesions(ct_run, ct_manifest, tmp_path):
    row = pd.read_csv(ct_manifest).iloc[0]
    base = ct_manifest.parent
    result = runner.invoke(app, ["predict", "ct", "--model", str(ct_run), "--ct", str(base / row["ct"]), "--bones",
                                 str(base / row["bone_map"]), "--id", "NEW1", "-o", str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "pred" / "result.json").read_text(encoding="utf-8"))
    assert saved["segmenter"] == "unet" and set(saved["flagged_slices"]) == {"resnet34"}
    mask = sitk.ReadImage(saved["mask"])
    ct = sitk.ReadImage(str(base / row["ct"]))
    assert mask.GetSize() == ct.GetSize() and mask.GetSpacing() == pytest.approx(ct.GetSpacing())  # the CT's grid
    lesions = pd.read_csv(tmp_path / "pred" / "lesions" / "lesions.csv")
    assert len(lesions) == saved["lesions"]
    if len(lesions):
        assert lesions["bone_name"].notna().all()
        assert len(saved["overlays"]) == min(len(lesions), 12)
        assert all(Path(p).stat().st_size > 5_000 for p in saved["overlays"])


def test_predict_ct_on_the_real_dicom_ct_without_a_bone_map_says_bone_identity_is_unavailable(ct_run, tmp_path):
    from tests.conftest import shared_path

    series = shared_path("ct", "totalseg_dicom", "ct")
    result = runner.invoke(app, ["predict", "ct", "--model", str(ct_run), "--ct", str(series), "-o",
                                 str(tmp_path / "real")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "bone identity is unavailable" in said
    assert "no DICOM SEG" in said and "SOPInstanceUID" in said  # this public series was anonymised without UIDs
    saved = json.loads((tmp_path / "real" / "result.json").read_text(encoding="utf-8"))
    assert saved["bone_identity"] is False
    assert sitk.ReadImage(saved["mask"]).GetSize() == (512, 512, 20)
    refused = runner.invoke(app, ["predict", "ct", "--model", str(ct_run), "--ct", str(series), "--segmenter",
                                  "vnet", "-o", str(tmp_path / "other")])
    assert refused.exit_code == 2 and "--segmenter vnet: not trained" in refused.output


def test_predict_ct_on_the_real_nifti_ct_with_its_totalsegmentator_map_names_each_lesions_bone(ct_run, tmp_path):
    from osteomet.data.totalsegmentator import TOTALSEG_BONES
    from tests.conftest import shared_path

    ct, bones = shared_path("ct", "totalseg_example", "ct.nii.gz"), shared_path("ct", "totalseg_example",
                                                                                "bones_totalsegmentator.nii.gz")
    result = runner.invoke(app, ["predict", "ct", "--model", str(ct_run), "--ct", str(ct), "--bones", str(bones),
                                 "-o", str(tmp_path / "real")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "bone identity is unavailable" not in said and "no DICOM SEG" in said  # a NIfTI has no series to refer to
    saved = json.loads((tmp_path / "real" / "result.json").read_text(encoding="utf-8"))
    assert saved["bone_identity"] is True
    assert sitk.ReadImage(saved["mask"]).GetSize() == sitk.ReadImage(str(ct)).GetSize()
    lesions = pd.read_csv(tmp_path / "real" / "lesions" / "lesions.csv")
    assert len(lesions) == saved["lesions"]
    # each lesion lies in a bone of the map (named as TotalSegmentator names it) or says why it has none
    names = {bone.name for bone in TOTALSEG_BONES.values()}
    for _, lesion in lesions.iterrows():
        assert lesion["bone_name"] in names or lesion["bone_status"] in ("outside_bone", "tie"), lesion.to_dict()


def test_run_ct_interrupted_by_ctrl_c_in_training_continues_where_it_stopped(ct_manifest, tmp_path):
    """Ctrl-C after the segmenter's first epoch: exit 130 with how to continue; the same command resumes the
    epochs (none repeated) and finishes every stage."""
    import subprocess
    import sys

    from tests.pipeline.test_run_mri import _interrupt_when

    config = _study(tmp_path / "config", segmentation={"max_epochs": 3})
    run = tmp_path / "run"
    command = [sys.executable, "-m", "osteomet", "run", "ct", "-m", str(ct_manifest), "-o", str(run), "--config",
               str(config)]
    last = RunLayout(run).ct_segmentation / "model" / "unet" / "checkpoints" / "last.pt"
    _interrupt_when(command, signal.SIGINT, last.is_file, tmp_path / "run.log")
    done = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", errors="replace")
    assert done.returncode == 0, done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert "ct split: up to date" in said and "ct segmentation train: done (continued after an interruption)" in said
    history = pd.read_csv(RunLayout(run).ct_segmentation / "model" / "unet" / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2]
    assert (RunLayout(run).ct_lesions_of("unet") / "lesions.csv").is_file()
