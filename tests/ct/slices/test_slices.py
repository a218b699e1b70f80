"""Slice dataset: bone window, HU checks, native grid and bone crop, labels, cache, patient split and its guard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from osteomet.ct.slices.cache import cache_case, cache_key, crop_box, load_case, prepare_ct, to_ct_geometry
from osteomet.ct.slices.config import SliceConfig
from osteomet.ct.slices.dataset import build_slice_dataset, class_balance, patient_splits, read_index
from osteomet.ct.slices.window import bone_window
from osteomet.data.case import CaseError, CTCase
from osteomet.data.geometry import Geometry
from osteomet.data.images import write_image
from osteomet.data.manifest import CTRecord, read_manifest
from osteomet.data.splits import SplitLeakageError
from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort
from tests.ct.fixtures import write_dicom_series


def record(ct: Path, mask: Path | None = None, bones: Path | None = None, pid: str = "P1") -> CTRecord:
    return CTRecord(patient_id=pid, ct=ct, lesion_mask=mask, bone_map=bones)


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
    hu = np.array([-1000, -500, 700, 1900, 3000, -50], np.float32)
    # default window: level 700, width 2400 -> -500 .. 1900 HU
    expected = np.clip((hu + 500) / 2400, 0, 1)
    assert np.allclose(bone_window(hu), expected)
    assert bone_window(hu)[2] == pytest.approx(0.5)
    assert np.allclose(bone_window(np.array([0.0, 50.0, 100.0]), level=50, width=100), [0.0, 0.5, 1.0])


def test_normalised_ct_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = small_ct(tmp_path, np.random.default_rng(0).random((4, 16, 16)).astype(np.float32), "normalised.nii.gz")
    # the HU check lives in load_ct_case, so every CT reader refuses it the same way, naming patient and file
    with pytest.raises(CaseError, match=r"P1.*normalised\.nii\.gz.*\[0, 1\]"):
        cache_case(tmp_path / "cache", record(path), SliceConfig())


def test_raw_stored_values_without_air_are_refused(tmp_path: Path) -> None:
    raw = np.random.default_rng(0).integers(0, 4096, (4, 16, 16)).astype(np.int16)
    path = small_ct(tmp_path, raw, "raw.nii.gz")
    with pytest.raises(CaseError, match=r"raw\.nii\.gz.*not in Hounsfield units"):
        cache_case(tmp_path / "cache", record(path), SliceConfig())


def test_mask_on_another_grid_names_both_files(tmp_path: Path) -> None:
    hu = np.full((4, 16, 16), -1000, np.int16)
    ct = small_ct(tmp_path, hu, "ct.nii.gz")
    mask = small_ct(tmp_path, np.zeros((4, 16, 16), np.uint8), "mask.nii.gz", spacing=(1.0, 1.0, 3.0))
    with pytest.raises(CaseError, match=r"P1.*mask\.nii\.gz.*ct\.nii\.gz.*spacing"):
        cache_case(tmp_path / "cache", record(ct, mask), SliceConfig())


# ---------------------------------------------------------------------------------------------
# grids and labels
# ---------------------------------------------------------------------------------------------


def _oblique_case() -> tuple[sitk.Image, sitk.Image]:
    """A CT stored flipped (direction -1 on x and y, like many NIfTI files) with a box lesion."""
    hu = np.full((12, 48, 40), -1000, np.float32)
    hu[:, 8:40, 6:34] = 40
    hu[:, 14:34, 12:28] = 500  # bone
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


def test_native_slices_are_cropped_to_bone_labelled_and_come_back_exactly() -> None:
    ct, mask = _oblique_case()
    config = SliceConfig(crop_margin_mm=3.0)
    arrays, meta = prepare_ct(CTCase("P1", ct, mask, None), config)
    # no bone map: the crop is the bounding box of HU >= 200 (the bone block, in the array reoriented to
    # LPS, which flips x and y) plus ceil(3 mm / pixel) pixels
    oriented = sitk.GetArrayFromImage(sitk.DICOMOrient(ct, "LPS"))
    ys, xs = np.nonzero((oriented >= 200).any(axis=0))
    my, mx = int(np.ceil(3.0 / 1.2)), int(np.ceil(3.0 / 1.5))
    assert meta["crop"] == [ys.min() - my, ys.max() + 1 + my, xs.min() - mx, xs.max() + 1 + mx]
    y0, y1, x0, x1 = meta["crop"]
    assert arrays["image"].shape == (12, y1 - y0, x1 - x0) and arrays["image"].dtype == np.float16
    # native resolution: the cached pixels are the CT's own pixels through the window, nothing resampled
    expected = np.clip((oriented[:, y0:y1, x0:x1] + 500) / 2400, 0, 1)
    assert np.allclose(arrays["image"].astype(np.float32), expected, atol=1e-3)
    # labels: slices 3..6 hold lesion voxels, the reference computed straight from the mask array
    truth = (sitk.GetArrayFromImage(mask).reshape(12, -1).sum(axis=1) > 0).astype(int)
    assert meta["labels"] == truth.tolist()
    # the cropped mask sent back lands exactly on the original mask, on the CT's own grid
    back = to_ct_geometry(arrays["mask"].astype(np.float32), meta)
    assert Geometry.of(back).differences(Geometry.of(ct)) == []
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(mask))


def test_bone_map_sets_the_crop_and_spacing_option_resamples_in_plane() -> None:
    ct, mask = _oblique_case()
    bones = sitk.Image(ct.GetSize(), sitk.sitkUInt16)
    bones.CopyInformation(ct)
    labels = np.zeros((12, 48, 40), np.uint16)
    labels[2:9, 20:28, 15:25] = 29  # vertebra L3; an organ label (5, liver) must not widen the crop
    labels[:, 0:4, 0:4] = 5
    bones = sitk.GetImageFromArray(labels)
    bones.CopyInformation(ct)
    arrays, meta = prepare_ct(CTCase("P1", ct, mask, bones), SliceConfig(crop_margin_mm=0.0))
    oriented = sitk.GetArrayFromImage(sitk.DICOMOrient(bones, "LPS"))
    ys, xs = np.nonzero((oriented == 29).any(axis=0))
    assert meta["crop"] == [ys.min(), ys.max() + 1, xs.min(), xs.max() + 1]
    assert arrays["bone"].sum() == (labels == 29).sum()
    # 3 mm pixels over the same field of view; slice positions unchanged
    arrays, meta = prepare_ct(CTCase("P1", ct, mask, None), SliceConfig(inplane_spacing_mm=3.0))
    grid = Geometry.from_dict(meta["slice_geometry"])
    assert grid.size[:2] == (20, 19) and grid.spacing[2] == pytest.approx(4.0)
    assert np.allclose(np.multiply(grid.size, grid.spacing)[:2], [40 * 1.5, 48 * 1.2], atol=1.5)
    back = to_ct_geometry(arrays["mask"].astype(np.float32), meta)
    a, b = sitk.GetArrayFromImage(back).astype(bool), sitk.GetArrayFromImage(mask).astype(bool)
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.8


def test_crop_box_of_an_empty_region_keeps_the_slice() -> None:
    assert crop_box(np.zeros((3, 10, 12), bool), (1.0, 1.0), 5.0) == [0, 10, 0, 12]


def test_dataset_cache_index_and_class_balance(cohort: Path, tmp_path: Path) -> None:
    manifest = read_manifest(cohort)
    config = SliceConfig()
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
    status = cache_case(tmp_path, manifest.get("CT001"), config.model_copy(update={"window_level": 300.0}))
    assert status == "processed"
    arrays, meta = load_case(tmp_path, "CT001")
    assert meta["config"]["window_level"] == 300.0


def test_choosing_another_series_of_the_folder_invalidates_the_cached_slices(tmp_path: Path) -> None:
    """A folder holding two CT series: the cache key includes the chosen series UID, so changing ``ct_series_uid``
    recomputes the slices from the other series instead of reusing stale ones."""
    first, second = "1.2.826.0.1.3680043.2.1125.1.99.1", "1.2.826.0.1.3680043.2.1125.1.99.3"
    ct, _ = _oblique_case()
    brighter = sitk.Cast(ct, sitk.sitkFloat32)
    brighter = brighter + sitk.Cast(brighter >= 200, sitk.sitkFloat32) * 600.0  # denser bone in the second series
    folder = write_dicom_series(ct, tmp_path / "two_series")
    write_dicom_series(brighter, folder, series_uid=second, prefix="other")
    cache, config = tmp_path / "cache", SliceConfig()
    chosen = CTRecord(patient_id="P1", ct=folder, ct_series_uid=first)
    other = chosen.model_copy(update={"ct_series_uid": second})
    assert cache_key(chosen, config) != cache_key(other, config)
    assert cache_case(cache, chosen, config) == "processed"
    assert cache_case(cache, chosen, config) == "cached"
    before = np.array(load_case(cache, "P1")[0]["image"], np.float32)
    assert cache_case(cache, other, config) == "processed"
    after = np.array(load_case(cache, "P1")[0]["image"], np.float32)
    assert after.shape == before.shape and after.max() > before.max()


def test_detection_and_segmentation_windows_share_one_cache_folder(cohort: Path, tmp_path: Path) -> None:
    """Two windows in one ``--cache`` folder: each keeps its own arrays, neither re-caches the other's patients."""
    from osteomet.ct.segmentation.config import load_segmentation_config
    from osteomet.ct.slices.cache import SliceStore, cache_cohort, settings_root
    from osteomet.ct.slices.run import cache_for_prediction, prepare_slice_run

    manifest = read_manifest(cohort)
    detection = SliceConfig(window_level=400, window_width=1800)
    segmentation = load_segmentation_config("tiny")
    assert segmentation.slices.window_level != detection.window_level
    cache = tmp_path / "shared_cache"
    # training: the segmentation run's slices; prediction: the detection run's, then the segmentation run's again
    root, _ = prepare_slice_run(manifest, tmp_path / "run", segmentation, cache=cache)
    assert root == settings_root(cache, segmentation.slices) and root.parent == cache
    det_root, _, det_patients = cache_for_prediction(manifest, tmp_path / "run", tmp_path / "pred", detection, cache=cache)
    assert det_root != root and (det_patients["status"] == "processed").all()
    again_root, _, again = cache_for_prediction(manifest, tmp_path / "run", tmp_path / "pred", segmentation.slices,
                                                cache=cache)
    assert again_root == root and (again["status"] == "cached").all()
    seg_image = np.asarray(SliceStore(root).array("CT001", "image"), np.float32)
    det_image = np.asarray(SliceStore(det_root).array("CT001", "image"), np.float32)
    assert seg_image.shape == det_image.shape and not np.allclose(seg_image, det_image)
    # a new split is not a new version of the arrays; a new window is
    assert settings_root(cache, segmentation.slices.model_copy(update={"split_seed": 7})) == root
    assert settings_root(cache, segmentation.slices.model_copy(update={"window_width": 2000.0})) != root
    _, rerun = cache_cohort(manifest, det_root, detection)
    assert (rerun["status"] == "cached").all()


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


