"""`run mri` and `predict mri` end to end on a small synthetic two-centre cohort with tiny models."""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import pydicom
import pytest
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.errors import InputError, LeakageError, MissingInputError
from osteomet.layout import RunLayout
from tests.pipeline.studies import study_file

runner = CliRunner()

@pytest.fixture(scope="module")
def cohort(unsplit_cohort: Path) -> Path:
    return unsplit_cohort  # the session's cohort (tests/pipeline/conftest.py)


@pytest.fixture(scope="module")
def study(shared_study: tuple[Path, dict]) -> tuple[Path, dict]:
    return shared_study  # the session's study; tests that change its settings set them back


def test_run_writes_every_stage_and_evaluates_every_model_on_every_cohort(study):
    run, record = study
    layout = RunLayout(run)
    manifest = pd.read_csv(layout.manifest)
    assert set(manifest["split"]) == {"train", "val", "test", "external"}
    assert (manifest.loc[manifest["centre"] == "C2", "split"] == "external").all()
    metrics = record["metrics"]
    auc = metrics[(metrics["metric"] == "auc") & (metrics["ci_method"] == "delong")]
    for model in ("clinical", "radiomics", "deep", "fusion"):
        table = pd.read_csv(layout.model(model) / "predictions.csv")
        assert list(table.columns) == ["patient_id", "split", "label", "model", "prob"]
        scored = table["prob"].dropna()
        assert scored.between(0, 1).all() and len(scored) >= 0.8 * len(table)  # a 2-epoch UNETR misses a few
        assert set(auc.loc[auc["model"] == model, "cohort"]) >= {"test", "external"}
    for name in ("metrics.csv", "delong.csv", "calibration.csv", "cohort_characteristics.csv", "roc_external.png",
                 "calibration_external.png", "decision_curve_external.png"):
        assert (layout.evaluation / name).is_file(), name
    assert (layout.deep_grid / "heatmap.png").is_file() and (layout.deep_gradcam / "gradcam.csv").is_file()
    assert len(list((layout.masks / "auto").glob("*.nii.gz"))) == len(manifest)
    saved = json.loads(layout.run_record.read_text(encoding="utf-8"))
    assert saved["format"] == "osteomet.mri_run/1" and saved["versions"]["osteomet"]
    from osteomet.utils.precision import resolve_precision

    # the grid's arithmetic as this host resolves its setting, and each configuration the same
    assert saved["precision"]["precision"] == resolve_precision(saved["precision"]["deep"], "cpu")["precision"]
    for config in (layout.deep_grid / "configs").iterdir():
        assert json.loads((config / "run.json").read_text(encoding="utf-8"))["precision"] == \
            saved["precision"]["precision"]
    assert set(saved["stages"]) >= {"split", "preprocess", "segmentation train", "deep grid", "feature stability",
                                    "model features", "fusion model", "evaluation", "mask qc", "patient flow"}
    # on_flagged: manifest (the test config): what the 2-epoch UNETR got wrong uses the manifest's mask, nobody is lost
    qc = pd.read_csv(layout.mask_qc / "qc.csv", dtype={"patient_id": str})
    assert (qc.loc[qc["flagged"], "action"] == "manifest").all() and (qc.loc[~qc["flagged"], "action"] == "use").all()
    from osteomet.data.manifest import read_manifest
    from osteomet.data.masks import mask_sources

    sources = mask_sources(read_manifest(layout.cohort / "manifest.csv"), layout.masks).set_index("patient_id")
    assert (sources.loc[qc.loc[qc["flagged"], "patient_id"], "source"] == "manifest").all()
    assert saved["patient_flow"]["excluded"] == 0 and saved["patient_flow"]["manifest"] == len(manifest)
    for split in ("test", "external"):  # every model on the same patients, the DeLong tests too
        n = auc.loc[auc["cohort"] == split, "n"]
        assert n.nunique() == 1, (split, n.tolist())
        delong = pd.read_csv(layout.evaluation / "delong.csv")
        assert (delong.loc[delong["split"] == split, "n"] == int(n.iloc[0])).all()


