"""The study report page: every section a run produced, notes for the rest, embedded figures, numbers from the run."""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.report import build_report
from tests.report.pages import Page, copy_results

runner = CliRunner()

PRODUCED = ["flow", "cohort", "roc", "delong", "calibration", "trust", "applicability", "grid", "gradcam", "segmentation",
            "rigour", "ct-lesions", "ct-sensitivity", "icc", "tuning", "explanations", "checklist", "run"]
NOT_PRODUCED = ["ct-detection", "ct-segmentation"]


@pytest.fixture(scope="module")
def report(study_run: Path) -> tuple[Path, str]:
    path = build_report(study_run)
    return path, path.read_text(encoding="utf-8")


def test_every_produced_section_is_there_and_the_rest_have_a_note(study_run: Path, report) -> None:
    path, text = report
    assert path == study_run / "report.html"
    page = Page(text)
    assert [s for s in page.sections if s != "not-in-this-run"] == PRODUCED
    assert page.items == [f"absent-{s}" for s in NOT_PRODUCED]
    assert "no ct/detection/comparison.csv" in text and "ct segment compare" in text
    captions = [image["alt"] for image in page.images]
    for cohort in ("train", "val", "test", "external"):
        assert f"ROC, {cohort} cohort" in captions and f"Decision curve, {cohort} cohort" in captions
    assert sum(c.startswith("Grad-CAM, patient") for c in captions) == 2
    assert sum(c.startswith("Patient flow:") for c in captions) == 1
    assert sum(c.startswith("Segmentation, patient") for c in captions) == 2  # the two held-out patients
    assert "Lesion sensitivity by bone group (Wilson 95% CI)" in captions and "ICC per feature by class" in captions
    assert "Lowest ICC(2,1) per feature, by class" in captions and "|SMD| after" in text


def test_figures_are_embedded_pngs_and_nothing_is_loaded_from_anywhere(study_run: Path, report) -> None:
    from PIL import Image

    _, text = report
    page = Page(text)
    assert page.images and not [link for link in page.links if not link.startswith("#")]
    for image in page.images:
        assert image["src"].startswith("data:image/png;base64,"), image["src"][:60]
        with Image.open(io.BytesIO(base64.b64decode(image["src"].split(",", 1)[1]))) as decoded:
            decoded.load()
            assert decoded.format == "PNG" and decoded.width > 50
    assert "http://" not in text and "https://" not in text and "file:" not in text
    assert str(study_run.parent) not in text  # no file path of the machine the run was on


def test_numbers_match_an_independent_computation(study_run: Path, report) -> None:
    from sklearn.metrics import roc_auc_score

    from osteomet.report.html import fmt

    _, text = report
    cells = Page(text).cells
    predictions = pd.read_csv(study_run / "models" / "clinical" / "predictions.csv")
    test = predictions[predictions["split"] == "test"]
    assert fmt(float(roc_auc_score(test["label"], test["prob"]))) in cells
    # the chart's per-group sensitivities (recomputed from reference_lesions.csv) are the CT stage's own
    from osteomet.report.charts import bone_group_sensitivity

    mine = bone_group_sensitivity(pd.read_csv(study_run / "ct" / "lesions" / "reference_lesions.csv"))
    stage = pd.read_csv(study_run / "ct" / "lesions" / "metrics.csv")
    stage = stage[(stage["metric"] == "lesion_sensitivity") & (stage["breakdown"] == "bone_group")]
    merged = mine.merge(stage, left_on="bone_group", right_on="subgroup")
    assert len(merged) == len(mine) >= 2
    pd.testing.assert_series_equal(merged["sensitivity"], merged["estimate"], check_names=False)
    pd.testing.assert_series_equal(merged["ci_low_x"], merged["ci_low_y"], check_names=False)
    assert (merged["lesions"] == merged["denominator"]).all()
    # the applicability section's share outside per cohort is the count of flags.csv's verdicts
    flags = pd.read_csv(study_run / "applicability" / "flags.csv")
    for split, part in flags.groupby("split"):
        checked = part[part["applicability"] != "not checked"]
        assert fmt(float((checked["applicability"] == "outside").mean())) in cells, split


def test_identifiers_planted_in_the_run_never_reach_the_page(study_run: Path, tmp_path: Path) -> None:
    run = copy_results(study_run, tmp_path, ["evaluation", "ct/lesions", "models/clinical"])
    lesions = pd.read_csv(run / "ct" / "lesions" / "lesions.csv")
    lesions["patient_name"] = "DOE^JOHN"
    lesions["PatientBirthDate"] = "19450101"
    lesions.to_csv(run / "ct" / "lesions" / "lesions.csv", index=False)
    cohort = pd.read_csv(run / "evaluation" / "cohort_characteristics.csv")
    cohort["PatientName"] = "DOE^JOHN"
    cohort.to_csv(run / "evaluation" / "cohort_characteristics.csv", index=False)
    settings = run / "models" / "clinical" / "settings.yaml"
    settings.write_text(settings.read_text(encoding="utf-8") + "dicom:\n  PatientName: DOE^JANE\n  '(0010,0030)': '19450202'\n"
                        "source: /data/DOE_JANE/t2\n", encoding="utf-8")
    metrics = pd.read_csv(run / "evaluation" / "metrics.csv")
    metrics.loc[0, "model"] = "<script>alert(1)</script>"
    metrics.to_csv(run / "evaluation" / "metrics.csv", index=False)
    text = build_report(run).read_text(encoding="utf-8")
    for planted in ("DOE^JOHN", "DOE^JANE", "DOE_JANE", "19450101", "19450202"):
        assert planted not in text
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "(hidden: identifying field)" in text and "(path outside the run directory)" in text
    assert "CT001" in text  # patient ids are what the report shows


def test_a_partial_run_leaves_out_what_it_did_not_produce(study_run: Path, tmp_path: Path) -> None:
    run = copy_results(study_run, tmp_path, ["evaluation"])
    (run / "evaluation" / "roc_val.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # damaged figure
    page = Page(build_report(run).read_text(encoding="utf-8"))
    assert [s for s in page.sections if s != "not-in-this-run"] == ["cohort", "roc", "delong", "calibration",
                                                                    "checklist", "run"]
    assert {f"absent-{s}" for s in ("grid", "gradcam", "segmentation", "rigour", "ct-lesions", "ct-sensitivity",
                                    "icc", "tuning", "explanations", "applicability")} <= set(page.items)
    captions = [image["alt"] for image in page.images]
    assert "ROC, test cohort" in captions and "ROC, val cohort" not in captions


def test_cli_writes_the_report_and_refuses_what_is_not_a_run(study_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "study.html"
    result = runner.invoke(app, ["report", str(study_run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>") and "not in this run" in result.output
    assert runner.invoke(app, ["report", str(study_run), "--out", str(out)]).exit_code == 0  # its own report: replaced

    def refused(args: list[str]) -> str:
        result = runner.invoke(app, ["report", *args])
        assert result.exit_code == 2, result.output
        return " ".join(result.output.split())

    assert "folder not found" in refused([str(tmp_path / "missing")])
    (tmp_path / "mine").mkdir()
    assert "not an osteomet run directory" in refused([str(tmp_path / "mine")])
    notes = tmp_path / "notes.html"
    notes.write_text("<p>my notes</p>", encoding="utf-8")
    assert "not a report written by osteomet" in refused([str(study_run), "--out", str(notes)])
    assert notes.read_text(encoding="utf-8") == "<p>my notes</p>"
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(study_run / "osteomet-run.json", empty)
    assert "nothing to report" in refused([str(empty)])
    assert not (empty / "report.html").exists()
