"""nnU-Net v2 integration: raw dataset export, nnU-Net's own integrity check and planning, import and scoring.

The export is read back file by file against the synthetic cohort; the planning test runs
nnU-Net's real ``verify_dataset_integrity``, fingerprint extraction, ``plan_experiments`` and
preprocessing on it. Training is left to benchmarks/bench_nnunet.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.ct.nnunet.export import (
    build_folds,
    case_identifiers,
    export_dataset,
    read_exported_cases,
    read_split_table,
)
from osteomet.ct.nnunet.importer import import_predictions
from osteomet.ct.nnunet.layout import NnunetLayout
from osteomet.data.case import CTIntensityError
from osteomet.data.geometry import GeometryMismatchError
from osteomet.data.label_masks import MaskError
from osteomet.data.manifest import ManifestError
from osteomet.utils.files import sha256_file

SPLITS = {"CT001": "train", "CT002": "train", "CT003": "val", "CT004": "test"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four tiny synthetic CT patients (48x48 in-plane, 10 mm slices) with a split column."""
    from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort

    out = tmp_path_factory.mktemp("ct_nnunet")
    # at 10 mm pixels every bone is cortex through and through: keep the lesions the visibility rules would refuse
    config = CTSynthConfig(inplane_size=48, region="abdomen_pelvis", slice_thickness_mm=10.0, lesion_free_fraction=0.0,
                           min_focal_width_voxels=1.0, max_cortex_share=1.0)
    manifest = generate_ct_cohort(out / "cohort", 4, seed=5, config=config)
    table = pd.read_csv(manifest, dtype=str)
    table["split"] = table["patient_id"].map(SPLITS)
    path = manifest.with_name("manifest_split.csv")
    table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def exported(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[NnunetLayout, dict[str, str]]:
    """The cohort exported once; also returns the SHA-256 of every input file taken before the export."""
    manifest = pd.read_csv(cohort, dtype=str)
    inputs = [cohort.parent / p for column in ("ct", "lesion_mask") for p in manifest[column]]
    hashes = {str(p): sha256_file(p) for p in inputs}
    layout = export_dataset(cohort, tmp_path_factory.mktemp("nn") / "nnunet", dataset_id=502, dataset_name="TestCT")
    return layout, hashes


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_export_writes_nnunet_raw_layout_and_dataset_json(cohort: Path, exported) -> None:
    layout, hashes = exported
    assert layout.raw == layout.root / "nnUNet_raw" / "Dataset502_TestCT"
    meta = json.loads((layout.raw / "dataset.json").read_text(encoding="utf-8"))
    assert meta["channel_names"] == {"0": "CT"}
    assert meta["labels"] == {"background": 0, "lesion": 1}
    assert meta["numTraining"] == 3
    assert meta["file_ending"] == ".nii.gz"
    assert sorted(p.name for p in (layout.raw / "imagesTr").iterdir()) == ["CT001_0000.nii.gz", "CT002_0000.nii.gz",
                                                                          "CT003_0000.nii.gz"]
    assert sorted(p.name for p in (layout.raw / "labelsTr").iterdir()) == ["CT001.nii.gz", "CT002.nii.gz",
                                                                          "CT003.nii.gz"]
    assert sorted(p.name for p in (layout.raw / "imagesTs").iterdir()) == ["CT004_0000.nii.gz"]
    assert sorted(p.name for p in (layout.raw / "labelsTs").iterdir()) == ["CT004.nii.gz"]
    # voxels and geometry are the originals', labels are 0/1 uint8
    manifest = pd.read_csv(cohort, dtype=str).set_index("patient_id")
    for pid, split in SPLITS.items():
        images, labels = ("imagesTs", "labelsTs") if split == "test" else ("imagesTr", "labelsTr")
        original = sitk.ReadImage(str(cohort.parent / manifest.loc[pid, "ct"]))
        copy = sitk.ReadImage(str(layout.raw / images / f"{pid}_0000.nii.gz"))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(copy), sitk.GetArrayFromImage(original))
        assert copy.GetSpacing() == original.GetSpacing() and copy.GetOrigin() == original.GetOrigin()
        label = sitk.ReadImage(str(layout.raw / labels / f"{pid}.nii.gz"))
        assert label.GetPixelID() == sitk.sitkUInt8
        np.testing.assert_array_equal(sitk.GetArrayFromImage(label),
                                      _array(cohort.parent / manifest.loc[pid, "lesion_mask"]))
        assert label.GetDirection() == copy.GetDirection()
    # the inputs were only read
    assert {p: sha256_file(p) for p in hashes} == hashes


