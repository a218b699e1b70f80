"""Feature stability: one-voxel mask perturbations checked by hand, and the ICC filter on real extractions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from osteomet.radiomics.stability import perturb_mask, stability_table, stable_features


def test_one_voxel_perturbation_is_in_plane_and_counted_by_hand(tmp_path: Path):
    array = np.zeros((4, 11, 11), np.uint8)
    array[1:3, 3:8, 3:8] = 1  # a 5x5 square on 2 slices: 50 voxels
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.5, 0.5, 4.0))
    sitk.WriteImage(image, str(tmp_path / "mask.nii.gz"))
    eroded = sitk.GetArrayFromImage(sitk.ReadImage(str(perturb_mask(tmp_path / "mask.nii.gz", "erode",
                                                                    tmp_path / "e.nii.gz"))))
    dilated = sitk.GetArrayFromImage(sitk.ReadImage(str(perturb_mask(tmp_path / "mask.nii.gz", "dilate",
                                                                     tmp_path / "d.nii.gz"))))
    assert eroded.sum() == 2 * 9 and dilated.sum() == 2 * 49  # 3x3 and 7x7 per slice
    assert not eroded[[0, 3]].any() and not dilated[[0, 3]].any()  # no through-plane change
    assert ((eroded <= array) & (array <= dilated)).all()
    tiny = np.zeros((3, 5, 5), np.uint8)
    tiny[1, 2, 2:4] = 1
    sitk.WriteImage(sitk.GetImageFromArray(tiny), str(tmp_path / "tiny.nii.gz"))
    assert perturb_mask(tmp_path / "tiny.nii.gz", "erode", tmp_path / "t.nii.gz") is None  # erodes away


@pytest.fixture(scope="module")
def extracted(mri_cohort: Path, tmp_path_factory) -> dict[str, pd.DataFrame]:
    """Real pyradiomics features of the synthetic cohort with its masks as given, eroded and dilated."""
    from osteomet.data.manifest import read_manifest
    from osteomet.radiomics.params import load_params
    from osteomet.radiomics.runner import extract_cohort
    from osteomet.radiomics.stability import perturbed_manifest

    out = tmp_path_factory.mktemp("stability")
    cohort = read_manifest(mri_cohort)
    params = load_params("tiny", modality="mri")
    tables = {"original": extract_cohort(cohort, params, cache_dir=out / "cache").table}
    for kind in ("erode", "dilate"):
        tables[kind] = extract_cohort(perturbed_manifest(cohort, kind, out / kind), params, cache_dir=out / "cache").table
    return {k: t[t["error"].isna()].set_index("patient_id") for k, t in tables.items()}


def test_filter_drops_a_feature_made_unstable_on_purpose_and_keeps_a_stable_one(extracted):
    from osteomet.evaluation.icc import icc

    original, erode, dilate = (extracted[k].copy() for k in ("original", "erode", "dilate"))
    stable = "adc_original_firstorder_Median"  # the tumour's ADC: one voxel of contour moves it little
    rng = np.random.default_rng(0)
    # planted: agrees with itself on the given masks, but any contour change replaces it by noise of the same spread
    unstable = "t2_original_firstorder_Planted"
    original[unstable] = original[stable]
    spread = original[stable].std()
    erode[unstable] = original[stable].mean() + rng.normal(0, spread, len(erode))
    dilate[unstable] = original[stable].mean() + rng.normal(0, spread, len(dilate))
    table = stability_table(original, {"erode": erode, "dilate": dilate}).set_index("feature")
    kept = stable_features(table.reset_index(), 0.75)
    assert stable in kept and unstable not in kept
    # the table's ICC is the lowest over the perturbations, each the ICC(2,1) of the two extractions
    pair = np.column_stack([original.loc[erode.index, stable], erode[stable]])
    assert table.loc[stable, "icc_erode"] == pytest.approx(icc(pair, "2,1").icc, abs=1e-12)
    assert table.loc[stable, "icc"] == min(table.loc[stable, "icc_erode"], table.loc[stable, "icc_dilate"])
    assert table.loc[unstable, "icc"] < 0.5
    assert table.loc[stable, "class"] == "firstorder" and table.loc[stable, "n"] == len(erode)
