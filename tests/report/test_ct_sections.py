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


def test_ct_lesion_pictures_and_each_detectors_gradcam_are_shown(tmp_path: Path) -> None:
    """Test patients' lesions and the bone map (drawn from the run's files, then the saved ones), and the
    detector's Grad-CAM found by name though its index holds a stale path."""
    import base64
    import io
    import json

    import numpy as np
    from PIL import Image

    from osteomet.ct.detection.gradcam import localisation_summary, save_overlay
    from osteomet.ct.lesions.figures import COLOURS, write_lesion_figures
    from osteomet.layout import RunLayout
    from tests.ct.lesions.test_figures import build_lesion_run, colour_pixels

    run = build_lesion_run(tmp_path / "run")
    gradcam = run / "ct" / "detection" / "predictions" / "resnet34" / "gradcam"
    tile, heat, lesion = np.full((32, 32), 0.3), np.zeros((32, 32)), np.zeros((32, 32), bool)
    tile[10:20, 10:20], heat[12:18, 12:18], lesion[11:19, 11:19] = 0.9, 1.0, True
    save_overlay(tile, heat, lesion, gradcam / "true_positive" / "P1_slice0004.png", "resnet34 true positive",
                 context=np.full((80, 80), 0.2), box=(32, 24, 24), spacing=(2.0, 2.0))
    rows = pd.DataFrame([{"kind": "true_positive", "patient_id": "P1", "slice": 4, "probability": 0.93,
                          "cam_empty": False, "cam_lesion_mm": 0.0, "png": "elsewhere/P1_slice0004.png"},
                         {"kind": "false_positive", "patient_id": "P2", "slice": 7, "probability": 0.61,
                          "cam_empty": False, "cam_lesion_mm": float("nan"), "png": ""}])
    rows.to_csv(gradcam / "index.csv", index=False)
    (gradcam / "localisation.json").write_text(json.dumps(localisation_summary(rows)))

    def decoded(image: dict) -> np.ndarray:
        data = base64.b64decode(image["src"].split(",", 1)[1])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    for saved in (False, True):
        if saved:  # the figures a stage saved are embedded as they are, with their captions
            write_lesion_figures(RunLayout(run))
        page = Page(build_report(run).read_text(encoding="utf-8"))
        assert {"ct-lesions", "ct-detection"} <= set(page.sections)
        images = {image["alt"]: image for image in page.images}
        patient = next(v for k, v in images.items() if k.startswith("Test patient P1"))
        pixels = decoded(patient)
        for kind in ("reference", "true_positive", "false_positive", "missed"):
            assert colour_pixels(pixels, COLOURS[kind]) > 20, kind
        assert any(k.startswith("unet: where lesions were found") for k in images)
        assert "Lesions by bone, test patients" in images
        assert {"spine", "pelvis"} <= set(page.cells)  # the bone-group table beside the figures
        overlay = decoded(images["resnet34, true positive: patient P1, slice 4, score 0.93"])
        assert overlay.shape[1] > 2 * overlay.shape[0]  # slice, tile and map side by side
        assert not any("patient P2" in k for k in images)  # no PNG was written for it: nothing broken shown
