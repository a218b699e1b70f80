"""A small synthetic cohort preprocessed into 32x32x16 ROI crops, and a 2x2x2 grid trained on it once."""

from __future__ import annotations

from pathlib import Path

import pytest

from osteomet.data.manifest import read_manifest
from osteomet.data.synth.mri import MRISynthConfig, generate_mri_cohort
from osteomet.mri.classifier.config import load_classifier_config
from osteomet.mri.preprocess import PreprocessConfig, preprocess_cohort

#: The tiny preset's 2 depths x 2 learning rates x 2 optimisers, two epochs each.
GRID = load_classifier_config("tiny").model_copy(update={"max_epochs": 2, "batch_size": 4})


@pytest.fixture(scope="session")
def roi_cohort(tmp_path_factory) -> tuple[Path, Path]:
    """(manifest, preprocessed folder) of 20 synthetic patients: train, val, test and external."""
    root = tmp_path_factory.mktemp("deep_cohort")
    manifest = generate_mri_cohort(root / "cohort", 20, seed=5,
                                   config=MRISynthConfig(external_fraction=0.2, split_ratios=(0.45, 0.35, 0.2)))
    preprocess_cohort(read_manifest(manifest), root / "pre",
                      PreprocessConfig(seg_size=(64, 64, 16), roi_size=(32, 32, 16), roi_spacing=(2.0, 2.0, 4.0)))
    return manifest, root / "pre"


@pytest.fixture(scope="session")
def trained_grid(roi_cohort, tmp_path_factory):
    """The 2x2x2 grid run once, uninterrupted, in this process; returns (folder, table, winner, guard)."""
    from osteomet.mri.classifier.data import roi_patients
    from osteomet.mri.classifier.grid import run_grid
    from osteomet.mri.classifier.labels import LabelGuard

    manifest_path, pre = roi_cohort
    manifest = read_manifest(manifest_path)
    guard = LabelGuard.from_manifest(manifest)
    out = tmp_path_factory.mktemp("deep_grid") / "grid"
    table, winner = run_grid(pre, out, GRID, guard, roi_patients(pre, manifest))
    return out, table, winner, guard