def test_split_file_is_the_manifest_patient_split(cohort: Path, exported) -> None:
    layout, _ = exported
    manifest = pd.read_csv(cohort, dtype=str)
    expected = [{"train": sorted(manifest.loc[manifest["split"] == "train", "patient_id"]),
                 "val": sorted(manifest.loc[manifest["split"] == "val", "patient_id"])}]
    assert json.loads((layout.preprocessed / "splits_final.json").read_text(encoding="utf-8")) == expected
    record = {c.patient_id: c.split for c in read_exported_cases(layout)}
    assert record == dict(zip(manifest["patient_id"], manifest["split"]))


def test_export_never_writes_into_an_existing_dataset(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "nnunet"
    layout = export_dataset(cohort, out, dataset_id=503, dataset_name="Again")
    marker = layout.raw / "imagesTr" / "CT001_0000.nii.gz"
    before = marker.stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="Dataset503_Again.*--overwrite"):
        export_dataset(cohort, out, dataset_id=503, dataset_name="Again")
    assert marker.stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="dataset id 503 is already used by Dataset503_Again"):
        export_dataset(cohort, out, dataset_id=503, dataset_name="Other")
    # a split table moves CT003 to test: --overwrite replaces the dataset and the split file
    table = tmp_path / "patients.csv"
    pd.DataFrame({"patient_id": list(SPLITS), "split": ["train", "train", "test", "test"]}).to_csv(table, index=False)
    export_dataset(cohort, out, dataset_id=503, dataset_name="Again", splits=read_split_table(table), overwrite=True,
                   n_folds=5, seed=1)
    assert sorted(p.name for p in (layout.raw / "imagesTs").iterdir()) == ["CT003_0000.nii.gz", "CT004_0000.nii.gz"]
    assert json.loads((layout.raw / "dataset.json").read_text(encoding="utf-8"))["numTraining"] == 2
    # no val patient: K folds by patient (here 2, one per training patient)
    assert layout.read_splits() == [{"train": ["CT002"], "val": ["CT001"]}, {"train": ["CT001"], "val": ["CT002"]}] \
        or layout.read_splits() == [{"train": ["CT001"], "val": ["CT002"]}, {"train": ["CT002"], "val": ["CT001"]}]
    assert not list(layout.raw_root.glob(".*"))  # no staging folder left behind


def test_without_a_split_the_export_draws_the_slice_dataset_split(cohort: Path, tmp_path: Path) -> None:
    """A manifest without splits: nnU-Net gets exactly the patients the MONAI slice dataset puts in each split."""
    from osteomet.ct.slices.config import SliceConfig
    from osteomet.ct.slices.dataset import build_slice_dataset
    from osteomet.data.manifest import read_manifest

    table = pd.read_csv(cohort, dtype=str).drop(columns="split")
    for column in ("ct", "lesion_mask", "bone_map"):
        table[column] = [str(cohort.parent / p) for p in table[column]]
    path = tmp_path / "no_split.csv"
    table.to_csv(path, index=False)
    manifest = read_manifest(path)
    build_slice_dataset(manifest, tmp_path / "slices", SliceConfig())
    monai = pd.read_csv(tmp_path / "slices" / "patients.csv", dtype=str)
    layout = export_dataset(manifest, tmp_path / "nn")
    drawn = {c.patient_id: c.split for c in read_exported_cases(layout)}
    assert drawn == dict(zip(monai["patient_id"], monai["split"]))
    assert {"train", "val", "test"} <= set(monai["split"])
    # and the slice dataset's patients.csv, given as the split table, reproduces it
    again = export_dataset(manifest, tmp_path / "nn2", splits=read_split_table(tmp_path / "slices" / "patients.csv"))
    assert again.read_splits() == layout.read_splits()


def test_folds_partition_training_patients_when_there_is_no_val() -> None:
    ids = [f"P{i:02d}" for i in range(11)]
    folds = build_folds(ids, [], n_folds=5, seed=3)
    assert len(folds) == 5
    vals = [p for fold in folds for p in fold["val"]]
    assert sorted(vals) == ids  # every patient validates exactly once
    for fold in folds:
        assert not set(fold["train"]) & set(fold["val"])
        assert sorted(fold["train"] + fold["val"]) == ids
        assert len(fold["val"]) in (2, 3)
    assert build_folds(["b", "a"], ["c"]) == [{"train": ["a", "b"], "val": ["c"]}]
    with pytest.raises(ValueError, match="at least 2"):
        build_folds(["a"], [])


