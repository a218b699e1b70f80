"""`osteomet run ct` with nnU-Net v2: the real package trains on the study's split and joins every later stage.

One tiny study (8 synthetic CTs, MONAI models off, nnU-Net 2d with the one-epoch smoke trainer)
runs once; the tests read what it wrote, rerun it, and continue a copy whose training was cut off.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.layout import RunLayout

runner = CliRunner()
SMOKE = "nnUNetTrainer_OsteometSmoke"


@pytest.fixture(scope="module")
def nnunetv2() -> None:
    pytest.importorskip("nnunetv2")


@pytest.fixture(scope="module")
def ct_manifest(tmp_path_factory) -> Path:
    from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort

    return generate_ct_cohort(tmp_path_factory.mktemp("ct_cohort"), 8, seed=3,
                              config=CTSynthConfig(region="abdomen_pelvis", inplane_size=64))


def _study(folder: Path, **nnunet) -> Path:
    """MONAI models off; nnU-Net's shortest complete run (2d, 1 epoch of 2 batches, no mirroring, 1 CPU thread)."""
    study = {"split": {"ratios": [5, 2, 3]}, "device": "cpu", "detection": {"enabled": False},
             "segmentation": {"enabled": False}, "lesions": {"n_resamples": 200}, "icc": {"params": "tiny"},
             "nnunet": {"enabled": True, "configuration": "2d", "trainer": SMOKE, "disable_tta": True,
                        "cpu_threads": 1, **nnunet}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ct_study.yaml").write_text(yaml.safe_dump(study))
    return folder / "ct_study.yaml"


def _run(manifest: Path, run: Path, config: Path) -> tuple[dict, list[str]]:
    from osteomet.pipeline.run_ct import run_ct

    lines: list[str] = []
    return run_ct(manifest, run, config, log=lines.append), lines


@pytest.fixture(scope="module")
def nnunet_run(nnunetv2, ct_manifest, tmp_path_factory) -> tuple[Path, Path, dict, list[str]]:
    folder = tmp_path_factory.mktemp("ct_nnunet_study")
    config = _study(folder / "config")
    result, lines = _run(ct_manifest, folder / "run", config)
    return folder / "run", config, result, lines


def test_nnunet_masks_join_the_comparison_lesions_and_icc_like_any_segmenter(nnunet_run):
    run, _, result, lines = nnunet_run
    layout = RunLayout(run)
    study = pd.read_csv(layout.ct_split / "manifest.csv", dtype={"patient_id": str})
    split = dict(zip(study["patient_id"], study["split"]))
    # nnU-Net trained on the study's own split: fold 0 = its train patients, validated on its val patients
    folds = json.loads((layout.ct_nnunet / "plan" / "nnUNet_preprocessed" / "Dataset501_OsteometCT" /
                        "splits_final.json").read_text(encoding="utf-8"))
    assert folds == [{"train": sorted(p for p, s in split.items() if s == "train"),
                      "val": sorted(p for p, s in split.items() if s == "val")}]
    fold = (layout.ct_nnunet / "train" / "nnUNet_results" / "Dataset501_OsteometCT" / f"{SMOKE}__nnUNetPlans__2d" /
            "fold_0")
    assert (fold / "checkpoint_final.pth").is_file()
    # every patient's mask, named as the MONAI segmenters name theirs, on the patient's own CT grid
    predictions = layout.ct_segmentation / "predictions"
    masks = predictions / "nnunet" / "masks"
    assert sorted(p.name for p in masks.iterdir()) == sorted(f"{p}.nii.gz" for p in split)
    for row in study.itertuples():
        ct, mask = sitk.ReadImage(row.ct), sitk.ReadImage(str(masks / f"{row.patient_id}.nii.gz"))
        assert mask.GetSize() == ct.GetSize() and mask.GetOrigin() == ct.GetOrigin()
        assert mask.GetSpacing() == ct.GetSpacing() and mask.GetDirection() == ct.GetDirection()
    metrics = pd.read_csv(predictions / "nnunet" / "metrics.csv", dtype={"patient_id": str})
    assert dict(zip(metrics["patient_id"], metrics["split"])) == split
    assert set(metrics["model"]) == {"nnunet"} and metrics["dice"].between(0, 1).all()
    # the comparison, the per-lesion analysis and the ICC took it up with no special case
    compared = pd.read_csv(predictions / "comparison" / "per_patient.csv", dtype={"patient_id": str})
    assert set(compared["model"]) == {"nnunet"}
    assert sorted(compared["patient_id"]) == sorted(p for p, s in split.items() if s == "test")
    summary = pd.read_csv(predictions / "comparison" / "summary.csv")
    assert {"ci_low", "ci_high"} <= set(summary.columns) and "nnunet" in set(summary["model"])
    lesions = pd.read_csv(layout.ct_lesions_of("nnunet") / "patients.csv", dtype={"patient_id": str})
    assert sorted(lesions["patient_id"]) == sorted(split)
    # the ICC stage extracted features from nnU-Net's mask of every patient (the smoke network's masks are empty:
    # it starts from a 0.1% lesion prior and learns nothing, so the stage records that there is nothing to agree on)
    extraction = pd.read_csv(layout.ct_icc_of("nnunet") / "predicted" / "extraction_log.csv",
                             dtype={"patient_id": str})
    assert sorted(extraction["patient_id"]) == sorted(split)
    icc = json.loads((layout.ct_icc_of("nnunet") / "icc" / "stage.json").read_text(encoding="utf-8"))
    assert icc["status"] == "complete" and icc["inputs"]["predicted"].startswith(str(layout.ct_icc_of("nnunet")))
    empty = metrics["predicted_voxels"] == 0
    cases = icc["summary"]["cases"]  # patients with features from both masks; an ICC needs 2
    assert (layout.ct_icc_of("nnunet") / "icc" / "icc.csv").is_file() == (cases >= 2)
    assert cases <= int((~empty).sum())  # a patient the network left empty has no predicted features
    if cases < 2:  # e.g. the smoke network drew a blob in one patient only: said, not an error
        assert icc["summary"]["note"].startswith(f"no ICC: {cases} patient(s)")
    assert result["dice"]["nnunet"] == pytest.approx(metrics.loc[metrics["split"] == "test", "dice"].mean(), abs=1e-3)
    # one progress line per step, each a stage with its own folder
    steps = ("export", "plan", "train", "predict", "import")
    for step in steps:
        assert any(line.startswith(f"ct nnunet {step}: done") for line in lines), lines
    for folder in ("export", "plan", "train", "predict"):
        record = json.loads((layout.ct_nnunet / folder / "stage.json").read_text(encoding="utf-8"))
        assert record["status"] == "complete" and record["stage"] == f"ct-nnunet-{folder}"
    assert json.loads((predictions / "nnunet" / "stage.json").read_text(encoding="utf-8"))["stage"] == "ct-nnunet-import"
    assert list((layout.ct_nnunet / "logs").glob("*-train.log"))


def test_rerun_skips_every_stage(nnunet_run, ct_manifest):
    run, config, _, _ = nnunet_run
    result, lines = _run(ct_manifest, run, config)
    assert all(stage["skipped"] for stage in result["stages"].values()), lines
    assert all("up to date" in line for line in lines), lines
    assert {"ct nnunet train", "ct segmentation compare", "ct lesions nnunet",
            "ct radiomics icc nnunet"} <= set(result["stages"])


def test_an_interrupted_training_continues_from_nnunets_checkpoint(nnunet_run, ct_manifest, tmp_path):
    """A copy of the run whose training stopped after its last epoch: rerun continues with --c, redoes nothing else."""
    run, config, _, _ = nnunet_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    train = copy / "ct" / "nnunet" / "train"
    fold = train / "nnUNet_results" / "Dataset501_OsteometCT" / f"{SMOKE}__nnUNetPlans__2d" / "fold_0"
    (fold / "checkpoint_final.pth").rename(fold / "checkpoint_latest.pth")  # what nnU-Net leaves mid-training
    shutil.rmtree(fold / "validation")
    record = json.loads((train / "stage.json").read_text(encoding="utf-8"))
    (train / "stage.json").write_text(json.dumps({**record, "status": "running"}))
    result, lines = _run(ct_manifest, copy, config)
    assert any(line.startswith("ct nnunet train: fold 0") and "continued" in line for line in lines), lines
    assert any(line.startswith("ct nnunet train: done (continued after an interruption)") for line in lines), lines
    log = sorted((copy / "ct" / "nnunet" / "logs").glob("*-train.log"))[-1].read_text(encoding="utf-8")
    assert log.splitlines()[0].endswith("--c")
    assert (fold / "checkpoint_final.pth").is_file() and (fold / "validation" / "summary.json").is_file()
    redone = [name for name, stage in result["stages"].items() if not stage["skipped"]]
    assert redone == ["ct nnunet train"], lines  # the same model: nothing downstream reruns


def test_nnunet_joins_the_monai_segmenters_in_one_comparison(tmp_path):
    """The comparison stage reads every segmenter folder: nnU-Net paired with a MONAI network, Holm-adjusted."""
    from osteomet.layout import open_run_dir
    from osteomet.pipeline.run_ct import compare_ct_segmenters

    predictions = open_run_dir(tmp_path / "run", "ct") / "ct" / "segmentation" / "predictions"
    patients = [f"P{i}" for i in range(6)]
    for model, dice in (("unet", [0.5, 0.6, 0.45, 0.65, 0.5, 0.5]), ("nnunet", [0.7, 0.8, 0.6, 0.9, 0.7, 0.7]),
                        ("attention_unet", [0.6, 0.6, 0.5, 0.7, 0.6, 0.65])):
        (predictions / model / "masks").mkdir(parents=True)
        pd.DataFrame({"patient_id": patients, "split": ["val", "test", "test", "test", "test", "test"],
                      "model": model, "dice": dice, "precision": dice, "recall": dice}).to_csv(
            predictions / model / "metrics.csv", index=False)
    outcome = compare_ct_segmenters(predictions, predictions / "comparison")
    assert outcome.summary["models"] == ["attention_unet", "nnunet", "unet"] and outcome.summary["patients"] == 5
    pairwise = pd.read_csv(predictions / "comparison" / "pairwise_dice.csv")
    assert len(pairwise) == 3 and (pairwise["t_p_adj"] >= pairwise["t_p"]).all()  # Holm over the 3 pairs
    pair = pairwise[pairwise[["model_a", "model_b"]].apply(set, axis=1) == {"nnunet", "unet"}].iloc[0]
    assert pair["n"] == 5 and abs(pair["mean_diff"]) == pytest.approx(0.2)
    assert compare_ct_segmenters(predictions, predictions / "comparison").skipped


def test_cross_validation_exports_k_folds_over_train_and_val_pooled(ct_manifest, tmp_path):
    from osteomet.layout import MANIFEST, open_run_dir
    from osteomet.pipeline.ct_nnunet import export_nnunet
    from osteomet.pipeline.ct_study import CTNnunetSettings, CTStudyConfig
    from osteomet.pipeline.run_ct import ct_study_manifest

    layout = RunLayout(open_run_dir(tmp_path / "run", "ct"))
    ct_study_manifest(ct_manifest, layout.ct_split, CTStudyConfig(split={"ratios": [5, 2, 3]}))
    study = pd.read_csv(layout.ct_split / MANIFEST, dtype={"patient_id": str})
    settings = CTNnunetSettings(enabled=True, cross_validation=3)
    assert settings.fold_list == [0, 1, 2]
    export_nnunet(layout.ct_split / MANIFEST, layout.ct_nnunet / "export", settings, seed=0)
    folds = json.loads((layout.ct_nnunet / "export" / "nnUNet_preprocessed" / "Dataset501_OsteometCT" /
                        "splits_final.json").read_text(encoding="utf-8"))
    pooled = sorted(study.loc[study["split"].isin(["train", "val"]), "patient_id"])
    assert len(folds) == 3 and sorted(p for f in folds for p in f["val"]) == pooled
    tested = sorted(study.loc[study["split"] == "test", "patient_id"])
    images = layout.ct_nnunet / "export" / "nnUNet_raw" / "Dataset501_OsteometCT" / "imagesTs"
    assert sorted(p.name.removesuffix("_0000.nii.gz") for p in images.iterdir()) == tested


def test_an_unknown_trainer_is_refused_before_any_stage(nnunetv2, ct_manifest, tmp_path):
    config = _study(tmp_path / "config", trainer="nnUNetTrainer_OsteometSmok")
    result = runner.invoke(app, ["run", "ct", "-m", str(ct_manifest), "-o", str(tmp_path / "run"), "--config",
                                 str(config)])
    said = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert f"{config}: nnunet.trainer: nnU-Net trainer 'nnUNetTrainer_OsteometSmok' does not exist" in said
    assert f"did you mean {SMOKE}" in said
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("nnunet", "expected"), [
    ({"folds": [1]}, "without cross_validation there is one fold, 0"),
    ({"cross_validation": 5, "folds": [0, 5]}, "cross_validation 5 defines folds 0-4"),
    ({"configuration": "3d"}, "nnunet.configuration"),
    ({"device": "cuda:1"}, "nnunet.device"),
    ({"planner": "ExperimentPlaner"}, "did you mean ExperimentPlanner"),
])
def test_other_nnunet_mistakes_are_refused_when_the_config_is_read(nnunetv2, tmp_path, nnunet, expected):
    from osteomet.config import ConfigError
    from osteomet.pipeline.ct_study import load_ct_study_config

    with pytest.raises(ConfigError) as caught:
        load_ct_study_config(_study(tmp_path, **nnunet))
    assert expected in " ".join(str(caught.value).split())


