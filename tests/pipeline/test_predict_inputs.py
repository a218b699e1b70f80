"""`predict mri` refuses what a user gets wrong before any work, naming the file, option or patient.

The bundle here is a run directory with real XGBoost models (clinical, radiomics, fusion,
trained in seconds on small tables) and the records `predict` reads, not a whole study: every
fault below is refused when the bundle is opened or when the new patient is preprocessed,
before the UNETR or the 3D-ResNet would be needed (a full study costs over a minute).
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

from osteomet import __version__
from osteomet.cli.main import app
from osteomet.layout import FEATURES, METRICS, MODEL_DIR, SETTINGS, WINNER, XGBOOST_MODEL, RunLayout
from tests.data.volumes import mixed_series_folder, series_uid

runner = CliRunner()


def _features(n: int = 80, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A radiomics-like feature table: noise, two informative features."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    table = pd.DataFrame(rng.normal(size=(n, 12)), columns=[f"t2_original_glcm_F{i}" for i in range(12)])
    table["adc_original_firstorder_Mean"] = y * 1.5 + rng.normal(0, 1, n)
    table["t2_original_shape_Volume"] = y * 1.2 + rng.normal(0, 1, n)
    table.insert(0, "patient_id", [f"S{i:03d}" for i in range(n)])
    return table, y


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A run directory `predict mri` opens: the study's records and three real saved XGBoost models."""
    from osteomet.data.synth.clinical import sample_patients
    from osteomet.models.clinical import ClinicalModel
    from osteomet.models.fusion import FusionModel, fusion_inputs
    from osteomet.models.radiomics import RadiomicsModel
    from osteomet.models.selection import SelectionConfig
    from osteomet.models.xgb import XGBConfig
    from osteomet.pipeline.run_mri import RUN_FORMAT
    from osteomet.pipeline.study import StudyConfig

    run = tmp_path_factory.mktemp("bundle") / "run"
    layout = RunLayout(run)
    features, y = _features()
    clinical = sample_patients(len(y), seed=2).assign(patient_id=features["patient_id"], label=y)
    small = XGBConfig(n_estimators=20, max_depth=2)
    RadiomicsModel(SelectionConfig(max_features=4), small).fit(features.drop(columns="patient_id"), y).save(
        layout.model("radiomics") / MODEL_DIR)
    ClinicalModel(small).fit(clinical, y).save(layout.model("clinical") / MODEL_DIR)
    inputs = fusion_inputs(clinical, radiomics=features)
    FusionModel(selection=SelectionConfig(max_features=4), xgb=small).fit(inputs, y).save(
        layout.model("fusion") / MODEL_DIR)
    layout.radiomics.mkdir(parents=True)
    features.to_parquet(layout.radiomics / FEATURES, index=False)
    (layout.radiomics / SETTINGS).write_text("params: tiny\n")
    layout.deep_grid.mkdir(parents=True)
    (layout.deep_grid / WINNER).write_text("{}")
    layout.evaluation.mkdir(parents=True)
    pd.DataFrame({"model": ["fusion"], "threshold": [0.5]}).to_csv(layout.evaluation / METRICS, index=False)
    config = StudyConfig.model_validate({"segmentation": {"masks": "manifest"}})
    (run / "run.json").write_text(json.dumps({"format": RUN_FORMAT, "config": config.model_dump(mode="json"),
                                              "versions": {"osteomet": __version__}}))
    return run


@pytest.fixture
def copy_of(bundle: Path, tmp_path: Path):
    """A copy of the bundle a test may damage, as a user would by editing or cutting its files."""
    def make() -> Path:
        return Path(shutil.copytree(bundle, tmp_path / "run"))
    return make


@pytest.fixture(scope="module")
def patient(mri_cohort: Path) -> dict[str, Path]:
    """The first synthetic patient's files (T2, DWI, ADC, mask on the T2 grid)."""
    row = pd.read_csv(mri_cohort, dtype={"patient_id": str}).iloc[0]
    return {k: mri_cohort.parent / row[k] for k in ("t2", "dwi", "adc", "mask")}


def _predict(run: Path, out: Path, images: dict[str, Path], *extra: str):
    args = ["predict", "mri", "--model", str(run), "--t2", str(images["t2"]), "--dwi", str(images["dwi"]),
            "--adc", str(images["adc"]), "--id", "NEW1", "-o", str(out)]
    if images.get("mask"):
        args += ["--mask", str(images["mask"])]
    return runner.invoke(app, args + list(extra))


def _message(result) -> str:
    """The CLI's output on one line (the terminal wraps long messages)."""
    assert "Traceback" not in result.output, result.output
    return " ".join(result.output.split())