def test_case_ids_are_sanitised_and_unique() -> None:
    assert case_identifiers(["CT 001", "a/b.c"]) == {"CT 001": "CT-001", "a/b.c": "a-b-c"}
    with pytest.raises(ValueError, match="'CT 001' and 'CT-001' both become nnU-Net case id 'CT-001'"):
        case_identifiers(["CT 001", "CT-001"])


def test_export_errors_name_the_patient_or_file(cohort: Path, tmp_path: Path) -> None:
    table = {"CT001": "train", "CT002": "train", "CT003": "val"}  # CT004 missing
    with pytest.raises(ManifestError, match="patient 'CT004': no split"):
        export_dataset(cohort, tmp_path / "a", splits=table)
    # a CT stored without the rescale (all values >= 0) is refused, naming the file
    manifest = pd.read_csv(cohort, dtype=str)
    ct = sitk.ReadImage(str(cohort.parent / manifest.loc[0, "ct"]))
    raw = sitk.Cast(sitk.Clamp(ct + 1024, lowerBound=0), sitk.sitkInt16)
    bad = tmp_path / "raw_ct.nii.gz"
    sitk.WriteImage(raw, str(bad))
    manifest.loc[0, "ct"] = str(bad)
    for column in ("lesion_mask", "bone_map"):
        manifest[column] = [str(cohort.parent / p) for p in manifest[column]]
    manifest.loc[1:, "ct"] = [str(cohort.parent / p) for p in manifest.loc[1:, "ct"]]
    bad_manifest = tmp_path / "bad.csv"
    manifest.to_csv(bad_manifest, index=False)
    with pytest.raises(CTIntensityError, match="raw_ct.nii.gz.*Hounsfield"):
        export_dataset(bad_manifest, tmp_path / "b")
    assert not (tmp_path / "b" / "nnUNet_raw" / "Dataset501_OsteometCT").exists()


def _fake_prediction(layout: NnunetLayout, case: str, folder: Path, transform=None, image=None) -> Path:
    """What nnU-Net writes for a case: a label map named by case id on the exported image's grid."""
    label_dir = "labelsTs" if (layout.raw / "labelsTs" / f"{case}.nii.gz").exists() else "labelsTr"
    label = image if image is not None else sitk.ReadImage(str(layout.raw / label_dir / f"{case}.nii.gz"))
    if transform is not None:
        label = transform(label)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{case}.nii.gz"
    sitk.WriteImage(label, str(path))
    return path


def test_import_round_trip_scores_against_the_reference(cohort: Path, exported, tmp_path: Path) -> None:
    layout, _ = exported
    predictions = tmp_path / "pred"
    _fake_prediction(layout, "CT004", predictions)  # perfect

    def lesion_cut(array: np.ndarray) -> int:  # the middle one of the slices that hold lesion
        slices = np.flatnonzero(array.any(axis=(1, 2)))
        assert len(slices) >= 2, "the test needs a lesion on two slices or more"
        return int(slices[len(slices) // 2])

    def half(label: sitk.Image) -> sitk.Image:  # keep the lesion voxels below the middle lesion slice
        array = sitk.GetArrayFromImage(label)
        array[lesion_cut(array):] = 0
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(label)
        return out

    _fake_prediction(layout, "CT003", predictions, half)
    table = import_predictions(predictions, layout.root, tmp_path / "run", model="nnunet")
    manifest = pd.read_csv(cohort, dtype=str).set_index("patient_id")
    row = table.set_index("patient_id").loc["CT004"]
    assert (row["dice"], row["precision"], row["recall"], row["model"], row["split"]) == (1.0, 1.0, 1.0, "nnunet",
                                                                                         "test")
    reference = _array(cohort.parent / manifest.loc["CT003", "lesion_mask"]).astype(bool)
    kept = reference.copy()
    kept[lesion_cut(reference):] = False
    tp, n_ref, n_pred = kept.sum(), reference.sum(), kept.sum()
    row = table.set_index("patient_id").loc["CT003"]
    assert row["dice"] == pytest.approx(2 * tp / (n_ref + n_pred))
    assert row["precision"] == pytest.approx(1.0)
    assert row["recall"] == pytest.approx(tp / n_ref)
    assert 0 < row["recall"] < 1
    assert (row["predicted_voxels"], row["reference_voxels"]) == (n_pred, n_ref)
    # masks in the CT's geometry, named by patient id, laid out like `osteomet ct segment predict`
    ct = sitk.ReadImage(str(cohort.parent / manifest.loc["CT004", "ct"]))
    mask_path = tmp_path / "run" / "nnunet" / "masks" / "CT004.nii.gz"
    mask = sitk.ReadImage(str(mask_path))
    assert mask.GetSize() == ct.GetSize() and mask.GetOrigin() == ct.GetOrigin()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), _array(cohort.parent / manifest.loc["CT004",
                                                                                                    "lesion_mask"]))
    on_disk = pd.read_csv(tmp_path / "run" / "nnunet" / "metrics.csv", dtype={"patient_id": str})
    assert list(on_disk["patient_id"]) == list(table["patient_id"])
    assert Path(on_disk.set_index("patient_id").loc["CT004", "mask"]) == mask_path
    with pytest.raises(FileExistsError, match="--overwrite"):
        import_predictions(predictions, layout.root, tmp_path / "run")


