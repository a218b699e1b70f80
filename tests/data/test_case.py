"""Loading a patient: DWI/ADC onto T2 in physical space, errors that name the patient."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from osteomet.data.case import CaseError, load_mri_case
from osteomet.data.io import Geometry, write_image
from osteomet.data.manifest import read_manifest, validate_frame


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
