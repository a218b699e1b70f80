"""A small but real study run directory: every stage the report reads, run by the library on synthetic cohorts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def _segmentation_manifest(manifest: Path) -> Path:
    """Six patients of the cohort (3 train, 1 val, 2 held out) beside the manifest: UNETR inference is slow on CPU."""
    frame = pd.read_csv(manifest, dtype={"patient_id": str})
    parts = [frame[frame["split"] == "train"].head(3), frame[frame["split"] == "val"].head(1),
             frame[frame["split"].isin(["test", "external"])].head(2)]
    path = manifest.with_name("segmentation_manifest.csv")
    pd.concat(parts).to_csv(path, index=False)
    return path


def _predicted_ct_masks(manifest: Path, out: Path) -> Path:
    """A CT 'model' that finds every other reference lesion, written as NIfTI in each CT's geometry."""
    import cc3d
    import SimpleITK as sitk

    from osteomet.data.images import write_image
    from osteomet.data.manifest import read_manifest

    for record in read_manifest(manifest):
        reference = sitk.ReadImage(str(record.lesion_mask))
        labels = cc3d.connected_components(sitk.GetArrayFromImage(reference) > 0)
        kept = np.isin(labels, np.arange(1, labels.max() + 1)[::2]).astype(np.uint8)
        image = sitk.GetImageFromArray(kept)
        image.CopyInformation(reference)
        write_image(image, out / f"{record.patient_id}.nii.gz")
    return out


@pytest.fixture(scope="session")
def study_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run directory with cohort table, clinical + deep models, evaluation, grid, Grad-CAM, UNETR masks, radiomics
    stability and harmonization, the applicability domain, CT lesions, ICC."""
    import torch

    from osteomet.ct.lesions.cohort import LesionSettings
    from osteomet.data.manifest import read_manifest
    from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort
    from osteomet.data.synth.mri import MRISynthConfig, generate_mri_cohort
    from osteomet.layout import RunLayout, open_run_dir
    from osteomet.models.tuning import TuningConfig
    from osteomet.mri.classifier.config import load_classifier_config
    from osteomet.mri.classifier.data import roi_patients
    from osteomet.mri.classifier.gradcam import gradcam_cohort
    from osteomet.mri.classifier.grid import run_grid
    from osteomet.mri.classifier.labels import LabelGuard
    from osteomet.mri.classifier.predict import predict_patients, write_prediction_table
    from osteomet.mri.preprocess import PreprocessConfig, preprocess_cohort
    from osteomet.mri.segmentation.config import load_segmentation_config
    from osteomet.pipeline.clinical import train_clinical_model
    from osteomet.pipeline.cohort import patient_flow
    from osteomet.pipeline.ct_lesions import analyse_lesion_cohort
    from osteomet.pipeline.evaluate import evaluate_prediction_files, write_cohort_table
    from osteomet.pipeline.explain import explain_models
    from osteomet.pipeline.radiomics import extract_features
    from osteomet.pipeline.rigour import feature_stability, model_features
    from osteomet.pipeline.segmentation import predict_segmentation, train_segmentation
    from osteomet.radiomics.reproducibility import run_icc

    torch.set_num_threads(2)
    run = open_run_dir(tmp_path_factory.mktemp("study") / "run", kind="test")
    layout = RunLayout(run)
    manifest = generate_mri_cohort(layout.cohorts / "mri", 30, seed=2, config=MRISynthConfig(
        scale=0.15, external_fraction=0.25, split_ratios=(0.5, 0.2, 0.3)))
    cohort = read_manifest(manifest)
    train_clinical_model(manifest, layout.model("clinical"),
                         tuning=TuningConfig(folds=2, grid={"max_depth": [1, 2], "n_estimators": [20, 40]}))
    layout.split.mkdir(parents=True, exist_ok=True)
    shutil.copy(manifest, layout.manifest)  # the study's split manifest (the checklist's counts)
    explain_models(manifest, layout.explanations, models={"clinical": layout.model("clinical")}, radiomics=None,
                   deep=None, fusion_mode="features", predictions={}, cohort="train", top_k=5)
    preprocess_cohort(cohort, layout.preprocess, PreprocessConfig(seg_size=(64, 64, 16), roi_size=(32, 32, 16),
                                                                  roi_spacing=(2.0, 2.0, 4.0)))
    grid = load_classifier_config("tiny").model_copy(update={"max_epochs": 1, "batch_size": 4, "depths": [10],
                                                             "optimizers": ["adam"]})
    _, winner = run_grid(layout.preprocess, layout.deep / "grid", grid, LabelGuard.from_manifest(cohort),
                         roi_patients(layout.preprocess, cohort))
    best = layout.deep / "grid" / winner["run"]
    gradcam_cohort(best, layout.preprocess, cohort.patient_ids[:2], layout.deep / "gradcam")
    deep = predict_patients(best, layout.preprocess, roi_patients(layout.preprocess, cohort), cohort.to_frame())
    write_prediction_table(deep, layout.model("deep") / "predictions.csv")
    predictions = {m: layout.model(m) / "predictions.csv" for m in ("clinical", "deep")}
    _, flow = patient_flow(manifest, manifest, None, predictions, layout.flow, layout)
    evaluate_prediction_files(list(predictions.values()), layout.evaluation, n_resamples=50,
                              patients=flow.loc[flow["evaluated"], "patient_id"].tolist())
    from osteomet.pipeline.trust import calibrate_trust

    calibrate_trust(manifest, predictions, layout.trust, alpha=0.2)
    write_cohort_table(manifest, layout.cohort_table)

    seg_manifest = _segmentation_manifest(manifest)
    settings = load_segmentation_config("tiny").model_copy(update={"max_epochs": 1})
    train_segmentation(layout.preprocess, seg_manifest, layout.segmentation_model, settings)
    predict_segmentation(layout.preprocess, seg_manifest, layout.segmentation_model, layout.masks)
    extract_features(manifest, layout.radiomics, params="tiny")
    feature_stability(manifest, layout.radiomics / "features.parquet", layout.stability, params="tiny")
    model_features(manifest, layout.radiomics / "features.parquet", layout.model_features,
                   stability=layout.stability / "icc.csv", icc_threshold=0.5)
    from osteomet.pipeline.applicability import fit_applicability

    fit_applicability(manifest, layout.applicability, radiomics=layout.model_features / "features.parquet",
                      predictions=predictions)

    ct = generate_ct_cohort(layout.cohorts / "ct", 4, seed=1, config=CTSynthConfig(
        region="abdomen_pelvis", inplane_size=64, lesion_free_fraction=0.0))
    predicted = _predicted_ct_masks(ct, run / "ct" / "predicted_masks")
    analyse_lesion_cohort(ct, layout.ct_lesions, settings=LesionSettings(n_resamples=50), predictions=predicted)
    extract_features(ct, run / "ct" / "radiomics_manual", params="tiny")
    extract_features(ct, run / "ct" / "radiomics_predicted", params="tiny", masks=predicted)
    run_icc(run / "ct" / "radiomics_manual" / "features.parquet",
            run / "ct" / "radiomics_predicted" / "features.parquet", layout.ct_icc / "icc.csv")
    (run / "run.json").write_text(json.dumps({"seeds": {"synth_mri": 2, "synth_ct": 1}}), encoding="utf-8")
    return run