def test_imported_scores_compare_with_monai_models_patient_by_patient(exported, tmp_path: Path) -> None:
    """The import's metrics.csv goes straight into the MONAI comparison (same long format)."""
    from osteomet.ct.segmentation.compare import compare_segmentations, read_metrics

    layout, _ = exported
    predictions = tmp_path / "pred"
    for case in ("CT003", "CT004"):
        _fake_prediction(layout, case, predictions)
    import_predictions(predictions, layout.root, tmp_path / "run")
    monai = tmp_path / "monai.csv"
    pd.DataFrame({"patient_id": ["CT003", "CT004"], "split": ["val", "test"], "model": ["unet", "unet"],
                  "dice": [0.5, 0.7], "precision": [0.6, 0.8], "recall": [0.4, 0.6]}).to_csv(monai, index=False)
    table = read_metrics([tmp_path / "run" / "nnunet" / "metrics.csv", monai])
    results = compare_segmentations(table, tmp_path / "compare", split=None)
    pairwise = results["pairwise_dice"].iloc[0]
    assert (pairwise["model_a"], pairwise["model_b"], pairwise["n"]) == ("nnunet", "unet", 2)
    assert pairwise["mean_diff"] == pytest.approx(((1 - 0.5) + (1 - 0.7)) / 2)


def test_import_refuses_bad_predictions_naming_the_file(exported, tmp_path: Path) -> None:
    layout, _ = exported

    def shifted(label: sitk.Image) -> sitk.Image:
        label = sitk.Image(label)
        label.SetOrigin([o + 5.0 for o in label.GetOrigin()])
        return label

    path = _fake_prediction(layout, "CT004", tmp_path / "shifted", shifted)
    with pytest.raises(GeometryMismatchError, match=f"{path}.*origin"):
        import_predictions(path.parent, layout.root, tmp_path / "run1")
    assert not (tmp_path / "run1" / "nnunet" / "masks").exists()

    path = _fake_prediction(layout, "CT004", tmp_path / "labels", lambda im: im * 2)
    with pytest.raises(MaskError, match=f"{path}.*labels other than 0 and 1"):
        import_predictions(path.parent, layout.root, tmp_path / "run2")

    stray = _fake_prediction(layout, "CT004", tmp_path / "stray")
    shutil.copy(stray, stray.with_name("XYZ.nii.gz"))
    with pytest.raises(ValueError, match="XYZ.nii.gz.*not in the exported dataset"):
        import_predictions(stray.parent, layout.root, tmp_path / "run3")


def test_missing_nnunet_gives_the_install_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from osteomet.ct.nnunet import run

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nnunetv2" else real(name, *a))
    with pytest.raises(run.NnunetNotInstalledError, match="pip install --no-deps nnunetv2==2.8.1"):
        run.require_nnunetv2()


def test_training_refuses_a_fold_outside_the_patient_split(exported) -> None:
    from osteomet.ct.nnunet.run import check_fold

    layout, _ = exported
    check_fold(layout, 0)
    check_fold(layout, "all")
    with pytest.raises(ValueError, match="fold 1 is not in .*splits_final.json"):
        check_fold(layout, 1)


