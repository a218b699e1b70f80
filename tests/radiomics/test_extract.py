"""Extraction: real pyradiomics values, sequence prefixes, cache, failures, Dask."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from osteomet.data.images import write_image
from osteomet.data.manifest import read_manifest
from osteomet.radiomics.params import load_params
from osteomet.radiomics.runner import extract_cohort, write_features


@pytest.fixture(scope="module")
def params():
    return load_params("tiny")


@pytest.fixture(scope="module")
def cohort(mri_cohort: Path, tmp_path_factory):
    """A private copy of four synthetic patients (tests below edit files)."""
    folder = tmp_path_factory.mktemp("rad_cohort")
    shutil.copytree(mri_cohort.parent, folder, dirs_exist_ok=True)
    manifest = read_manifest(folder / "manifest.csv")
    manifest.records = manifest.records[:4]
    return manifest


@pytest.fixture(scope="module")
def first_run(cohort, params, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return cache, extract_cohort(cohort, params, cache_dir=cache)


def test_features_match_a_direct_pyradiomics_call(cohort, params, first_run):
    from radiomics import featureextractor

    _, result = first_run
    assert result.n_extracted == 4 and not result.failures
    record = cohort.records[1]
    t2 = sitk.ReadImage(str(record.t2), sitk.sitkFloat32)
    adc = sitk.Resample(sitk.ReadImage(str(record.adc), sitk.sitkFloat32), t2, sitk.Transform(), sitk.sitkLinear, 0.0)
    mask = sitk.ReadImage(str(record.mask))
    extractor = featureextractor.RadiomicsFeatureExtractor(params)
    row = result.table.set_index("patient_id").loc[record.patient_id]
    for sequence, image in (("t2", t2), ("adc", adc)):
        direct = {k: float(v) for k, v in extractor.execute(image, mask, label=1).items() if not k.startswith("diag")}
        for name in ("original_firstorder_Mean", "original_glcm_Contrast"):
            assert row[f"{sequence}_{name}"] == pytest.approx(direct[name], rel=1e-9)
        if sequence == "t2":  # shape depends on the mask only: reported once, with T2
            assert row["t2_original_shape_VoxelVolume"] == pytest.approx(direct["original_shape_VoxelVolume"])
    assert not [c for c in result.table.columns if "_shape_" in c and not c.startswith("t2_")]
    prefixes = {c.split("_", 1)[0] for c in result.table.columns if c not in ("patient_id", "error")}
    assert prefixes == {"t2", "dwi", "adc"}
    assert not any("diagnostics" in c for c in result.table.columns)


def test_rerun_extracts_nothing_and_gives_the_same_table(cohort, params, first_run):
    cache, result = first_run
    again = extract_cohort(cohort, params, cache_dir=cache)
    assert again.n_extracted == 0 and again.n_cached == 4
    pd.testing.assert_frame_equal(again.table, result.table)


def test_changed_parameters_or_mask_invalidate_exactly_what_changed(cohort, params, first_run, tmp_path):
    cache, _ = first_run
    changed = {**params, "setting": {**params["setting"], "binWidth": 20}}
    assert extract_cohort(cohort, changed, cache_dir=cache).n_extracted == 4
    records = list(cohort.records)
    mask = sitk.ReadImage(str(records[2].mask))
    array = sitk.GetArrayFromImage(mask)
    z, y, x = np.argwhere(array)[0]
    array[z, y, x] = 0  # a radiologist removes one voxel (in a copy: other tests use the original)
    edited = sitk.GetImageFromArray(array)
    edited.CopyInformation(mask)
    records[2] = records[2].model_copy(update={"mask": write_image(edited, tmp_path / "edited_mask.nii.gz")})
    moved = tmp_path / "moved" / "same_mask.nii.gz"  # same content elsewhere: still a cache hit
    moved.parent.mkdir()
    shutil.copy(records[3].mask, moved)
    records[3] = records[3].model_copy(update={"mask": moved})
    rerun = extract_cohort(type(cohort)(kind="mri", records=records), params, cache_dir=cache)
    assert rerun.log["status"].tolist() == ["cached", "cached", "extracted", "cached"]


def test_a_failing_case_is_reported_and_does_not_stop_the_others(cohort, params, tmp_path):
    records = list(cohort.records)
    empty = sitk.ReadImage(str(records[0].mask)) * 0
    records[0] = records[0].model_copy(update={"mask": write_image(empty, tmp_path / "empty_mask.nii.gz")})
    broken = tmp_path / "broken_adc.nii.gz"
    broken.write_bytes(b"not an image")
    records[1] = records[1].model_copy(update={"adc": broken})
    manifest = type(cohort)(kind="mri", records=records)
    result = extract_cohort(manifest, params, cache_dir=tmp_path / "cache")
    assert [pid for pid, _ in result.failures] == [records[0].patient_id, records[1].patient_id]
    errors = dict(result.failures)
    assert "empty_mask.nii.gz: mask is empty" in errors[records[0].patient_id]
    assert "broken_adc.nii.gz: cannot be read" in errors[records[1].patient_id]
    assert result.table["error"].notna().sum() == 2
    assert result.table.loc[2:, "t2_original_firstorder_Mean"].notna().all()
    report = result.failure_report()
    assert report.startswith("2 of 4 case(s) failed") and records[1].patient_id in report
    paths = write_features(result, tmp_path / "out")
    assert pd.read_parquet(paths["parquet"]).shape == result.table.shape


def test_dask_cluster_by_scheduler_address_gives_the_same_features(cohort, params, first_run, tmp_path):
    from dask.distributed import LocalCluster

    _, reference = first_run
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        result = extract_cohort(cohort, params, cache_dir=tmp_path / "cache", scheduler=cluster.scheduler_address)
    assert result.n_extracted == 4
    pd.testing.assert_frame_equal(result.table, reference.table)


def test_temporary_files_a_killed_run_left_in_the_cache_are_removed_on_the_next_run(cohort, params, first_run,
                                                                                      tmp_path):
    import os
    import time

    from osteomet.radiomics.cache import STALE_AFTER_S
    from osteomet.utils.files import temporary_sibling

    cache_src, _ = first_run
    cache = tmp_path / "cache"
    shutil.copytree(cache_src, cache)
    entry = min(cache.glob("*.parquet"))
    # what a SIGKILL during FeatureCache.put leaves: the atomic writers' hidden temporary names, 0 bytes
    stale = [temporary_sibling(entry), temporary_sibling(entry.with_suffix(".json"))]
    fresh = temporary_sibling(sorted(cache.glob("*.parquet"))[1])  # as if another run were writing it now
    unrelated = cache / ".keep.tmp-notours"  # not a name the atomic writers make
    for path in (*stale, fresh, unrelated):
        path.touch()
    an_hour_ago = time.time() - 3600
    for path in (*stale, unrelated):
        os.utime(path, (an_hour_ago, an_hour_ago))
    assert an_hour_ago < time.time() - STALE_AFTER_S
    result = extract_cohort(cohort, params, cache_dir=cache)
    assert sorted(result.stale_removed) == sorted(stale)
    assert not any(p.exists() for p in stale) and fresh.exists() and unrelated.exists()
    assert result.n_cached == 4 and result.n_extracted == 0  # the real entries were left alone
    assert extract_cohort(cohort, params, cache_dir=cache).stale_removed == []


def test_an_interrupt_closes_the_cluster_and_says_how_far_it_got(cohort, params, tmp_path, monkeypatch):
    """Ctrl-C while results arrive: ExtractionInterrupted (a KeyboardInterrupt) with the count; the cache resumes."""
    from osteomet.radiomics.runner import ExtractionInterrupted

    calls = []

    def progress() -> None:
        calls.append(1)
        if len(calls) == 2:  # the second patient has just been cached
            raise KeyboardInterrupt

    with pytest.raises(ExtractionInterrupted) as info:
        extract_cohort(cohort, params, cache_dir=tmp_path / "cache", progress=progress)
    assert isinstance(info.value, KeyboardInterrupt)
    assert str(info.value) == "interrupted: 2 of 4 patients extracted and cached; rerun the same command to resume"
    assert (info.value.done, info.value.total) == (2, 4)
    rerun = extract_cohort(cohort, params, cache_dir=tmp_path / "cache")
    assert (rerun.n_cached, rerun.n_extracted) == (2, 2)


def test_largest_masks_go_first_by_their_true_voxel_count(cohort, tmp_path):
    """The cost estimate counts the mask's foreground (it once read a freed temporary image: noise or a crash)."""
    from osteomet.radiomics.runner import _mask_voxels

    for record in cohort.records:
        expected = int(np.count_nonzero(sitk.GetArrayFromImage(sitk.ReadImage(str(record.mask)))))
        assert {_mask_voxels(record.mask) for _ in range(20)} == {expected}
    empty = sitk.ReadImage(str(cohort.records[0].mask)) * 0
    path = write_image(empty, tmp_path / "empty.nii.gz")
    assert {_mask_voxels(path) for _ in range(20)} == {0}
    assert _mask_voxels(tmp_path / "missing.nii.gz") == 0