def test_training_predictions_are_cross_fitted(study):
    """The deep model's training rows come from fold models, not from the winner that saw them."""
    run, _ = study
    layout = RunLayout(run)
    stage = json.loads((layout.model("deep") / "stage.json").read_text(encoding="utf-8"))
    assert stage["summary"]["training_predictions"] == "out-of-fold"
    assert len(list((layout.model("deep") / "folds").glob("fold_*/checkpoints/best.pt"))) == 2


def test_rerun_skips_every_stage_and_a_changed_setting_reruns_only_what_follows(study, cohort):
    """The patient flow and the evaluation read the prediction tables by content: they rerun when a model's table
    changed, not when a model was merely refitted to the same predictions."""
    from osteomet.pipeline.run_mri import run_mri
    from osteomet.pipeline.study import load_study_config

    run, _ = study
    tables = [RunLayout(run).model(m) / "predictions.csv" for m in ("clinical", "radiomics", "deep", "fusion")]

    def rerun_with(settings) -> set[str]:
        before = [t.read_bytes() for t in tables]
        record = run_mri(cohort, run, settings, log=lambda _line: None)
        changed = any(t.read_bytes() != b for t, b in zip(tables, before))
        rerun = {name for name, stage in record["stages"].items() if not stage["skipped"]}
        readers = {"patient flow", "evaluation", "conformal", "applicability"}  # they read the tables by contents
        assert rerun & readers == (readers if changed else set()), (rerun, changed)
        return rerun - readers

    config = load_study_config(study_file(run.parent / "config"))
    assert rerun_with(config) == set()
    changed = config.model_copy(update={"fusion": config.fusion.model_copy(update={"mode": "probabilities"})})
    assert rerun_with(changed) == {"fusion model", "explanations"}
    fewer = changed.model_copy(update={"explanations": config.explanations.model_copy(update={"top_k": 2})})
    assert rerun_with(fewer) == {"explanations"}
    grid = config.tuning.model_copy(update={"grid": {"max_depth": [2], "n_estimators": [30, 60]}})
    assert rerun_with(fewer.model_copy(update={"tuning": grid})) == {"clinical model", "radiomics model",
                                                                     "fusion model", "explanations"}
    # the harmonization switch reruns the model-feature table, the models it feeds and what reads them,
    # never an extraction
    tuned = fewer.model_copy(update={"tuning": grid})
    off = tuned.model_copy(update={"harmonization": config.harmonization.model_copy(update={"enabled": False})})
    assert rerun_with(off) == {"model features", "radiomics model", "fusion model", "explanations"}
    assert not (RunLayout(run).model_features / "combat.json").exists()
    run_mri(cohort, run, config, log=lambda _line: None)  # back to the module's study for the other tests


def _osteomet(*args: str) -> list[str]:
    return [sys.executable, "-m", "osteomet", *args]


def _interrupt_when(command: list[str], sign: int, appears: Callable[[], bool], log: Path,
                    timeout: float = 600) -> None:
    """Start ``command`` and send it ``sign`` as soon as ``appears()`` (a file of the stage to cut into) holds.

    Output goes to ``log`` (a pipe nobody reads would fill and stall the run); SIGINT is set back to its
    default in the child, as in a terminal's foreground job (a background shell starts jobs with it ignored).
    """
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + timeout
        while not appears():
            assert process.poll() is None, f"the run ended before the interruption point: {log.read_text(encoding='utf-8')}"
            assert time.monotonic() < deadline, "the interruption point was never reached"
            time.sleep(0.02)
        process.send_signal(sign)
        process.wait(timeout=120)
    said = log.read_text(encoding="utf-8", errors="replace")
    if sign == signal.SIGINT:
        assert process.returncode == 130 and "rerun the same command to continue" in said, said
        assert "Traceback" not in said, said
    else:
        assert process.returncode == -signal.SIGKILL


