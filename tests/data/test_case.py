"""Loading a patient: DWI/ADC onto T2 in physical space, the manifest's series UIDs, errors that name the patient."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from osteomet.data.case import CaseError, load_mri_case
from osteomet.data.geometry import Geometry
from osteomet.data.image_errors import ImageError
from osteomet.data.images import read_image, write_image
from osteomet.data.manifest import read_manifest, validate_frame
from tests.data.volumes import series_uid, truncate


def test_synthetic_case_lands_on_the_t2_grid(mri_cohort: Path):
    record = read_manifest(mri_cohort).records[0]
    case = load_mri_case(record, require_mask=True)
    t2_geometry = Geometry.of(case.t2)
    for image in (case.dwi, case.adc, case.mask):
        assert Geometry.of(image).differences(t2_geometry) == []
    tumour = sitk.GetArrayFromImage(case.mask).astype(bool)
    dwi = sitk.GetArrayFromImage(case.dwi)
    assert dwi[tumour].mean() > 2 * np.median(dwi[dwi > 0])  # bright tumour lands under the mask


def test_real_prostatex_case(prostatex: Path):
    folder = prostatex / "ProstateX-0000"
    frame = pd.DataFrame([{"patient_id": "ProstateX-0000", "t2": str(folder / "t2w"), "dwi": str(folder / "hbv"),
                           "adc": str(folder / "adc")}])
    record = validate_frame(frame, base_dir=folder).records[0]
    case = load_mri_case(record)
    assert case.adc.GetSize() == (384, 384, 19) and case.mask is None
    adc = sitk.GetArrayFromImage(case.adc)
    inside = adc[adc > 0]
    # ADC of prostate and pelvic tissue in 10^-6 mm2/s
    assert 500 < np.median(inside) < 2500
    with pytest.raises(CaseError, match="patient 'ProstateX-0000': no tumour mask"):
        load_mri_case(record, require_mask=True)


def test_mask_on_another_grid_names_patient_and_file(mri_cohort: Path, tmp_path: Path):
    record = read_manifest(mri_cohort).records[0]
    wrong = sitk.ReadImage(str(record.mask))
    wrong.SetOrigin([o + 10 for o in wrong.GetOrigin()])
    path = write_image(wrong, tmp_path / "moved_mask.nii.gz")
    moved = record.model_copy(update={"mask": path})
    with pytest.raises(CaseError, match=rf"patient '{record.patient_id}': .*moved_mask.nii.gz: not on the grid of"):
        load_mri_case(moved)


def test_truncated_image_in_a_cohort_fails_that_patient(tmp_path: Path, mri_cohort: Path):
    from osteomet.data.manifest import Manifest
    from osteomet.mri.preprocess import PreprocessConfig, preprocess_cohort

    records = read_manifest(mri_cohort).records
    cut = truncate(Path(records[0].t2), 0.9)
    bad = records[0].model_copy(update={"t2": cut})
    index = preprocess_cohort(Manifest(kind="mri", records=[bad, records[1]]), tmp_path / "out",
                              PreprocessConfig(seg_size=(32, 32, 16)))
    assert index["status"].tolist() == ["failed", "processed"]
    assert f"{cut.name}: file is truncated" in index.loc[0, "error"]


def test_manifest_series_uid_columns_reach_the_reader(two_series: Path, prostatex: Path, tmp_path: Path):
    t2_uid = series_uid(prostatex / "ProstateX-0000" / "t2w")
    adc_uid = series_uid(prostatex / "ProstateX-0000" / "adc")
    path = tmp_path / "manifest.csv"
    pd.DataFrame([{"patient_id": "ProstateX-0000", "t2": "mixed", "t2_series_uid": t2_uid, "dwi": str(prostatex / "ProstateX-0000" / "hbv"),
                   "adc": "mixed", "adc_series_uid": adc_uid}]).to_csv(path, index=False)
    manifest = read_manifest(path)
    assert manifest.extra_columns == []
    case = load_mri_case(manifest.records[0])
    assert case.t2.GetSize() == (384, 384, 19)
    native_adc = read_image(prostatex / "ProstateX-0000" / "adc", pixel_type=sitk.sitkFloat32)
    from osteomet.data.geometry import MIN_OVERLAP, Geometry, resample_to

    expected = resample_to(native_adc, Geometry.of(case.t2), min_overlap=MIN_OVERLAP)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(case.adc), sitk.GetArrayFromImage(expected))


def test_ct_manifest_series_uid_reaches_the_reader(tmp_path: Path, prostatex: Path):
    """The CT manifest's ct_series_uid column picks one of two real series in one folder."""
    from osteomet.data.case import load_ct_case
    from tests.conftest import shared_path

    ct_folder = shared_path("ct", "totalseg_dicom", "ct")
    folder = tmp_path / "ct"
    shutil.copytree(ct_folder, folder)
    for file in (prostatex / "ProstateX-0001" / "adc").iterdir():
        shutil.copy(file, folder / f"mr-{file.name}")
    path = tmp_path / "ct.csv"
    pd.DataFrame([{"patient_id": "C1", "ct": "ct"}]).to_csv(path, index=False)
    with pytest.raises(ImageError, match="patient 'C1': .*2 DICOM series in one folder"):
        load_ct_case(read_manifest(path).records[0])
    # this real CT series has an empty SeriesInstanceUID, so the other series is the one that can be named
    assert series_uid(ct_folder) == ""
    mr_uid = series_uid(prostatex / "ProstateX-0001" / "adc")
    pd.DataFrame([{"patient_id": "C1", "ct": "ct", "ct_series_uid": mr_uid}]).to_csv(path, index=False)
    # the named series (an MR ADC map) is the one read: the CT loader's HU check then refuses it as a CT
    expected = read_image(prostatex / "ProstateX-0001" / "adc", pixel_type=sitk.sitkFloat32)
    top = int(sitk.GetArrayViewFromImage(expected).max())
    with pytest.raises(ImageError, match=rf"patient 'C1': .*not in Hounsfield units: minimum 0 \(max {top}\)"):
        load_ct_case(read_manifest(path).records[0])