def test_a_slice_index_with_a_patient_in_two_splits_is_refused_on_reading(tmp_path: Path) -> None:
    """read_index applies the project's one leakage check (osteomet.data.splits.check_no_leakage)."""
    pd.DataFrame({"patient_id": ["A", "A", "B", "B"], "slice": [0, 1, 0, 1], "label": [0, 1, 0, 0],
                  "split": ["train", "train", "train", "test"]}).to_csv(tmp_path / "index.csv", index=False)
    with pytest.raises(SplitLeakageError, match=r"B \(test/train\)"):
        read_index(tmp_path)


def test_class_balance_counts() -> None:
    index = pd.DataFrame({"patient_id": ["A"] * 3 + ["B"] * 2, "slice": [0, 1, 2, 0, 1],
                          "label": [0, 1, 1, 0, 0], "split": ["train"] * 5})
    row = class_balance(index).iloc[0]
    assert (row.patients, row.patients_with_lesion, row.slices, row.lesion_slices) == (2, 1, 5, 2)
    assert row.lesion_fraction == pytest.approx(0.4)


def test_paired_affine_moves_labels_with_their_image() -> None:
    import torch

    from osteomet.ct.slices.inputs import random_affine_pair, random_intensity

    labels = np.zeros((4, 1, 32, 32), np.int64)
    labels[:, :, 8:20, 10:24] = 1
    image = torch.from_numpy(np.repeat(labels.astype(np.float32), 3, axis=1))  # 3 channels equal to the mask
    y = torch.from_numpy(labels)
    same_x, same_y = random_affine_pair(image, y, np.random.default_rng(0), degrees=0.0, scale=0.0, shift=0.0)
    assert torch.allclose(same_x, image, atol=1e-6) and torch.equal(same_y, y)  # no transform: unchanged
    moved_x, moved_y = random_affine_pair(image, y, np.random.default_rng(1), degrees=30.0, scale=0.2, shift=0.2)
    assert moved_y.dtype == y.dtype and set(torch.unique(moved_y).tolist()) <= {0, 1}
    assert not torch.equal(moved_y, y)  # it did move
    agree = ((moved_x[:, 0] > 0.5).long() == moved_y[:, 0]).float().mean()
    assert agree > 0.97  # bilinear image and nearest labels differ only at the edge
    # the same seed gives the same transform (reruns and resumed runs see the same patches)
    again_x, again_y = random_affine_pair(image, y, np.random.default_rng(1), degrees=30.0, scale=0.2, shift=0.2)
    assert torch.equal(again_y, moved_y) and torch.equal(again_x, moved_x)
    jittered = random_intensity(image, np.random.default_rng(2), contrast=0.1, brightness=0.03)
    for i in range(4):  # one contrast and one brightness per image: x * c + b
        inside, outside = jittered[i][image[i] == 1], jittered[i][image[i] == 0]
        assert torch.allclose(inside, inside[0]) and torch.allclose(outside, outside[0])
        c, b = float(inside[0] - outside[0]), float(outside[0])
        assert 0.9 <= c <= 1.1 and -0.03 <= b <= 0.03