def test_an_interrupted_run_continues_to_the_outputs_of_an_uninterrupted_one_and_moves_freely(study, cohort, tmp_path):
    """Ctrl-C in the UNETR training, SIGKILL in the grid and in the cross-fitted folds: each time the same
    command continues, and the end is the module's uninterrupted study. A copied (new modification times)
    and a moved run directory are up to date."""
    reference, _ = study
    config = study_file(tmp_path / "config")
    run = tmp_path / "run"
    command = _osteomet("run", "mri", "-m", str(cohort), "-o", str(run), "--config", str(config))
    layout = RunLayout(run)
    log = tmp_path / "run.log"
    _interrupt_when(command, signal.SIGINT, lambda: (layout.segmentation_model / "checkpoints" / "last.pt").is_file(),
                    log)
    _interrupt_when(command, signal.SIGKILL, lambda: any(layout.deep_grid.glob("configs/*/checkpoints/last.pt")), log)
    _interrupt_when(command, signal.SIGKILL,
                    lambda: any(layout.model("deep").glob("folds/fold_*/checkpoints/last.pt")), log)
    done = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", errors="replace")
    assert done.returncode == 0, done.stderr
    assert "deep predictions: done (continued after an interruption)" in done.stderr
    for model in ("clinical", "radiomics", "deep", "fusion"):
        mine = pd.read_csv(layout.model(model) / "predictions.csv", dtype={"patient_id": str})
        theirs = pd.read_csv(RunLayout(reference).model(model) / "predictions.csv", dtype={"patient_id": str})
        pd.testing.assert_frame_equal(mine, theirs, check_exact=False, atol=1e-6, obj=model)
    history = pd.read_csv(layout.segmentation_model / "history.csv")
    assert history["epoch"].tolist() == list(range(len(history)))  # resumed, not restarted or repeated

    copied = tmp_path / "copied"
    shutil.copytree(run, copied, copy_function=shutil.copy)  # contents only: every modification time is new
    moved = tmp_path / "moved"
    run.rename(moved)
    from osteomet.pipeline.run_mri import run_mri
    from osteomet.pipeline.study import load_study_config

    for folder in (copied, moved):
        lines: list[str] = []
        again = run_mri(cohort, folder, load_study_config(config), log=lines.append)
        assert all(stage["skipped"] for stage in again["stages"].values()), lines
        assert lines and all("up to date" in line for line in lines), lines
    # the moved study still predicts (its bundle names nothing by the old location), as the study scored
    from osteomet.pipeline.predict_mri import predict_mri

    manifest = pd.read_csv(RunLayout(moved).manifest, dtype={"patient_id": str})
    row = manifest[manifest["split"] == "external"].iloc[0]
    result = predict_mri(moved, tmp_path / "pred", t2=row["t2"], dwi=row["dwi"], adc=row["adc"],
                         patient_id=row["patient_id"], centre=row["centre"], log=lambda _line: None)
    table = pd.read_csv(RunLayout(moved).model("radiomics") / "predictions.csv", dtype={"patient_id": str})
    expected = float(table.loc[table["patient_id"] == row["patient_id"], "prob"].iloc[0])
    assert result["models"]["radiomics"] == pytest.approx(expected, abs=1e-6)


def test_models_are_tuned_inside_the_training_cohort_and_explained(study):
    run, _ = study
    layout = RunLayout(run)
    manifest = pd.read_csv(layout.manifest, dtype={"patient_id": str})
    n_train = int((manifest["split"] == "train").sum())
    for model, meta in (("clinical", "clinical_model.json"), ("radiomics", "radiomics_model.json"),
                        ("fusion", "fusion_model.json")):
        folder = layout.model(model)
        tuning = json.loads((folder / "model" / meta).read_text(encoding="utf-8"))["tuning"]
        assert set(tuning["chosen"]) == {"max_depth", "n_estimators"} and tuning["folds"] == 2, model
        assert tuning["n"] <= n_train  # training patients only (those with the model's inputs)
        table = pd.read_csv(folder / "tuning.csv")
        assert len(table) == 4 and table["chosen"].sum() == 1
        outer = pd.read_csv(folder / "tuning_out_of_fold.csv")  # one choice per nested outer fold
        assert 2 <= len(outer) <= 5 and (outer["n"] < tuning["n"]).all()
        importance = pd.read_csv(layout.explanations / f"{model}_shap_importance.csv")
        values = pd.read_csv(layout.explanations / f"{model}_shap_values.csv", dtype={"patient_id": str})
        assert set(values["patient_id"]) <= set(manifest.loc[manifest["split"] == "train", "patient_id"])
        assert importance["mean_abs_shap"].to_numpy() == pytest.approx(
            values.drop(columns="patient_id").abs().mean()[importance["feature"]].to_numpy())
        assert (layout.explanations / f"{model}_shap_summary.png").stat().st_size > 5_000


