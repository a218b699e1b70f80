"""The CT sections of the report, from the files the CT commands write."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from osteomet.report import build_report
from tests.report.pages import Page, copy_results


def test_ct_model_comparisons_are_shown_from_the_files_their_commands_write(study_run: Path, tmp_path: Path) -> None:
    import numpy as np

    from osteomet.ct.detection.compare import write_comparison
    from osteomet.ct.segmentation.compare import compare_segmentations

    run = copy_results(study_run, tmp_path, ["ct/lesions"])
    rng = np.random.default_rng(0)
    ids = [f"CT{i:03d}" for i in range(8)]
    per_patient = pd.concat([pd.DataFrame({"patient_id": ids, "model": model, "split": "test",
                                           "dice": rng.uniform(low, low + 0.3, 8), "precision": rng.uniform(0.4, 1, 8),
                                           "recall": rng.uniform(0.4, 1, 8)}) for model, low in (("unet", 0.5),
                                                                                                ("attention_unet", 0.6))])
    compare_segmentations(per_patient, run / "ct" / "segmentation" / "comparison")
    metrics, patients = {}, {}
    for architecture in ("densenet121", "resnet34"):
        rows = [{"level": "patient", "split": "test", "n": 8, "n_positive": 4, "threshold": 0.5, "metric": m,
                 "estimate": e, "ci_low": e - 0.2, "ci_high": min(1.0, e + 0.1)}
                for m, e in (("auc", 0.81), ("recall", 0.75), ("specificity", 0.5))]
        metrics[architecture] = pd.DataFrame(rows)
        patients[architecture] = pd.DataFrame({"patient_id": ids, "split": "test", "label": [0, 1] * 4,
                                               "score": rng.uniform(0, 1, 8)})
    write_comparison(metrics, patients, {"densenet121": 0.5, "resnet34": 0.5}, run / "ct" / "detection")
    page = Page(build_report(run).read_text(encoding="utf-8"))
    assert {"ct-detection", "ct-segmentation"} <= set(page.sections)
    captions = [image["alt"] for image in page.images]
    assert "Patient scores by reference label" in captions and "dice by model" in captions
    assert {"densenet121", "resnet34", "unet", "attention_unet", "0.810"} <= set(page.cells)
    assert f"{per_patient[per_patient['model'] == 'unet']['dice'].mean():.3f}" in page.cells
