"""Writing a synthetic bpMRI cohort: truth table, same cohort whatever the number of jobs, formats, no overwrite."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from osteomet.data.images import read_image
from osteomet.data.label_masks import read_mask
from osteomet.data.manifest import read_manifest
from osteomet.data.synth.mri import MRISynthConfig, generate_mri_cohort


def test_truth_volumes_match_masks(mri_cohort: Path):
    truth = pd.read_csv(mri_cohort.parent / "truth.csv")
    for row in truth.itertuples():
        mask = read_mask(mri_cohort.parent / "labels" / f"{row.patient_id}_tumour.nii.gz")
        voxels = sitk.GetArrayViewFromImage(mask).sum() * np.prod(mask.GetSpacing()) / 1000
        assert voxels == pytest.approx(row.mask_volume_ml, rel=1e-6)
        if not row.epe:  # organ-confined tumours keep roughly their drawn volume
            assert 0.4 * row.tumour_volume_ml < row.mask_volume_ml < 1.8 * row.tumour_volume_ml


def test_same_seed_same_cohort_whatever_the_number_of_jobs(tmp_path: Path):
    config = MRISynthConfig(scale=0.15, slices=10)
    a = generate_mri_cohort(tmp_path / "a", 3, seed=11, config=config, jobs=1)
    b = generate_mri_cohort(tmp_path / "b", 3, seed=11, config=config, jobs=2)
    c = generate_mri_cohort(tmp_path / "c", 3, seed=12, config=config, jobs=1)
    assert pd.read_csv(a).drop(columns=[]).equals(pd.read_csv(b))
    for name in ("MRI001_t2", "MRI003_adc"):
        arr_a = sitk.GetArrayFromImage(read_image(a.parent / "images" / f"{name}.nii.gz"))
        arr_b = sitk.GetArrayFromImage(read_image(b.parent / "images" / f"{name}.nii.gz"))
        arr_c = sitk.GetArrayFromImage(read_image(c.parent / "images" / f"{name}.nii.gz"))
        assert np.array_equal(arr_a, arr_b)
        assert not np.array_equal(arr_a, arr_c) if arr_a.shape == arr_c.shape else True


def test_refuses_to_overwrite_an_existing_cohort(tmp_path: Path):
    config = MRISynthConfig(scale=0.15, slices=10)
    path = generate_mri_cohort(tmp_path, 1, seed=0, config=config)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="manifest.csv: a cohort already exists"):
        generate_mri_cohort(tmp_path, 1, seed=1, config=config)
    assert path.read_bytes() == before


def test_other_formats_are_written_and_read(tmp_path: Path):
    path = generate_mri_cohort(tmp_path, 1, config=MRISynthConfig(scale=0.15, slices=10, image_format="nrrd"))
    record = read_manifest(path).records[0]
    assert record.t2.name.endswith(".nrrd")
    read_mask(record.mask, reference=read_image(record.t2))