def test_cli_export_and_error(cohort: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["ct", "nnunet", "export", "-m", str(cohort), "-o", str(tmp_path / "nn"),
                                 "--dataset-id", "7", "--name", "Cli"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "nn" / "nnUNet_raw" / "Dataset007_Cli" / "dataset.json").is_file()
    result = runner.invoke(app, ["ct", "nnunet", "export", "-m", str(cohort), "-o", str(tmp_path / "nn"),
                                 "--dataset-id", "7", "--name", "Cli"])
    assert result.exit_code == 2
    assert "already exists" in result.output


@pytest.fixture(scope="module")
def nnunetv2_installed() -> None:
    from osteomet.ct.nnunet.run import require_nnunetv2

    require_nnunetv2()  # the nnU-Net extra is part of the test environment (scripts/setup.sh)


def test_nnunet_integrity_check_and_planning(exported, nnunetv2_installed) -> None:
    """nnU-Net's own verify_dataset_integrity, fingerprint, plan_experiments and preprocessing on the export."""
    from osteomet.ct.nnunet.run import plan_and_preprocess

    layout, _ = exported
    splits_before = layout.splits_file.read_text(encoding="utf-8")
    plans_path = plan_and_preprocess(layout, configurations=("3d_fullres",), num_processes=1)
    log = sorted((layout.root / "logs").glob("*plan_and_preprocess.log"))[-1].read_text(encoding="utf-8")
    assert "verify_dataset_integrity Done" in log
    plans = json.loads(plans_path.read_text(encoding="utf-8"))
    assert plans["dataset_name"] == "Dataset502_TestCT"
    config = plans["configurations"]["3d_fullres"]
    assert config["normalization_schemes"] == ["CTNormalization"]  # the "CT" channel name is honoured
    fingerprint = json.loads((layout.preprocessed / "dataset_fingerprint.json").read_text(encoding="utf-8"))
    assert len(fingerprint["spacings"]) == 3  # the three training patients, not the test patient
    spacing = sitk.ReadImage(str(layout.raw / "imagesTr" / "CT001_0000.nii.gz")).GetSpacing()
    assert sorted(config["spacing"]) == pytest.approx(sorted(spacing))
    preprocessed = layout.preprocessed / config["data_identifier"]
    assert sorted(p.stem for p in preprocessed.glob("*.pkl")) == ["CT001", "CT002", "CT003"]
    assert layout.splits_file.read_text(encoding="utf-8") == splits_before  # nnU-Net kept the patient split


def test_nnunet_integrity_check_catches_a_broken_dataset(exported, nnunetv2_installed, tmp_path: Path) -> None:
    from osteomet.ct.nnunet.run import NnunetRunError, plan_and_preprocess

    layout, _ = exported
    broken = NnunetLayout(tmp_path / "broken", layout.dataset_id, layout.dataset_name)
    shutil.copytree(layout.raw, broken.raw)
    label = broken.raw / "labelsTr" / "CT002.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(label)) * 2, str(label))  # label 2 is not in dataset.json
    with pytest.raises(NnunetRunError, match="(?s)nnUNetv2_plan_and_preprocess failed.*unexpected labels"):
        plan_and_preprocess(broken, preprocess=False)
    assert not (broken.preprocessed / "nnUNetPlans.json").exists()


def test_osteomet_and_nnunet_trainers_are_found_without_timm(nnunetv2_installed) -> None:
    """nnU-Net's stock trainer search imports Primus (timm); the child's lookup skips what cannot be imported."""
    from osteomet.ct.nnunet._child import find_trainer_class

    tiny = find_trainer_class("nnUNetTrainer_OsteometTiny")
    assert tiny.__name__ == "nnUNetTrainer_OsteometTiny"
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    assert issubclass(tiny, nnUNetTrainer)
    assert find_trainer_class("nnUNetTrainer_5epochs").__module__.endswith("nnUNetTrainer_Xepochs")


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), ("3", 3), (" 1 ", 1)])
def test_cpu_thread_setting_from_the_environment(monkeypatch, value, expected):
    from osteomet.ct.nnunet.trainers.osteomet_nnunet_trainers import THREADS_ENV, cpu_threads_from_env

    if value is None:
        monkeypatch.delenv(THREADS_ENV, raising=False)
    else:
        monkeypatch.setenv(THREADS_ENV, value)
    assert cpu_threads_from_env() == expected