def test_predict_reproduces_the_study_probability_of_a_held_out_patient(study, tmp_path):
    from osteomet.pipeline.predict_mri import predict_mri

    run, _ = study
    layout = RunLayout(run)
    manifest = pd.read_csv(layout.manifest, dtype={"patient_id": str})
    row = manifest[manifest["split"] == "external"].iloc[0]
    base = layout.manifest.parent
    clinical = {k: float(row[k]) for k in ("age", "psa", "gleason", "isup", "hematuria", "leukocyturia")
                if pd.notna(row[k])}
    result = predict_mri(run, tmp_path / "pred", t2=base / row["t2"], dwi=base / row["dwi"], adc=base / row["adc"],
                         clinical=clinical, patient_id=row["patient_id"], centre=row["centre"], log=lambda _line: None)
    assert result["harmonization"] == "ComBat: C2 mapped onto the reference centre C1"
    for model in ("clinical", "radiomics", "deep", "fusion"):
        table = pd.read_csv(layout.model(model) / "predictions.csv", dtype={"patient_id": str})
        expected = float(table.loc[table["patient_id"] == row["patient_id"], "prob"].iloc[0])
        assert result["models"][model] == pytest.approx(expected, abs=1e-6), model
    assert result["decision"] in ("bone metastasis", "no bone metastasis")
    assert Path(result["files"]["mask"]).is_file() and Path(result["files"]["gradcam_png"]).is_file()
    assert (tmp_path / "pred" / "result.md").read_text(encoding="utf-8").count(row["patient_id"]) >= 1
    for model in ("clinical", "radiomics", "fusion"):
        explained = result["explanations"][model]
        assert 1 <= len(explained["top"]) <= 4
        assert 1 / (1 + math.exp(-explained["margin"])) == pytest.approx(result["models"][model], abs=1e-5)
    assert Path(result["files"]["explanations_png"]).stat().st_size > 5_000
    assert "Largest contributions" in (tmp_path / "pred" / "result.md").read_text(encoding="utf-8")