def test_the_intact_bundle_opens_with_its_models(bundle: Path):
    from osteomet.pipeline.predict_mri import MRIBundle

    opened = MRIBundle.open(bundle)
    assert set(opened.models) == {"clinical", "radiomics", "fusion"} and opened.threshold == 0.5


@pytest.mark.parametrize("name", ["radiomics", "clinical", "fusion"])
def test_a_truncated_model_file_is_refused_before_any_work(copy_of, patient, tmp_path: Path, name: str):
    run = copy_of()
    model = RunLayout(run).model(name) / MODEL_DIR / XGBOOST_MODEL
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # an interrupted copy
    out = tmp_path / "pred"
    result = _predict(run, out, patient)
    text = _message(result)
    assert result.exit_code == 2, result.output
    assert str(model) in text and "XGBoost cannot read it" in text
    assert "restore it" in text and "osteomet run mri" in text
    assert not out.exists()  # refused when the bundle was opened: nothing of the patient's was started


def test_a_damaged_feature_list_is_refused_naming_the_file(copy_of, patient, tmp_path: Path):
    run = copy_of()
    meta = RunLayout(run).model("radiomics") / MODEL_DIR / "radiomics_model.json"
    meta.write_text(meta.read_text(encoding="utf-8")[:-40])  # cut short
    result = _predict(run, tmp_path / "pred", patient)
    assert result.exit_code == 2, result.output
    assert str(meta) in _message(result) and "not valid JSON" in _message(result)
    shutil.rmtree(run)
    run = copy_of()
    meta = RunLayout(run).model("clinical") / MODEL_DIR / "clinical_model.json"
    record = json.loads(meta.read_text(encoding="utf-8"))
    del record["features"]  # an edit that leaves valid JSON
    meta.write_text(json.dumps(record))
    result = _predict(run, tmp_path / "pred", patient)
    assert result.exit_code == 2, result.output
    assert str(meta) in _message(result) and "no entry 'features'" in _message(result)


def test_a_renamed_feature_in_the_bundle_names_the_feature_list_and_both_names(copy_of, patient, tmp_path: Path):
    run = copy_of()
    meta = RunLayout(run).model("radiomics") / MODEL_DIR / "radiomics_model.json"
    record = json.loads(meta.read_text(encoding="utf-8"))
    chosen = record["selector"]["selected"][0]
    record["selector"]["selected"][0] = chosen + "_v2"  # edited by hand
    meta.write_text(json.dumps(record))
    result = _predict(run, tmp_path / "pred", patient)
    text = _message(result)
    assert result.exit_code == 2, result.output
    assert str(meta) in text and f"'{chosen}_v2'" in text and f"closest name in the table: '{chosen}'" in text
    assert not (tmp_path / "pred").exists()


def test_a_feature_list_that_no_longer_matches_its_xgboost_file_is_refused(copy_of, patient, tmp_path: Path):
    run = copy_of()
    meta = RunLayout(run).model("fusion") / MODEL_DIR / "fusion_model.json"
    record = json.loads(meta.read_text(encoding="utf-8"))
    record["columns"] = record["columns"][:-1]  # one feature deleted from the list
    meta.write_text(json.dumps(record))
    result = _predict(run, tmp_path / "pred", patient)
    text = _message(result)
    assert result.exit_code == 2 and str(meta) in text and "do not belong together" in text


@pytest.mark.parametrize("given, expected", [
    ("psa=-5", "--clinical psa=-5: outside the range the study's manifests allow (allowed: psa >= 0 and psa <= 100000)"),
    ("age=71,gleason=11", "--clinical gleason=11: outside the range the study's manifests allow (allowed: gleason >= 6 "
                          "and gleason <= 10 (a whole number))"),
    ("age=nan", "--clinical age=nan: not a finite number; leave age out when it is unknown"),
    ("hematuria=2", "--clinical hematuria=2: 2.0 is not yes/no or 1/0 (allowed: 0 or 1)"),
    ("gleason=7,isup=5", "--clinical gleason=7,isup=5: Gleason 7 is inconsistent with ISUP 5"),
])
def test_clinical_values_out_of_the_manifest_rules_name_the_option(bundle, patient, tmp_path: Path, given, expected):
    out = tmp_path / "pred"
    result = _predict(bundle, out, patient, "--clinical", given)
    text = _message(result)
    assert result.exit_code == 2 and expected in text, result.output
    assert "manifest.csv" not in text and not out.exists()


