"""Slice dataset: bone window, HU checks, in-plane resampling, labels, cache, patient split and its guard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from osteomet.ct.slices import (
    CTIntensityError,
    SliceConfig,
    SplitLeakageError,
    bone_window,
    build_slice_dataset,
    cache_case,
    check_patient_split,
    class_balance,
    load_case,
    patient_splits,
    prepare_ct,
    to_ct_geometry,
)
from osteomet.data.io import Geometry, GeometryMismatchError, write_image
from osteomet.data.manifest import read_manifest
from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort


def small_ct(tmp_path: Path, values: np.ndarray, name: str = "ct.nii.gz", spacing=(2.0, 2.0, 3.0)) -> Path:
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(spacing)
    return write_image(image, tmp_path / name)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ct_slices_cohort")
    return generate_ct_cohort(out, 10, seed=5, config=CTSynthConfig(region="abdomen_pelvis", inplane_size=64))


# ---------------------------------------------------------------------------------------------
# intensities
# ---------------------------------------------------------------------------------------------


def test_bone_window_maps_level_and_width_to_unit_interval() -> None:
    hu = np.array([-1000, -500, 400, 1300, 3000, -50], np.float32)
    # default window: level 400, width 1800 -> -500 .. 1300 HU
    expected = np.clip((hu + 500) / 1800, 0, 1)
    assert np.allclose(bone_window(hu), expected)
    assert bone_window(hu)[2] == pytest.approx(0.5)
    assert np.allclose(bone_window(np.array([0.0, 50.0, 100.0]), level=50, width=100), [0.0, 0.5, 1.0])


def test_normalised_ct_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = small_ct(tmp_path, np.random.default_rng(0).random((4, 16, 16)).astype(np.float32), "normalised.nii.gz")
    with pytest.raises(CTIntensityError, match=r"normalised\.nii\.gz.*\[0, 1\]"):
        cache_case(tmp_path / "cache", "P1", path, None, SliceConfig(inplane_size=16))


def test_raw_stored_values_without_air_are_refused(tmp_path: Path) -> None:
    raw = np.random.default_rng(0).integers(0, 4096, (4, 16, 16)).astype(np.int16)
    path = small_ct(tmp_path, raw, "raw.nii.gz")
    with pytest.raises(CTIntensityError, match=r"raw\.nii\.gz.*not in Hounsfield units"):
        cache_case(tmp_path / "cache", "P1", path, None, SliceConfig(inplane_size=16))


def test_mask_on_another_grid_names_both_files(tmp_path: Path) -> None:
    hu = np.full((4, 16, 16), -1000, np.int16)
    ct = small_ct(tmp_path, hu, "ct.nii.gz")
    mask = small_ct(tmp_path, np.zeros((4, 16, 16), np.uint8), "mask.nii.gz", spacing=(1.0, 1.0, 3.0))
    with pytest.raises(GeometryMismatchError, match=r"mask\.nii\.gz.*ct\.nii\.gz.*spacing"):
        cache_case(tmp_path / "cache", "P1", ct, mask, SliceConfig(inplane_size=16))


# ---------------------------------------------------------------------------------------------
# grids and labels
# ---------------------------------------------------------------------------------------------


def _oblique_case() -> tuple[sitk.Image, sitk.Image]:
    """A CT stored flipped (direction -1 on x and y, like many NIfTI files) with a box lesion."""
    hu = np.full((12, 48, 40), -1000, np.float32)
    hu[:, 8:40, 6:34] = 40
    mask = np.zeros(hu.shape, np.uint8)
    mask[3:7, 20:30, 10:22] = 1
    images = []
    for array in (hu, mask):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((1.5, 1.2, 4.0))
        image.SetOrigin((30.0, -20.0, 100.0))
        image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
        images.append(image)
    return images[0], images[1]


def test_slices_are_labelled_from_the_mask_and_come_back_on_the_ct_grid() -> None:
    ct, mask = _oblique_case()
    config = SliceConfig(inplane_size=32)
    arrays, meta = prepare_ct(ct, config, mask)
    assert arrays["image"].shape == (12, 32, 32) and arrays["image"].dtype == np.float16
    # labels: slices 3..6 hold lesion voxels, the reference computed straight from the mask array
    truth = (sitk.GetArrayFromImage(mask).reshape(12, -1).sum(axis=1) > 0).astype(int)
    assert meta["labels"] == truth.tolist()
    # same physical field of view, slice positions unchanged
    grid = Geometry.from_dict(meta["slice_geometry"])
    assert np.allclose(np.multiply(grid.size, grid.spacing)[:2], [40 * 1.5, 48 * 1.2])
    assert grid.spacing[2] == pytest.approx(4.0)
    # a mask sent to the slice grid and back lands on the CT grid, overlapping the original
    back = to_ct_geometry(arrays["mask"].astype(np.float32), meta)
    assert Geometry.of(back).differences(Geometry.of(ct)) == []
    a, b = sitk.GetArrayFromImage(back).astype(bool), sitk.GetArrayFromImage(mask).astype(bool)
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.85


def test_dataset_cache_index_and_class_balance(cohort: Path, tmp_path: Path) -> None:
    manifest = read_manifest(cohort)
    config = SliceConfig(inplane_size=64)
    index = build_slice_dataset(manifest, tmp_path, config)
    patients = pd.read_csv(tmp_path / "patients.csv")
    assert (patients["status"] == "processed").all()
    # labels equal the per-slice lesion count of each mask file
    for record in manifest:
        lesions = sitk.GetArrayFromImage(sitk.ReadImage(str(record.lesion_mask)))
        expected = (lesions.reshape(lesions.shape[0], -1).sum(axis=1) > 0).astype(int)
        got = index.loc[index["patient_id"] == record.patient_id, "label"].to_numpy(int)
        assert got.tolist() == expected.tolist()
    balance = pd.read_csv(tmp_path / "class_balance.csv").set_index("split")
    for split, part in index.groupby("split"):
        assert balance.loc[split, "slices"] == len(part)
        assert balance.loc[split, "lesion_slices"] == int(part["label"].sum())
        assert balance.loc[split, "patients"] == part["patient_id"].nunique()
    # second build: every patient from the cache, nothing rewritten
    stamp = (tmp_path / "cases" / "CT001" / "image.npy").stat().st_mtime_ns
    build_slice_dataset(manifest, tmp_path, config)
    assert (pd.read_csv(tmp_path / "patients.csv")["status"] == "cached").all()
    assert (tmp_path / "cases" / "CT001" / "image.npy").stat().st_mtime_ns == stamp
    # another window invalidates the cache
    status = cache_case(tmp_path, "CT001", manifest.get("CT001").ct, manifest.get("CT001").lesion_mask,
                        config.model_copy(update={"window_level": 300.0}))
    assert status == "processed"
    arrays, meta = load_case(tmp_path, "CT001")
    assert meta["config"]["window_level"] == 300.0


# ---------------------------------------------------------------------------------------------
# splits
# ---------------------------------------------------------------------------------------------


def test_split_is_by_patient_80_20_with_validation_from_train() -> None:
    n = 50
    patients = pd.DataFrame({"patient_id": [f"P{i:02d}" for i in range(n)], "split": [None] * n,
                             "label": [1] * 40 + [0] * 10})
    split = patient_splits(patients, SliceConfig())
    counts = split.value_counts()
    assert counts["test"] == 10  # 20% of 50
    assert counts["val"] == 8 and counts["train"] == 32  # 20% of the 40 training patients
    # stratified: both classes in every split, in proportion
    by = pd.crosstab(split, patients["label"])
    assert by.loc["test", 0] == 2 and by.loc["test", 1] == 8


def test_manifest_split_is_respected_and_val_drawn_from_train() -> None:
    patients = pd.DataFrame({"patient_id": [f"P{i}" for i in range(10)],
                             "split": ["train"] * 8 + ["test", "external"], "label": [1, 0] * 5})
    split = patient_splits(patients, SliceConfig(val_fraction=0.25))
    assert split.iloc[8] == "test" and split.iloc[9] == "external"
    assert (split.iloc[:8] == "val").sum() == 2 and (split.iloc[:8] == "train").sum() == 6
    partial = patients.assign(split=["train"] * 9 + [None])
    with pytest.raises(ValueError, match="P9"):
        patient_splits(partial, SliceConfig())


def test_guard_refuses_a_patient_in_two_splits() -> None:
    table = pd.DataFrame({"patient_id": ["A", "A", "B", "B", "C"], "slice": [0, 1, 0, 1, 0],
                          "split": ["train", "train", "train", "test", "val"]})
    with pytest.raises(SplitLeakageError, match=r"B \(test/train\)"):
        check_patient_split(table)
    check_patient_split(table[table["patient_id"] != "B"])  # clean table passes


def test_class_balance_counts() -> None:
    index = pd.DataFrame({"patient_id": ["A"] * 3 + ["B"] * 2, "slice": [0, 1, 2, 0, 1],
                          "label": [0, 1, 1, 0, 0], "split": ["train"] * 5})
    row = class_balance(index).iloc[0]
    assert (row.patients, row.patients_with_lesion, row.slices, row.lesion_slices) == (2, 1, 5, 2)
    assert row.lesion_fraction == pytest.approx(0.4)
