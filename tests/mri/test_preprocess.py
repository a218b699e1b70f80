"""MRI preprocessing: invertible grids, ROI geometry, normalisation region, cache, real DICOM."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from osteomet.data.geometry import Geometry
from osteomet.data.grids import mask_bbox_centre, mask_to, same_extent_grid
from osteomet.data.images import read_image, write_image
from osteomet.data.label_masks import read_mask
from osteomet.data.manifest import read_manifest, validate_frame
from osteomet.mri.preprocess import PreprocessConfig, load_case, preprocess_case, preprocess_cohort, to_t2_geometry
from tests.data.volumes import mixed_series_folder


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def records(mri_cohort: Path):
    return read_manifest(mri_cohort).records


def test_mask_to_224x224x64_and_back_keeps_dice_above_095(records):
    for record in records[:4]:
        mask = read_mask(record.mask)
        grid = same_extent_grid(mask, (224, 224, 64))
        down = sitk.GetArrayFromImage(mask_to(mask, grid))
        back = to_t2_geometry(down, {"seg_geometry": grid.to_dict(), "t2_geometry": Geometry.of(mask).to_dict()})
        assert Geometry.of(back).differences(Geometry.of(mask)) == []
        assert _dice(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(mask)) > 0.95


def test_segmentation_grid_covers_the_same_physical_box(records):
    t2 = read_image(records[0].t2)
    grid = same_extent_grid(t2, (224, 224, 64))
    corners_old = [t2.TransformContinuousIndexToPhysicalPoint([-0.5, -0.5, -0.5]),
                   t2.TransformContinuousIndexToPhysicalPoint([s - 0.5 for s in t2.GetSize()])]
    image = grid.blank()
    corners_new = [image.TransformContinuousIndexToPhysicalPoint([-0.5, -0.5, -0.5]),
                   image.TransformContinuousIndexToPhysicalPoint([s - 0.5 for s in grid.size])]
    np.testing.assert_allclose(corners_old, corners_new, atol=1e-6)


def test_case_outputs_normalisation_and_roi_geometry(records):
    record = records[1]
    config = PreprocessConfig(seg_size=(96, 96, 32))
    arrays, transform = preprocess_case(record, config)
    assert arrays["seg_image"].shape == (3, 32, 96, 96) and arrays["seg_mask"].shape == (32, 96, 96)
    assert arrays["roi_image"].shape == (3, 32, 64, 64) and arrays["roi_mask"].shape == (32, 64, 64)
    assert transform["channels"] == ["dwi", "t2", "adc"]
    assert np.abs(arrays["seg_image"].astype(float)).max() <= 3.0 + 1e-3  # clipped at 3 SD
    for name, stats in transform["normalisation"].items():
        assert stats["sd"] > 0 and stats["n_voxels"] > 1000
    roi = Geometry.from_dict(transform["roi_geometry"])
    assert roi.size == (64, 64, 32) and roi.spacing == (1.0, 1.0, 3.0)
    # the ROI is centred on the mask's bounding box, in world coordinates
    image = roi.blank()
    centre = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in roi.size])
    np.testing.assert_allclose(centre, mask_bbox_centre(read_mask(record.mask)), atol=1e-6)
    assert transform["roi_mask_coverage"] == pytest.approx(1.0, abs=0.2)
    assert arrays["roi_mask"].sum() > 0


def test_roi_is_padded_at_the_border(records, tmp_path):
    """A tumour at the edge of the field of view gives a full-size ROI, zero-filled outside."""
    record = records[2]
    mask = read_mask(record.mask)
    array = np.zeros(sitk.GetArrayViewFromImage(mask).shape, np.uint8)
    array[array.shape[0] // 2, 1:4, 1:4] = 1  # corner of the T2 field of view
    edge = sitk.GetImageFromArray(array)
    edge.CopyInformation(mask)
    from osteomet.data.images import write_image

    edited = record.model_copy(update={"mask": write_image(edge, tmp_path / "edge.nii.gz")})
    arrays, _ = preprocess_case(edited, PreprocessConfig(seg_size=(64, 64, 16)))
    assert arrays["roi_image"].shape == (3, 32, 64, 64)
    assert (arrays["roi_image"][:, :, :5, :5] == 0).all()  # outside the image: padded
    assert arrays["roi_mask"].sum() > 0


def test_cache_skips_unchanged_cases_and_redoes_changed_ones(records, tmp_path):
    from osteomet.data.manifest import Manifest

    manifest = Manifest(kind="mri", records=list(records[:3]))
    config = PreprocessConfig(seg_size=(64, 64, 16))
    first = preprocess_cohort(manifest, tmp_path, config)
    assert first["status"].tolist() == ["processed"] * 3
    assert preprocess_cohort(manifest, tmp_path, config)["status"].tolist() == ["cached"] * 3
    changed = PreprocessConfig(seg_size=(64, 64, 16), clip_sd=2.5)
    assert preprocess_cohort(manifest, tmp_path, changed)["status"].tolist() == ["processed"] * 3
    arrays, transform = load_case(tmp_path, records[0].patient_id)
    assert transform["config"]["clip_sd"] == 2.5 and np.abs(arrays["seg_image"].astype(float)).max() <= 2.5 + 1e-3


def test_cache_key_keeps_its_value_across_the_shared_key_function(tmp_path):
    """The key is osteomet.utils.case_cache.cache_key now; caches written before keep being found (value pinned)."""
    from osteomet.data.manifest import MRIRecord
    from osteomet.mri.preprocess import cache_key

    for name in ("t2", "dwi", "adc"):
        (tmp_path / f"{name}.nii.gz").write_bytes(f"{name} bytes".encode())
    record = MRIRecord(patient_id="P1", t2=tmp_path / "t2.nii.gz", dwi=tmp_path / "dwi.nii.gz",
                       adc=tmp_path / "adc.nii.gz")
    assert cache_key(record, PreprocessConfig()) == "052da0c7407ed861cc225403ab68d1bab23eaebb20a239a71259db050540752a"


def test_choosing_another_series_of_a_folder_invalidates_the_case(prostatex: Path, tmp_path: Path):
    """A folder holding two series (real T2 and ADC): changing ``adc_series_uid`` recomputes the case."""

    from osteomet.data.manifest import Manifest, MRIRecord
    from osteomet.mri.preprocess import cache_key

    case = prostatex / "ProstateX-0000"
    mixed = mixed_series_folder(case, tmp_path / "mixed")
    uids = {kind: sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(case / kind))[0] for kind in ("t2w", "adc")}
    chosen = MRIRecord(patient_id="P1", t2=case / "t2w", dwi=case / "hbv", adc=mixed, adc_series_uid=uids["adc"])
    other = chosen.model_copy(update={"adc_series_uid": uids["t2w"]})
    config = PreprocessConfig(seg_size=(48, 48, 12))
    assert cache_key(chosen, config) != cache_key(other, config)
    out = tmp_path / "out"
    assert preprocess_cohort(Manifest(kind="mri", records=[chosen]), out, config)["status"].tolist() == ["processed"]
    assert preprocess_cohort(Manifest(kind="mri", records=[chosen]), out, config)["status"].tolist() == ["cached"]
    before = np.array(load_case(out, "P1")[0]["seg_image"][2], np.float32)
    assert preprocess_cohort(Manifest(kind="mri", records=[other]), out, config)["status"].tolist() == ["processed"]
    after = np.array(load_case(out, "P1")[0]["seg_image"][2], np.float32)
    assert not np.allclose(before, after)


def test_failing_case_is_reported_by_patient(records, tmp_path):
    from osteomet.data.manifest import Manifest

    broken = tmp_path / "broken_dwi.nii.gz"
    broken.write_bytes(b"garbage")
    bad = records[0].model_copy(update={"dwi": broken})
    index = preprocess_cohort(Manifest(kind="mri", records=[bad, records[1]]), tmp_path / "out",
                              PreprocessConfig(seg_size=(64, 64, 16)))
    assert index["status"].tolist() == ["failed", "processed"]
    assert "broken_dwi.nii.gz: cannot be read" in index.loc[0, "error"]


def test_real_prostatex_preprocesses_and_adc_lines_up_with_t2(prostatex: Path, tmp_path: Path):
    rows = [{"patient_id": case, "t2": str(prostatex / case / "t2w"), "dwi": str(prostatex / case / "hbv"),
             "adc": str(prostatex / case / "adc")} for case in ("ProstateX-0000", "ProstateX-0001")]
    manifest = validate_frame(pd.DataFrame(rows), base_dir=prostatex)
    index = preprocess_cohort(manifest, tmp_path, PreprocessConfig(seg_size=(96, 96, 32)))
    assert index["status"].tolist() == ["processed", "processed"] and not index["has_mask"].any()
    for case in ("ProstateX-0000", "ProstateX-0001"):
        arrays, transform = load_case(tmp_path, case)
        seg = Geometry.from_dict(transform["seg_geometry"]).blank()
        adc = read_image(prostatex / case / "adc")
        adc_channel = np.asarray(arrays["seg_image"][2], dtype=float)
        inside_checked = outside_checked = 0
        rng = np.random.default_rng(1)
        for _ in range(3000):
            i, j, k = (int(rng.integers(0, s)) for s in seg.GetSize())
            point = seg.TransformIndexToPhysicalPoint((i, j, k))
            cont = np.asarray(adc.TransformPhysicalPointToContinuousIndex(point))
            margin = 2.0  # stay clear of the interpolated edge of the ADC field of view
            if np.all(cont > margin) and np.all(cont < np.asarray(adc.GetSize()) - 1 - margin):
                inside_checked += 1
                assert adc_channel[k, j, i] != 0.0
            elif np.any(cont < -margin) or np.any(cont > np.asarray(adc.GetSize()) - 1 + margin):
                outside_checked += 1
                assert adc_channel[k, j, i] == 0.0
        assert inside_checked > 200 and outside_checked > 200


def _box_centre_mm(image: sitk.Image, lo_xyz, hi_xyz) -> np.ndarray:
    """World centre of an index box (inclusive corners), by hand."""
    return np.array(image.TransformContinuousIndexToPhysicalPoint([(a + b) / 2 for a, b in zip(lo_xyz, hi_xyz)]))


@pytest.mark.parametrize("grades, expected", [((2, 4), "small"), ((1, 1), "large"), ((3, 3), "large")])
def test_roi_centred_on_the_index_lesion(records, tmp_path, grades, expected):
    """Several lesions: highest label (ISUP grade) first, then the largest; the choice is recorded."""
    record = records[3]
    t2 = read_image(record.t2)
    nz, ny, nx = sitk.GetArrayViewFromImage(t2).shape
    labels = np.zeros((nz, ny, nx), np.uint8)
    boxes = {"large": ((2, 3, nz // 2 - 1), (9, 10, nz // 2 + 1)), "small": ((nx - 8, ny - 7, nz // 2), (nx - 6, ny - 5, nz // 2))}
    for (lo, hi), grade in zip(boxes.values(), grades):
        labels[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] = grade
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(t2)
    edited = record.model_copy(update={"mask": write_image(mask, tmp_path / "lesions.nii.gz")})
    _, transform = preprocess_case(edited, PreprocessConfig(seg_size=(64, 64, 16)))
    np.testing.assert_allclose(transform["roi_centre_mm"], _box_centre_mm(t2, *boxes[expected]), atol=1e-6)
    lesion = transform["roi_lesion"]
    assert lesion["n_lesions"] == 2 and "highest label" in lesion["rule"]
    chosen = lesion["lesions"][lesion["chosen"]]
    lo, hi = boxes[expected]
    assert chosen["voxels"] == int(np.prod(np.array(hi) - np.array(lo) + 1))
    assert chosen["label"] == grades[list(boxes).index(expected)]
    assert transform["roi_mask_coverage"] == pytest.approx(1.0, abs=0.35)  # of the chosen lesion


def test_real_prostatex_with_picai_like_masks(prostatex: Path, tmp_path: Path):
    """Real DICOM T2 + NIfTI ISUP-labelled masks whose header is 4e-4 off: processed, ROI on the grade-5 lesion."""
    from tests.data.annotations import picai_like_labels, rotation, write_nifti_mask

    rows = []
    for case in ("ProstateX-0000", "ProstateX-0001"):
        t2 = read_image(prostatex / case / "t2w")
        labels = picai_like_labels(t2, [((0.5, 0.55, 0.5), 8.0, 2), ((0.4, 0.6, 0.6), 4.0, 5)])
        mask = write_nifti_mask(tmp_path / f"{case}.nii.gz", labels, t2, rotation([0, 0, 1], 4e-4))
        rows.append({"patient_id": case, "t2": str(prostatex / case / "t2w"), "dwi": str(prostatex / case / "hbv"),
                     "adc": str(prostatex / case / "adc"), "mask": str(mask)})
    manifest = validate_frame(pd.DataFrame(rows), base_dir=prostatex)
    index = preprocess_cohort(manifest, tmp_path / "out", PreprocessConfig(seg_size=(64, 64, 16)))
    assert index["status"].tolist() == ["processed", "processed"], index["error"].tolist()
    assert index["has_mask"].all()
    for case in ("ProstateX-0000", "ProstateX-0001"):
        _, transform = load_case(tmp_path / "out", case)
        lesion = transform["roi_lesion"]
        assert lesion["n_lesions"] == 2 and lesion["lesions"][lesion["chosen"]]["label"] == 5
        np.testing.assert_allclose(transform["roi_centre_mm"], lesion["lesions"][lesion["chosen"]]["centre_mm"])
