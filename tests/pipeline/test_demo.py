"""`osteomet demo` end to end with test-sized models: both studies, a prediction, the summary, reuse on rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from osteomet.layout import RunLayout
from tests.pipeline.studies import study_file


def _ct_configs():
    from osteomet.ct.detection.config import load_detection_config
    from osteomet.ct.segmentation.config import load_segmentation_config

    detection = load_detection_config("tiny")
    segmentation = load_segmentation_config("tiny")
    return (detection.model_copy(update={"max_epochs": 2, "architectures": ["resnet34"]}),
            segmentation.model_copy(update={"max_epochs": 1, "architectures": ["unet"]}))


#: The demo as a process of its own (test-sized settings), to be killed the way a user's is.
DRIVER = """
import sys
from pathlib import Path
from osteomet.pipeline.demo import run_demo
from osteomet.pipeline.study import load_study_config
from tests.pipeline.test_demo import _ct_configs
detection, segmentation = _ct_configs()
run_demo(Path(sys.argv[1]), n_mri=30, n_ct=6, study=load_study_config(sys.argv[2]), ct_detection=detection,
         ct_segmentation=segmentation, ct_region="abdomen_pelvis")
"""


def test_demo_runs_both_studies_predicts_a_held_out_patient_and_reuses_every_stage(tmp_path: Path):
    """Killed (SIGKILL) in the middle of the CT detector's training, the demo's rerun continues it and ends."""
    import subprocess
    import sys
    import time

    from rich.console import Console

    from osteomet.pipeline.demo import run_demo
    from osteomet.pipeline.study import load_study_config
    from tests.conftest import REPO_ROOT

    out = tmp_path / "demo"
    config = study_file(tmp_path / "config")
    study = load_study_config(config)
    detection, segmentation = _ct_configs()
    started = RunLayout(out).ct_detection / "model" / "resnet34" / "checkpoints" / "last.pt"
    log = tmp_path / "demo.log"
    with log.open("w") as sink:  # a file, not a pipe nobody reads (a full pipe would stall the demo)
        process = subprocess.Popen([sys.executable, "-c", DRIVER, str(out), str(config)], cwd=REPO_ROOT,
                                   stdout=sink, stderr=subprocess.STDOUT)
        while not started.is_file():
            assert process.poll() is None, log.read_text(errors="replace")
            time.sleep(0.02)
        process.kill()
        process.wait()
    console = Console(record=True, width=140)
    summary = run_demo(out, n_mri=30, n_ct=6, study=study, ct_detection=detection, ct_segmentation=segmentation,
                       ct_region="abdomen_pelvis", console=console)
    layout = RunLayout(out)
    assert set(summary["auc"]) == {"clinical", "radiomics", "deep", "fusion"}
    assert {"test", "external"} <= set(summary["auc"]["fusion"])
    assert summary["prediction"]["decision"] in ("bone metastasis", "no bone metastasis")
    assert summary["ct_prediction"]["segmenter"] == "unet" and "resnet34" in summary["ct_prediction"]["flagged_slices"]
    assert (layout.ct_lesions_of("unet") / "lesions.csv").is_file()
    assert (layout.ct_icc_of("unet") / "icc" / "icc.csv").is_file()
    assert (layout.ct_split / "manifest.csv").is_file()  # one split the detectors and segmenters share
    assert "dice" in summary["ct_results"] and "slice_auc" in summary["ct_results"]
    saved = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert saved["run"] == str(out.resolve())
    text = console.export_text()
    assert "ct detection train: done (continued after an interruption)" in text
    assert len(pd.read_csv(started.parent.parent / "history.csv")) == 2  # epoch 1 kept, epoch 2 added
    assert (out / "report.html").is_file() and summary["report"] == str(out / "report.html")
    assert "AUC (DeLong 95% CI)" in text and str(out.resolve()) in text.replace("\n", "")

    stamp = (layout.cohorts / "mri" / "manifest.csv").stat().st_mtime_ns
    again = run_demo(out, n_mri=30, n_ct=6, study=study, ct_detection=detection, ct_segmentation=segmentation,
                     ct_region="abdomen_pelvis", console=Console(record=True, width=140))
    assert (layout.cohorts / "mri" / "manifest.csv").stat().st_mtime_ns == stamp
    assert all(stage["skipped"] for stage in again["seconds"]["stages"].values()), again["seconds"]["stages"]
    assert again["prediction"]["probability"] == summary["prediction"]["probability"]