@pytest.mark.parametrize("value", ["0", "-2", "x", "1.5"])
def test_bad_cpu_thread_setting_is_refused_by_name(monkeypatch, value):
    from osteomet.ct.nnunet.trainers.osteomet_nnunet_trainers import THREADS_ENV, cpu_threads_from_env

    monkeypatch.setenv(THREADS_ENV, value)
    with pytest.raises(ValueError, match=THREADS_ENV):
        cpu_threads_from_env()


def test_a_layout_may_keep_each_tree_in_another_folder(tmp_path: Path) -> None:
    """A study run keeps raw, preprocessed and results in the folders of the steps that write them."""
    layout = NnunetLayout(tmp_path / "nnunet", 501, "OsteometCT", raw_at=tmp_path / "export" / "nnUNet_raw",
                          preprocessed_at=tmp_path / "plan" / "nnUNet_preprocessed",
                          results_at=tmp_path / "train" / "nnUNet_results")
    assert layout.raw == tmp_path / "export" / "nnUNet_raw" / "Dataset501_OsteometCT"
    assert layout.splits_file == tmp_path / "plan" / "nnUNet_preprocessed" / "Dataset501_OsteometCT" / \
        "splits_final.json"
    assert layout.env() == {"nnUNet_raw": str((tmp_path / "export" / "nnUNet_raw").resolve()),
                            "nnUNet_preprocessed": str((tmp_path / "plan" / "nnUNet_preprocessed").resolve()),
                            "nnUNet_results": str((tmp_path / "train" / "nnUNet_results").resolve())}
    assert NnunetLayout(tmp_path, 501, "X").raw_root == tmp_path / "nnUNet_raw"  # the default: all under root


def test_trainer_and_planner_names_are_checked_without_importing_nnunet(nnunetv2_installed) -> None:
    from osteomet.ct.nnunet._child import find_trainer_class
    from osteomet.ct.nnunet.run import check_planner, check_trainer, planner_names, trainer_names

    names = trainer_names()
    assert {"nnUNetTrainer", "nnUNetTrainer_5epochs", "nnUNetTrainer_OsteometSmoke", "nnUNetTrainer_OsteometCPU"} <= names
    assert "_OsteometScheduleTrainer" not in names  # a base class, not a trainer to name
    for name in ("nnUNetTrainer_OsteometSmoke", "nnUNetTrainer_OsteometTiny"):  # what the child process will find
        check_trainer(name)
        assert find_trainer_class(name).__name__ == name
    with pytest.raises(ValueError, match="'nnUNetTrainer_Osteometsmoke' does not exist.*did you mean "
                                         "nnUNetTrainer_OsteometSmoke"):
        check_trainer("nnUNetTrainer_Osteometsmoke")
    assert {"ExperimentPlanner", "nnUNetPlannerResEncM"} <= planner_names()
    check_planner("nnUNetPlannerResEncL")
    with pytest.raises(ValueError, match="planner 'ResEncM' does not exist"):
        check_planner("ResEncM")


def test_import_into_a_stage_folder_writes_masks_and_metrics_there(cohort: Path, exported, tmp_path: Path) -> None:
    """The study's import stage: masks/ and metrics.csv in the given folder, no run marker written there."""
    from osteomet.ct.nnunet.importer import import_into
    from osteomet.layout import MARKER

    layout, _ = exported
    predictions = tmp_path / "pred"
    for case in ("CT001", "CT004"):
        _fake_prediction(layout, case, predictions)
    folder = tmp_path / "predictions" / "nnunet"
    table = import_into(predictions, layout, folder, manifest=cohort)
    assert sorted(p.name for p in (folder / "masks").iterdir()) == ["CT001.nii.gz", "CT004.nii.gz"]
    assert list(table["dice"]) == [1.0, 1.0] and list(table["split"]) == ["train", "test"]
    assert (folder / "metrics.csv").is_file() and not (folder / MARKER).exists() and not (folder.parent / MARKER).exists()
    _fake_prediction(layout, "CT004", predictions, lambda im: im * 0)  # a second import replaces the masks
    table = import_into(predictions, layout, folder, manifest=cohort)
    assert table.set_index("patient_id").loc["CT004", "predicted_voxels"] == 0
    assert not list(folder.glob(".masks*"))