def test_rigour_stages_filter_unstable_features_and_map_the_external_centre_onto_training(study, tmp_path):
    from osteomet.pipeline.rigour import model_features
    from osteomet.radiomics.harmonize import ComBat

    run, _ = study
    layout = RunLayout(run)
    manifest = pd.read_csv(layout.manifest, dtype={"patient_id": str}).set_index("patient_id")
    icc = pd.read_csv(layout.stability / "icc.csv")
    by_class = pd.read_csv(layout.stability / "icc_by_class.csv")
    assert {"icc_erode", "icc_dilate"} <= set(icc.columns) and by_class["class"].iloc[-1] == "all"
    assert (layout.stability / "icc_by_class.png").is_file()
    assert icc["n"].max() <= (manifest["split"] == "train").sum()  # training patients only
    raw = pd.read_parquet(layout.radiomics / "features.parquet").set_index("patient_id")
    used = pd.read_parquet(layout.model_features / "features.parquet").set_index("patient_id")
    kept = set(icc.loc[icc["icc"] >= 0.75, "feature"])
    assert set(used.columns) - {"error"} == kept and 0 < len(kept) < len(icc)
    combat = ComBat.load(layout.model_features / "combat.json")
    assert combat.reference == "C1" and combat.centres == ["C1", "C2"]
    internal = manifest.index[manifest["centre"] == "C1"]
    pd.testing.assert_frame_equal(used.loc[internal], raw.loc[internal, used.columns])  # C1 as extracted
    external = manifest.index[manifest["centre"] == "C2"]
    moved = combat.features[0]
    assert not used.loc[external, moved].equals(raw.loc[external, moved])
    # label-free: the same stage on the manifest with every label shuffled gives the same table and fit
    shuffled = pd.read_csv(layout.manifest)
    shuffled["label"] = shuffled["label"].sample(frac=1.0, random_state=1).to_numpy()
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False)
    model_features(tmp_path / "shuffled.csv", layout.radiomics / "features.parquet", tmp_path / "mf",
                   stability=layout.stability / "icc.csv", deep=layout.deep_features / "features.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "mf" / "features.parquet").set_index("patient_id"), used)
    assert (tmp_path / "mf" / "combat.json").read_text(encoding='utf-8') == (layout.model_features / "combat.json").read_text(encoding='utf-8')
    # deep features (harmonization.deep_features): the same rule, C1 rows as the network wrote them
    deep_raw = pd.read_parquet(layout.deep_features / "features.parquet").set_index("patient_id")
    deep_used = pd.read_parquet(tmp_path / "mf" / "deep_features.parquet").set_index("patient_id")
    c1 = deep_raw.index.intersection(internal)
    pd.testing.assert_frame_equal(deep_used.loc[c1], deep_raw.loc[c1])
    assert ComBat.load(tmp_path / "mf" / "combat_deep.json").reference == "C1"


def test_predict_names_the_patient_and_mask_when_radiomics_fails_on_it(study, tmp_path):
    """A mask of a few voxels (what UNETR gives for a missed tumour) is refused with pyradiomics' reason."""
    import SimpleITK as sitk

    from osteomet.errors import InputError
    from osteomet.pipeline.predict_mri import predict_mri

    run, _ = study
    layout = RunLayout(run)
    row = pd.read_csv(layout.manifest, dtype={"patient_id": str}).iloc[0]
    base = layout.manifest.parent
    t2 = sitk.ReadImage(str(base / row["t2"]))
    tiny = sitk.Image(t2.GetSize(), sitk.sitkUInt8)
    tiny.CopyInformation(t2)
    centre = [n // 2 for n in t2.GetSize()]
    for dx in range(2):  # a 2 x 2 square: below pyradiomics' minimum ROI size of 5 voxels
        for dy in range(2):
            tiny[centre[0] + dx, centre[1] + dy, centre[2]] = 1
    mask = tmp_path / "tiny_mask.nii.gz"
    sitk.WriteImage(tiny, str(mask))
    with pytest.raises(InputError, match=r"P1: radiomics could not be extracted from the mask .*tiny_mask\.nii\.gz: "
                                         r".*ROI is too small.*--mask"):
        predict_mri(run, tmp_path / "pred", t2=base / row["t2"], dwi=base / row["dwi"], adc=base / row["adc"],
                    mask=mask, patient_id="P1", centre=row["centre"], log=lambda _line: None)


def test_predict_refuses_a_centre_the_study_never_saw(study, tmp_path):
    from osteomet.pipeline.predict_mri import predict_mri
    from osteomet.radiomics.harmonize import UnknownCentreError

    run, _ = study
    row = pd.read_csv(RunLayout(run).manifest, dtype={"patient_id": str}).iloc[0]
    base = RunLayout(run).manifest.parent
    with pytest.raises(UnknownCentreError, match="--centre C9: the study harmonized centres C1, C2"):
        predict_mri(run, tmp_path / "pred", t2=base / row["t2"], dwi=base / row["dwi"], adc=base / row["adc"],
                    centre="C9", log=lambda _line: None)


def test_predict_runs_on_real_prostatex_dicom_and_reports_missing_clinical_values(study, prostatex, tmp_path):
    run, _ = study
    case = prostatex / "ProstateX-0000"
    out = tmp_path / "px"
    result = runner.invoke(app, ["predict", "mri", "--model", str(run), "--t2", str(case / "t2w"), "--dwi",
                                 str(case / "hbv"), "--adc", str(case / "adc"), "--clinical", "age=66,psa=12.1",
                                 "--id", "PX0000", "-o", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert 0.0 <= saved["probability"] <= 1.0
    assert saved["missing_clinical"] == ["gleason", "isup", "hematuria", "leukocyturia"]
    import highdicom as hd  # the tumour mask as a DICOM SEG on the T2 series, for a PACS viewer

    seg = hd.seg.segread(saved["files"]["dicom_seg"])
    t2_uid = pydicom.dcmread(next((case / "t2w").iterdir())).SeriesInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == t2_uid
    assert "missing clinical values" in result.output and "largest contributions (fusion" in result.output


def test_predict_refuses_a_bundle_of_another_version_and_an_unfinished_run(study, tmp_path):
    from osteomet.pipeline.predict_mri import MRIBundle

    run, _ = study
    copy = tmp_path / "old"
    copy.mkdir()
    record = json.loads(RunLayout(run).run_record.read_text(encoding="utf-8"))
    record["versions"]["osteomet"] = "9.0.0"
    (copy / "run.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match="trained with osteomet 9.0.0"):
        MRIBundle.open(copy)
    with pytest.raises(MissingInputError, match="no run.json"):
        MRIBundle.open(tmp_path)


def test_predict_refuses_unknown_clinical_variables():
    from osteomet.pipeline.predict_mri import parse_clinical

    assert parse_clinical("age=71, PSA=40") == {"age": 71.0, "psa": 40.0}
    with pytest.raises(InputError, match="unknown variable 'weight'"):
        parse_clinical("age=71,weight=80")
    with pytest.raises(InputError, match="not a number"):
        parse_clinical("psa=high")


def test_study_split_refuses_a_planted_leak(cohort, tmp_path):
    """The same image under two patient ids (one per cohort) stops the study before any training."""
    from osteomet.pipeline.run_mri import study_manifest
    from osteomet.pipeline.study import load_study_config

    frame = pd.read_csv(cohort)
    frame.loc[1, ["t2", "dwi", "adc", "mask"]] = frame.loc[0, ["t2", "dwi", "adc", "mask"]].to_numpy()
    frame["split"] = ["train", "test"] + ["train"] * (len(frame) - 2)
    leaky = cohort.parent / "leaky.csv"
    frame.to_csv(leaky, index=False)
    with pytest.raises(LeakageError):
        study_manifest(leaky, tmp_path / "split", load_study_config("tiny"))
    assert not (tmp_path / "split").exists()


def test_run_mri_cli_reports_bad_input_with_exit_code_2(tmp_path):
    bad = tmp_path / "study.yaml"
    bad.write_text("deep: {oof_folds: -1}\n")
    result = runner.invoke(app, ["run", "mri", "-m", str(tmp_path / "none.csv"), "-o", str(tmp_path / "run"),
                                 "--config", str(bad)])
    assert result.exit_code == 2 and "oof_folds" in result.output
    shutil.rmtree(tmp_path / "run", ignore_errors=True)


def test_study_manifest_from_a_relative_path_points_at_the_images(cohort, tmp_path, monkeypatch):
    """`osteomet demo` and `run mri -m cohort/manifest.csv -o RUN` run from the folder that holds them."""
    from osteomet.data.manifest import read_manifest
    from osteomet.data.splits import split_manifest
    from osteomet.pipeline.run_mri import study_manifest
    from osteomet.pipeline.study import load_study_config

    monkeypatch.chdir(cohort.parent.parent)
    relative = Path(cohort.parent.name) / cohort.name
    study_manifest(relative, tmp_path / "split", load_study_config("tiny"))
    assert len(read_manifest(tmp_path / "split" / "manifest.csv", check_files=True)) == 36
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    split_manifest(Path("..") / tmp_path.name / "split" / "manifest.csv", Path("work") / "again.csv", replace=True)
    assert len(read_manifest(tmp_path / "work" / "again.csv", check_files=True)) == 36


def test_a_tuning_grid_naming_an_unknown_setting_is_refused_before_any_stage(tmp_path):
    bad = tmp_path / "study.yaml"
    bad.write_text("tuning: {grid: {depth: [2, 3]}}\n")
    result = runner.invoke(app, ["run", "mri", "-m", str(tmp_path / "none.csv"), "-o", str(tmp_path / "run"),
                                 "--config", str(bad)])
    assert result.exit_code == 2 and "unknown XGBoost setting" in result.output
    assert not (tmp_path / "run" / "split").exists()


def _planted_copy(study_run: Path, tmp_path: Path, name: str) -> tuple[Path, pd.DataFrame, dict[str, str]]:
    """A copy of the finished study whose automatic masks are the true ones (a good UNETR), except three planted
    faults a network really produces: an empty mask, one voxel, a blob outside the gland region."""
    import numpy as np
    import SimpleITK as sitk

    copy = tmp_path / name
    shutil.copytree(study_run, copy)
    layout = RunLayout(copy)
    manifest = pd.read_csv(layout.manifest, dtype={"patient_id": str})
    auto = layout.masks / "auto"
    for row in manifest.itertuples():
        truth = sitk.ReadImage(str(row.mask))
        sitk.WriteImage(sitk.Cast(truth > 0, sitk.sitkUInt8), str(auto / f"{row.patient_id}.nii.gz"))
    test = manifest[manifest["split"] == "test"]["patient_id"].tolist()
    external = manifest[manifest["split"] == "external"]["patient_id"].tolist()
    planted = {test[0]: "empty", external[0]: "one voxel", test[1]: "outside"}
    for pid, fault in planted.items():
        path = auto / f"{pid}.nii.gz"
        image = sitk.ReadImage(str(path))
        array = np.zeros_like(sitk.GetArrayFromImage(image))
        z, y, x = (n // 2 for n in array.shape)
        if fault == "one voxel":
            array[z, y, x] = 1
        elif fault == "outside":
            array[z - 1:z + 2, y - 4:y + 4, 2:10] = 1  # at the left edge of the field of view
        planted_image = sitk.GetImageFromArray(array)
        planted_image.CopyInformation(image)
        sitk.WriteImage(planted_image, str(path))
    return copy, manifest, planted


def test_flagged_automatic_masks_are_excluded_from_every_model_and_counted_everywhere(study, cohort, tmp_path):
    from osteomet.pipeline.run_mri import run_mri
    from osteomet.pipeline.study import load_study_config
    from osteomet.report import build_report

    run, _ = study
    copy, manifest, planted = _planted_copy(run, tmp_path, "excluding")
    config = load_study_config(study_file(tmp_path / "config", segmentation={"on_flagged": "exclude"}))
    lines: list[str] = []
    record = run_mri(cohort, copy, config, log=lines.append)
    layout = RunLayout(copy)
    qc = pd.read_csv(layout.mask_qc / "qc.csv", dtype={"patient_id": str}).set_index("patient_id")
    assert set(qc.index[qc["flagged"]]) == set(planted)
    assert qc.loc[[p for p, f in planted.items() if f == "empty"][0], "reasons"].startswith("empty")
    assert "below the 0.1 mL minimum" in qc.loc[[p for p, f in planted.items() if f == "one voxel"][0], "reasons"]
    assert "outside the gland region" in qc.loc[[p for p, f in planted.items() if f == "outside"][0], "reasons"]
    assert any(line.startswith("mask qc: 3 automatic mask(s) flagged (3 exclude)") for line in lines), lines
    exclusions = pd.read_csv(layout.cohort / "exclusions.csv", dtype={"patient_id": str})
    assert set(exclusions["patient_id"]) == set(planted) and (exclusions["stage"] == "mask qc").all()
    kept = pd.read_csv(layout.cohort / "manifest.csv", dtype={"patient_id": str})
    assert len(kept) == len(manifest) - 3 and not set(planted) & set(kept["patient_id"])
    metrics = record["metrics"]
    auc = metrics[(metrics["metric"] == "auc") & (metrics["ci_method"] == "delong")]
    delong = pd.read_csv(layout.evaluation / "delong.csv")
    flow = pd.read_csv(layout.flow / "patient_flow.csv", dtype={"patient_id": str})
    for split in ("test", "external"):
        n = auc.loc[auc["cohort"] == split, "n"]
        evaluated = int((flow["evaluated"] & (flow["split"] == split)).sum())
        assert n.nunique() == 1 and int(n.iloc[0]) == evaluated, (split, n.tolist())  # one patient set per cohort
        assert (delong.loc[delong["split"] == split, "n"] == evaluated).all()
        assert evaluated == int((kept["split"] == split).sum()) - int(
            (~flow["evaluated"] & ~flow["excluded"] & (flow["split"] == split)).sum())
    for model in ("clinical", "radiomics", "deep", "fusion"):
        table = pd.read_csv(layout.model(model) / "predictions.csv", dtype={"patient_id": str})
        assert not set(planted) & set(table["patient_id"]), model
    counts = json.loads((layout.flow / "flow.json").read_text(encoding="utf-8"))
    assert counts["manifest"] == len(manifest) and counts["excluded"] == 3
    assert sum(counts["excluded_reasons"].values()) == 3
    assert record["patient_flow"] == counts
    assert (layout.flow / "flow.png").stat().st_size > 10_000
    html = build_report(copy).read_text(encoding="utf-8")
    assert 'id="flow"' in html and "Excluded patients" in html and all(p in html for p in planted)
    assert f"{len(manifest)} patients in the manifest, 3 excluded" in html  # the checklist's flow answer


def test_flagged_masks_stop_the_study_for_review_and_the_rerun_after_import_finishes(study, cohort, tmp_path):
    import SimpleITK as sitk

    from osteomet.data.manifest import read_manifest
    from osteomet.mri.review import import_review
    from osteomet.pipeline.run_mri import run_mri
    from osteomet.pipeline.study import load_study_config

    run, _ = study
    copy, manifest, planted = _planted_copy(run, tmp_path, "reviewing")
    config = study_file(tmp_path / "config", segmentation={"on_flagged": "review"})
    result = runner.invoke(app, ["run", "mri", "-m", str(cohort), "-o", str(copy), "--config", str(config)])
    assert result.exit_code == 3, result.output
    message = " ".join(result.output.split())
    assert "3 automatic mask(s) need a radiologist's review" in message and "segment import-review" in message
    layout = RunLayout(copy)
    sheet = pd.read_csv(layout.masks / "review" / "review_sheet.csv", dtype={"patient_id": str})
    assert set(sheet["patient_id"]) == set(planted)  # exactly the flagged patients go to the radiologist
    # the radiologist draws the tumours (here: the reference masks) and the study imports them
    rows = manifest.set_index("patient_id")
    for pid in planted:
        truth = sitk.Cast(sitk.ReadImage(str(rows.loc[pid, "mask"])) > 0, sitk.sitkUInt8)
        sitk.WriteImage(truth, str(layout.masks / "review" / f"{pid}_reviewed.nii.gz"))
    import_review(read_manifest(layout.manifest), layout.masks, reviewer="Dr Test")
    record = run_mri(cohort, copy, load_study_config(config), log=lambda _line: None)
    qc = pd.read_csv(layout.mask_qc / "qc.csv", dtype={"patient_id": str}).set_index("patient_id")
    assert set(qc.index[qc["action"] == "reviewed"]) == set(planted)
    assert record["patient_flow"]["excluded"] == 0
    for model in ("clinical", "radiomics", "deep", "fusion"):
        table = pd.read_csv(layout.model(model) / "predictions.csv", dtype={"patient_id": str})
        assert set(planted) <= set(table.loc[table["prob"].notna(), "patient_id"]), model