def test_choosing_another_series_of_a_folder_invalidates_the_cached_features(params, tmp_path):
    """A CT folder holding two series: the cache key includes ``ct_series_uid``, so choosing the other series
    extracts again (different features) instead of returning the first series' cached ones."""
    from osteomet.data.manifest import CTRecord, Manifest
    from osteomet.radiomics.cache import cache_key
    from osteomet.radiomics.extract import record_files
    from tests.ct.fixtures import write_dicom_series

    first, second = "1.2.826.0.1.3680043.2.1125.1.99.1", "1.2.826.0.1.3680043.2.1125.1.99.3"
    hu = np.full((8, 24, 24), -1000, np.int16)
    hu[:, 4:20, 4:20] = 40
    hu[2:6, 8:16, 8:16] = 700  # the lesion
    mask = (hu == 700).astype(np.uint8)
    images = []
    for array in (hu, np.where(mask == 1, 1100, hu).astype(np.int16), mask):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((1.0, 1.0, 2.0))
        images.append(image)
    folder = write_dicom_series(images[0], tmp_path / "two_series")
    write_dicom_series(images[1], folder, series_uid=second, prefix="other")
    chosen = CTRecord(patient_id="C1", ct=folder, lesion_mask=write_image(images[2], tmp_path / "lesion.nii.gz"),
                      ct_series_uid=first)
    other = chosen.model_copy(update={"ct_series_uid": second})
    key = {r.ct_series_uid: cache_key([(role, path, r.series_uid(role)) for role, path in record_files(r)], "p")
           for r in (chosen, other)}
    assert key[first] != key[second]
    cache = tmp_path / "cache"
    result = extract_cohort(Manifest(kind="ct", records=[chosen]), params, cache_dir=cache)
    assert result.log["status"].tolist() == ["extracted"]
    assert extract_cohort(Manifest(kind="ct", records=[chosen]), params, cache_dir=cache).n_cached == 1
    rerun = extract_cohort(Manifest(kind="ct", records=[other]), params, cache_dir=cache)
    assert rerun.log["status"].tolist() == ["extracted"]
    mean = "ct_original_firstorder_Mean"
    assert rerun.table.loc[0, mean] > result.table.loc[0, mean]  # the denser lesion of the second series


def test_a_degenerate_mask_is_a_patient_error_in_words_with_pyradiomics_text_kept():
    """A one-voxel-thick line (what a collapsing network outputs) makes pyradiomics raise a bare ValueError."""
    import numpy as np
    import SimpleITK as sitk

    from osteomet.radiomics.extract import patient_error
    from radiomics import featureextractor

    image = sitk.GetImageFromArray(np.random.default_rng(0).normal(100, 10, (12, 12, 12)).astype(np.float32))
    line = np.zeros((12, 12, 12), np.uint8)
    line[6, 6, 2:9] = 1
    mask = sitk.GetImageFromArray(line)
    mask.CopyInformation(image)
    extractor = featureextractor.RadiomicsFeatureExtractor(
        {"setting": {"minimumROIDimensions": 2}, "featureClass": {"firstorder": ["Mean"]}})
    with pytest.raises(ValueError) as raised:
        extractor.execute(image, mask)
    reason = patient_error(raised.value)
    assert reason.startswith("the mask is too thin for radiomics") and str(raised.value) in reason
    assert patient_error(OSError("disk")) == "OSError: disk"
