"""`osteomet demo` end to end with test-sized models: both studies, a prediction, the summary, reuse on rerun."""

from __future__ import annotations

import json
from pathlib import Path

from osteomet.layout import RunLayout
from tests.pipeline.studies import study_file


def _ct_configs():
    from osteomet.ct.detection.config import load_detection_config
    from osteomet.ct.segmentation.config import load_segmentation_config

    detection = load_detection_config("tiny")
    segmentation = load_segmentation_config("tiny")
    return (detection.model_copy(update={"max_epochs": 1, "architectures": ["resnet34"]}),
            segmentation.model_copy(update={"max_epochs": 1, "architectures": ["unet"]}))


def test_demo_runs_both_studies_predicts_a_held_out_patient_and_reuses_every_stage(tmp_path: Path):
    from rich.console import Console

    from osteomet.pipeline.demo import run_demo
    from osteomet.pipeline.study import load_study_config

    out = tmp_path / "demo"
    study = load_study_config(study_file(tmp_path / "config"))
    detection, segmentation = _ct_configs()
    console = Console(record=True, width=140)
    summary = run_demo(out, n_mri=30, n_ct=5, study=study, ct_detection=detection, ct_segmentation=segmentation,
                       ct_region="abdomen_pelvis", console=console)
    layout = RunLayout(out)
    assert set(summary["auc"]) == {"clinical", "radiomics", "deep", "fusion"}
    assert {"test", "external"} <= set(summary["auc"]["fusion"])
    assert summary["prediction"]["decision"] in ("bone metastasis", "no bone metastasis")
    assert (layout.ct_lesions / "lesions.csv").is_file() and (layout.ct_icc / "icc" / "icc.csv").is_file()
    assert "dice" in summary["ct_results"] and "slice_auc" in summary["ct_results"]
    saved = json.loads((out / "summary.json").read_text())
    assert saved["run"] == str(out.resolve())
    text = console.export_text()
    assert (out / "report.html").is_file() and summary["report"] == str(out / "report.html")
    assert "AUC (DeLong 95% CI)" in text and str(out.resolve()) in text.replace("\n", "")

    stamp = (layout.cohorts / "mri" / "manifest.csv").stat().st_mtime_ns
    again = run_demo(out, n_mri=30, n_ct=5, study=study, ct_detection=detection, ct_segmentation=segmentation,
                     ct_region="abdomen_pelvis", console=Console(record=True, width=140))
    assert (layout.cohorts / "mri" / "manifest.csv").stat().st_mtime_ns == stamp
    assert all(stage["skipped"] for stage in again["seconds"]["stages"].values()), again["seconds"]["stages"]
    assert again["prediction"]["probability"] == summary["prediction"]["probability"]