def test_a_folder_of_several_dicom_series_names_them_and_the_option(bundle, prostatex: Path, tmp_path: Path):
    case = prostatex / "ProstateX-0000"
    mixed = mixed_series_folder(case, tmp_path / "mixed")  # two series exported into one folder
    t2_uid, adc_uid = series_uid(case / "t2w"), series_uid(case / "adc")
    images = {"t2": mixed, "dwi": case / "hbv", "adc": case / "adc"}
    result = _predict(bundle, tmp_path / "pred", images)
    text = _message(result)
    assert result.exit_code == 2, result.output
    assert t2_uid in text and adc_uid in text and "19 files" in text and "--t2-series" in text
    assert not (tmp_path / "pred").exists()
    wrong = _predict(bundle, tmp_path / "pred", images, "--t2-series", "1.2.3.4")
    assert wrong.exit_code == 2 and "--t2-series 1.2.3.4: no such series" in _message(wrong)
    volume = tmp_path / "dwi.nii.gz"
    sitk.WriteImage(sitk.Image([8, 8, 8], sitk.sitkFloat32), str(volume))
    on_file = _predict(bundle, tmp_path / "pred", {**images, "dwi": volume}, "--t2-series", t2_uid, "--dwi-series",
                       t2_uid)
    assert on_file.exit_code == 2 and f"--dwi-series {t2_uid}: --dwi {volume} is not a DICOM folder" in _message(on_file)


def test_the_chosen_series_reaches_the_preprocessing(prostatex: Path, tmp_path: Path):
    """``--t2-series`` is written into the patient's manifest, and preprocessing reads that series."""
    from osteomet.pipeline.predict_mri import _new_manifest, check_images
    from osteomet.pipeline.preprocess import preprocess_mri

    case = prostatex / "ProstateX-0000"
    mixed = mixed_series_folder(case, tmp_path / "mixed")
    images = {"t2": mixed, "dwi": case / "hbv", "adc": case / "adc"}
    series = {"t2": series_uid(case / "t2w")}
    check_images(images, series)
    manifest = _new_manifest(tmp_path, "PX", images, None, {}, None, series)
    _, index = preprocess_mri(manifest, tmp_path / "preprocess")
    assert index["status"].tolist() == ["processed"], index["error"].tolist()
    transform = json.loads((tmp_path / "preprocess" / "cases" / "PX" / "transform.json").read_text(encoding="utf-8"))
    assert transform["t2_geometry"]["size"] == [384, 384, 19]  # the T2, not the ADC (84 x 128)


def test_a_mask_on_another_grid_is_named_as_such(bundle, patient, tmp_path: Path):
    mask = sitk.ReadImage(str(patient["mask"]))
    coarse = mask.GetSpacing()[0] * 2
    grid = sitk.Image([s // 2 for s in mask.GetSize()[:2]] + [mask.GetSize()[2]], sitk.sitkUInt8)
    grid.SetSpacing((coarse, coarse, mask.GetSpacing()[2]))
    grid.SetOrigin(mask.GetOrigin())
    grid.SetDirection(mask.GetDirection())
    other = sitk.Resample(mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)  # exported from the DWI, say
    assert sitk.GetArrayViewFromImage(other).any()
    path = tmp_path / "mask_other_grid.nii.gz"
    sitk.WriteImage(other, str(path))
    result = _predict(bundle, tmp_path / "pred", {**patient, "mask": path})
    text = _message(result)
    assert result.exit_code == 2, result.output
    assert "not on the grid of" in text and "size" in text and "mask_other_grid.nii.gz" in text
    assert "resample it onto the T2 grid" in text and "annotation tool" in text
    assert "mask is empty" not in text


@pytest.mark.parametrize("fault", ["nan", "4d"])
def test_a_broken_t2_reports_its_preprocessing_error_not_a_cache_symptom(bundle, patient, tmp_path: Path, fault):
    t2 = sitk.Cast(sitk.ReadImage(str(patient["t2"])), sitk.sitkFloat32)
    if fault == "nan":
        t2[3, 4, 5] = float("nan")
        expected = "1 voxels are NaN or infinite"
    else:
        t2 = sitk.JoinSeries([t2, t2])
        expected = "expected a 3D volume, got 4D"
    path = tmp_path / "t2.nii.gz"
    sitk.WriteImage(t2, str(path))
    result = _predict(bundle, tmp_path / "pred", {**patient, "t2": path})
    text = _message(result)
    assert result.exit_code == 2, result.output
    assert "NEW1: the images could not be preprocessed" in text and expected in text and str(path) in text
    assert "not in the cache" not in text and "transform.json" not in text