def test_a_cuda_index_for_nnunet_names_the_way_to_choose_the_gpu(nnunetv2, tmp_path):
    from osteomet.config import ConfigError
    from osteomet.pipeline.ct_study import load_ct_study_config

    path = _study(tmp_path, device=None)
    path.write_text(path.read_text(encoding="utf-8").replace("device: cpu", "device: cuda:1"))
    with pytest.raises(ConfigError, match="CUDA_VISIBLE_DEVICES=1"):
        load_ct_study_config(path)


def test_without_nnunetv2_an_enabled_nnunet_gives_the_install_recipe(monkeypatch, tmp_path):
    import importlib.util

    from osteomet.ct.nnunet.run import NnunetNotInstalledError
    from osteomet.pipeline.ct_study import load_ct_study_config

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nnunetv2" else real(name, *a))
    with pytest.raises(NnunetNotInstalledError, match="pip install --no-deps nnunetv2"):
        load_ct_study_config(_study(tmp_path))
    assert load_ct_study_config("tiny").nnunet.enabled is False  # the CPU trial needs no nnU-Net


def test_presets_name_nnunets_settings(nnunetv2):
    from osteomet.pipeline.ct_study import load_ct_study_config

    default = load_ct_study_config("default").nnunet
    assert (default.enabled, default.configuration, default.trainer, default.fold_list) == (
        True, "3d_fullres", "nnUNetTrainer", [0])
    tiny = load_ct_study_config("tiny").nnunet
    assert (tiny.enabled, tiny.configuration, tiny.trainer) == (False, "2d", SMOKE)
