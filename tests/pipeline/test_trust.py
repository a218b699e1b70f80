"""The conformal stage and `predict mri`'s prediction sets: calibrated on held-out study patients only, judged on
test and external, read back from the bundle (an older bundle without them still predicts)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osteomet.layout import RunLayout
from tests.pipeline.studies import study_file
from tests.pipeline.test_predict_inputs import bundle  # noqa: F401  (a module-scoped fixture: a bundle of 3 models)

MODELS = ("clinical", "radiomics", "deep", "fusion")


def _manifest(folder: Path, n: int, seed: int) -> Path:
    """A study manifest of ``n`` labelled patients in every split (one synthetic patient's images, shared: the stage
    reads only ids, splits and labels)."""
    from osteomet.data.synth.mri import generate_mri_cohort

    source = pd.read_csv(generate_mri_cohort(folder / "images", 1, seed=seed), dtype={"patient_id": str})
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"patient_id": [f"P{i:05d}" for i in range(n)], "centre": "C1",
                          "split": rng.choice(["train", "val", "test", "external"], n, p=[0.45, 0.15, 0.2, 0.2]),
                          "label": (rng.random(n) < 0.3).astype(int)})
    for column in ("t2", "dwi", "adc", "mask"):
        frame[column] = str((folder / "images" / source[column].iloc[0]).resolve())
    frame.to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


def _predictions(manifest: Path, folder: Path, seed: int, *, in_sample: str | None = None) -> dict[str, Path]:
    """Each model's prediction table: probabilities that depend on the label (as a model's do), a few unscored."""
    frame = pd.read_csv(manifest, dtype={"patient_id": str})
    rng = np.random.default_rng(seed)
    files = {}
    for i, name in enumerate(MODELS):
        score = (0.6 + 0.4 * i) * (2 * frame["label"] - 1) + rng.normal(0, 1.2, len(frame)) - 0.5
        prob = np.round(1 / (1 + np.exp(-score)), 6)
        prob[rng.random(len(frame)) < 0.02] = np.nan  # a failed extraction: left out of calibration and coverage
        table = frame[["patient_id", "split", "label"]].assign(model=name, prob=prob)
        path = folder / name / "predictions.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)
        if name == in_sample:  # the deep stage's record when oof_folds is 0
            (path.parent / "stage.json").write_text(json.dumps({"status": "complete",
                                                                "summary": {"training_predictions": "in-sample"}}))
        files[name] = path
    return files


def _held_out(path: Path, splits: tuple[str, ...]) -> pd.DataFrame:
    table = pd.read_csv(path, dtype={"patient_id": str})
    return table[table["split"].isin(splits)].dropna(subset=["prob", "label"])


def test_stage_calibrates_on_validation_and_out_of_fold_training_and_measures_test_and_external(tmp_path: Path):
    from osteomet.models.conformal import MondrianConformal
    from osteomet.models.recalibration import LogisticRecalibration
    from osteomet.pipeline.trust import calibrate_trust

    manifest = _manifest(tmp_path, 3000, seed=1)
    files = _predictions(manifest, tmp_path / "models", seed=2, in_sample="deep")
    out = tmp_path / "trust"
    outcome = calibrate_trust(manifest, files, out, alpha=0.1, recalibrate=True)
    assert not outcome.skipped
    coverage = pd.read_csv(out / "coverage.csv")
    for name, path in files.items():
        fitted = MondrianConformal.load(out / name / "conformal.json")
        splits = ("val",) if name == "deep" else ("train", "val")  # in-sample training rows are never calibration
        held = _held_out(path, splits)
        assert fitted.counts == (int((held["label"] == 0).sum()), int((held["label"] == 1).sum()))
        record = json.loads((out / name / "conformal.json").read_text(encoding="utf-8"))
        assert record["calibrated_on"] == {s: int((held["split"] == s).sum()) for s in splits}
        recalibrated = LogisticRecalibration.load(out / name / "recalibration.json")
        assert recalibrated == LogisticRecalibration.fit(held["prob"], held["label"])
        for split in ("test", "external"):
            judged = _held_out(path, (split,))
            rows = coverage[(coverage["model"] == name) & (coverage["split"] == split)].set_index("class")
            sets = fitted.sets(judged["prob"].to_numpy())
            for c, cls in enumerate(("no BM", "BM")):
                mine = judged["label"].to_numpy() == c
                assert rows.loc[cls, "n"] == mine.sum()
                assert rows.loc[cls, "coverage"] == pytest.approx(sets[mine, c].mean())
                # exchangeable synthetic patients: coverage within binomial error (test and calibration draws)
                sd = math.sqrt(0.1 * 0.9 * (1 / mine.sum() + 1 / (fitted.counts[c] + 2)))
                assert rows.loc[cls, "coverage"] > 0.9 - 3 * sd, (name, split, cls)
            assert rows.loc["all", "uncertain"] == pytest.approx(np.mean(sets.sum(axis=1) == 2))
    # test and external patients never reach the calibration: changing their probabilities changes only coverage
    for name, path in files.items():
        table = pd.read_csv(path, dtype={"patient_id": str})
        judged = table["split"].isin(["test", "external"])
        table.loc[judged, "prob"] = 1 - table.loc[judged, "prob"]
        table.to_csv(path, index=False)
    before = {name: (out / name / "conformal.json").read_text(encoding="utf-8") for name in files}
    rerun = calibrate_trust(manifest, files, out, alpha=0.1, recalibrate=True)
    assert not rerun.skipped and all((out / n / "conformal.json").read_text(encoding="utf-8") == before[n] for n in files)
    flipped = pd.read_csv(out / "coverage.csv")
    fusion_bm = (flipped["model"] == "fusion") & (flipped["class"] == "BM")
    assert (flipped.loc[fusion_bm, "coverage"] < 0.5).all()  # the strongest model's flipped scores are atypical now
    assert calibrate_trust(manifest, files, out, alpha=0.1, recalibrate=True).skipped  # unchanged: up to date
    # the report's section: the coverage table and the recalibration per model
    from osteomet.report.trust_sections import trust_section

    section = trust_section(RunLayout(tmp_path))
    assert section.present and "90% confidence per class" in section.body
    assert section.body.count("<tr>") == 1 + len(flipped) + 1 + len(files)  # header + rows, twice


def test_predict_reports_a_set_per_model_from_the_bundle_and_an_older_bundle_says_it_has_none(bundle, tmp_path):  # noqa: F811
    from osteomet.pipeline.predict_mri import MRIBundle, render_result, trust_result
    from osteomet.pipeline.trust import calibrate_trust

    run = Path(shutil.copytree(bundle, tmp_path / "run"))
    older = MRIBundle.open(run)  # a study run before prediction sets existed
    probs = {"clinical": 0.2, "radiomics": 0.55, "deep": 0.9, "fusion": 0.81}
    conformal, recalibration = trust_result(older, probs)
    assert not conformal["available"] and conformal["models"] == {} and "no conformal calibration" in conformal["note"]
    text = render_result(_result(probs, conformal, recalibration))
    assert "| fusion | 0.810 |" in text and "Prediction sets: no prediction sets" in text
    from osteomet.report.trust_sections import trust_section

    assert not trust_section(RunLayout(run)).present and "conformal" in trust_section(RunLayout(run)).note

    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    record["config"]["recalibration"] = {"enabled": True}
    (run / "run.json").write_text(json.dumps(record))
    manifest = _manifest(tmp_path / "study", 1200, seed=3)
    files = _predictions(manifest, tmp_path / "models", seed=4)
    calibrate_trust(manifest, files, RunLayout(run).trust, alpha=0.1, recalibrate=True)
    opened = MRIBundle.open(run)
    assert set(opened.conformal) == set(MODELS) and set(opened.recalibration) == set(MODELS)
    conformal, recalibration = trust_result(opened, probs)
    assert conformal["available"] and conformal["confidence"] == 0.9
    for name, prob in probs.items():
        members = opened.conformal[name].sets([prob])[0]
        entry = conformal["models"][name]
        assert entry["set"] == [c for c, kept in zip(("no BM", "BM"), members) if kept]
        assert entry["p_values"]["BM"] == pytest.approx(opened.conformal[name].p_values([prob])[0, 1])
        assert recalibration["models"][name]["probability"] == pytest.approx(
            float(opened.recalibration[name].apply([prob])[0]))
    text = render_result(_result(probs, conformal, recalibration))
    fusion = conformal["models"]["fusion"]["text"]
    assert "| model | probability | recalibrated | prediction set (90%) |" in text
    assert f"| fusion | 0.810 | {recalibration['models']['fusion']['probability']:.3f} | {fusion}" in text
    assert f"prediction set {fusion} at 90% confidence" in text
    # a damaged calibration is refused when the bundle is opened, naming the file
    path = RunLayout(run).trust / "fusion" / "conformal.json"
    path.write_text(path.read_text(encoding="utf-8").replace('"scores"', '"score"', 1))
    from osteomet.errors import InputError

    with pytest.raises(InputError, match=r"fusion/conformal\.json: damaged or edited conformal calibration"):
        MRIBundle.open(run)


def _result(probs: dict[str, float], conformal: dict, recalibration: dict) -> dict:
    return {"patient_id": "NEW1", "decision": "bone metastasis", "probability": probs["fusion"], "threshold": 0.5,
            "models": probs, "conformal": conformal, "recalibration": recalibration, "mask_source": "given",
            "missing_clinical": [], "files": {}, "seconds": {}, "run": "RUN", "trained_with": "x"}


@pytest.fixture(scope="module")
def study(unsplit_cohort: Path, shared_study, tmp_path_factory) -> tuple[Path, dict]:
    """The session's tiny study with prediction sets at alpha 0.25 (4 calibration patients per class suffice
    in a cohort this small) and the recalibration on: a copy, rerun, so only the conformal stage runs again."""
    from osteomet.pipeline.run_mri import run_mri
    from osteomet.pipeline.study import load_study_config
    from tests.pipeline.conftest import copied_study

    run = copied_study(shared_study, tmp_path_factory.mktemp("trust_study") / "run")
    config = load_study_config(study_file(run.parent / "config", conformal={"alpha": 0.25},
                                          recalibration={"enabled": True}))
    return run, run_mri(unsplit_cohort, run, config, log=lambda _line: None)


def test_run_mri_writes_coverage_and_predict_reports_a_set_per_model(study, tmp_path):
    from osteomet.models.conformal import MondrianConformal
    from osteomet.pipeline.predict_mri import predict_mri
    from osteomet.report.build import build_sections

    run, record = study
    layout = RunLayout(run)
    assert not record["stages"]["conformal"]["skipped"]
    coverage = pd.read_csv(layout.trust / "coverage.csv")
    assert set(zip(coverage["model"], coverage["split"])) == {(m, s) for m in MODELS for s in ("test", "external")}
    assert set(coverage["class"]) == {"no BM", "BM", "all"} and (coverage["nominal"] == 0.75).all()
    summary = json.loads((layout.trust / "stage.json").read_text(encoding="utf-8"))["summary"]["models"]
    for name in MODELS:
        predictions = layout.model(name) / "predictions.csv"
        fitted = MondrianConformal.load(layout.trust / name / "conformal.json")
        held = _held_out(predictions, ("train", "val"))  # every model's training rows are out-of-fold here
        assert fitted.counts == (int((held["label"] == 0).sum()), int((held["label"] == 1).sum()))
        for split in ("test", "external"):
            judged = _held_out(predictions, (split,))
            n = coverage.loc[(coverage["model"] == name) & (coverage["split"] == split) & (coverage["class"] == "all"),
                             "n"]
            assert int(n.iloc[0]) == len(judged)
        assert (layout.trust / name / "recalibration.json").is_file() or summary[name]["recalibration"]["reason"]
    manifest = pd.read_csv(layout.manifest, dtype={"patient_id": str})
    row = manifest[manifest["split"] == "external"].iloc[0]
    base = layout.manifest.parent
    clinical = {k: float(row[k]) for k in ("age", "psa", "gleason", "isup", "hematuria", "leukocyturia")
                if pd.notna(row[k])}
    result = predict_mri(run, tmp_path / "pred", t2=base / row["t2"], dwi=base / row["dwi"], adc=base / row["adc"],
                         clinical=clinical, patient_id=row["patient_id"], centre=row["centre"], log=lambda _line: None)
    saved = json.loads((tmp_path / "pred" / "result.json").read_text(encoding="utf-8"))
    assert set(saved["conformal"]["models"]) == set(MODELS) and saved["conformal"]["confidence"] == 0.75
    for name in MODELS:  # the set of the study's own probability of this patient
        table = pd.read_csv(layout.model(name) / "predictions.csv", dtype={"patient_id": str})
        prob = float(table.loc[table["patient_id"] == row["patient_id"], "prob"].iloc[0])
        members = MondrianConformal.load(layout.trust / name / "conformal.json").sets([prob])[0]
        assert saved["conformal"]["models"][name]["set"] == [c for c, k in zip(("no BM", "BM"), members) if k]
    assert saved["recalibration"]["enabled"] and set(saved["recalibration"]["models"]) == set(MODELS)
    assert result["models"] == saved["models"]  # the models' own probabilities are unchanged
    text = (tmp_path / "pred" / "result.md").read_text(encoding="utf-8")
    assert "prediction set (75%)" in text and "Mondrian split conformal" in text
    sections = {s.id: s for s in build_sections(run)}
    assert sections["trust"].present and "calibration n" in sections["trust"].body
    print(text)


def test_too_few_calibration_patients_stop_the_stage_when_asked_naming_the_model_and_the_setting(tmp_path: Path):
    from osteomet.models.conformal import ConformalError
    from osteomet.pipeline.trust import calibrate_trust

    manifest = _manifest(tmp_path, 300, seed=5)
    files = _predictions(manifest, tmp_path / "models", seed=6)
    with pytest.raises(ConformalError, match=r"model 'clinical' .* at least 100 calibration patients per class.*"
                                             r"conformal\.alpha and conformal\.too_few"):
        calibrate_trust(manifest, files, tmp_path / "trust", alpha=0.01, too_few="refuse")
    assert not (tmp_path / "trust").exists()  # no half-made stage folder
    kept = calibrate_trust(manifest, files, tmp_path / "trust", alpha=0.01)  # default: uncertain, recorded
    calibration = _held_out(files["fusion"], ("train", "val"))
    assert (calibration["label"] == 0).sum() >= 100 > (calibration["label"] == 1).sum()
    assert kept.summary["models"]["fusion"]["excludable"] == {"no BM": True, "BM": False}
    coverage = pd.read_csv(tmp_path / "trust" / "coverage.csv")
    bm = coverage[coverage["class"] == "BM"]
    assert (bm["coverage"] == 1.0).all() and not bm["excludable"].any()  # BM is in every set


def test_switching_the_recalibration_off_leaves_no_recalibration_behind(tmp_path: Path):
    from osteomet.pipeline.trust import calibrate_trust
    from osteomet.report.trust_sections import trust_section

    manifest = _manifest(tmp_path, 600, seed=7)
    files = _predictions(manifest, tmp_path / "models", seed=8)
    calibrate_trust(manifest, files, tmp_path / "trust", alpha=0.2, recalibrate=True)
    assert (tmp_path / "trust" / "fusion" / "recalibration.json").is_file()
    assert "Logistic recalibration" in trust_section(RunLayout(tmp_path)).body
    calibrate_trust(manifest, files, tmp_path / "trust", alpha=0.2, recalibrate=False)
    assert not list((tmp_path / "trust").glob("*/recalibration.json"))
    assert "Logistic recalibration" not in trust_section(RunLayout(tmp_path)).body
