"""The stability stage with a segmentation folder: reviewed masks are the study's, UNETR proposals a perturbation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd


def test_auto_vs_reviewed_is_compared_on_training_patients_with_both(mri_cohort: Path, tmp_path: Path):
    from osteomet.data.manifest import read_manifest
    from osteomet.pipeline.radiomics import extract_features
    from osteomet.pipeline.rigour import feature_stability
    from osteomet.radiomics.stability import perturb_mask

    cohort = read_manifest(mri_cohort)
    train = [r for r in cohort if r.split == "train"]
    assert len(train) >= 3
    segdir = tmp_path / "seg"
    (segdir / "reviewed").mkdir(parents=True)
    for record in cohort:
        shutil.copy(record.mask, segdir / "reviewed" / f"{record.patient_id}.nii.gz")
        # the "UNETR proposal" is the reviewed mask eroded by one voxel: its features are the erode perturbation's
        perturb_mask(record.mask, "erode", segdir / "auto" / f"{record.patient_id}.nii.gz")
    extract_features(mri_cohort, tmp_path / "radiomics", params="tiny", segdir=segdir)
    outcome = feature_stability(mri_cohort, tmp_path / "radiomics" / "features.parquet", tmp_path / "stability",
                                params="tiny", perturbations=["erode"], segdir=segdir)
    table = pd.read_csv(tmp_path / "stability" / "icc.csv")
    assert outcome.summary["perturbations"] == ["erode", "auto_vs_reviewed"]
    assert outcome.summary["patients"] == len(train)
    np.testing.assert_allclose(table["icc_auto_vs_reviewed"], table["icc_erode"], rtol=0, atol=1e-12)
    assert (table["icc"] == table[["icc_erode", "icc_auto_vs_reviewed"]].min(axis=1)).all()


def test_a_training_patient_whose_unetr_mask_came_out_empty_is_left_out_not_fatal(mri_cohort: Path, tmp_path: Path):
    """Real UNETR output: a tiny model can return an empty mask; extraction reports it, stability skips it."""
    import SimpleITK as sitk

    from osteomet.data.manifest import read_manifest, with_absolute_paths, write_manifest
    from osteomet.pipeline.radiomics import extract_features
    from osteomet.pipeline.rigour import feature_stability

    frame = with_absolute_paths(read_manifest(mri_cohort).to_frame(), "mri").assign(split="train")
    manifest = write_manifest(frame, tmp_path / "manifest.csv", kind="mri")  # every patient in training
    cohort = read_manifest(manifest)
    train = cohort.patient_ids
    segdir = tmp_path / "seg"
    (segdir / "auto").mkdir(parents=True)
    for record in cohort:
        shutil.copy(record.mask, segdir / "auto" / f"{record.patient_id}.nii.gz")
    empty = sitk.ReadImage(str(segdir / "auto" / f"{train[0]}.nii.gz"))
    sitk.WriteImage(empty * 0, str(segdir / "auto" / f"{train[0]}.nii.gz"))
    extract_features(manifest, tmp_path / "radiomics", params="tiny", segdir=segdir)
    outcome = feature_stability(manifest, tmp_path / "radiomics" / "features.parquet", tmp_path / "stability",
                                params="tiny", perturbations=["erode"], segdir=segdir)
    assert outcome.summary["patients"] == len(train) - 1
    assert (pd.read_csv(tmp_path / "stability" / "icc.csv")["n"] <= len(train) - 1).all()
