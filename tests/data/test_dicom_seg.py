"""DICOM SEG of a predicted mask, read back with highdicom: frames land on the right source images."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from osteomet.data.dicom_seg import DicomSegUnavailable, seg_beside, write_dicom_seg
from osteomet.data.image_errors import ImageReadError
from osteomet.data.images import read_image
from tests.conftest import shared_path


def _box_mask(image: sitk.Image, slices: range) -> sitk.Image:
    array = np.zeros(sitk.GetArrayFromImage(image).shape, np.uint8)
    rows, cols = array.shape[1:]
    array[slices.start:slices.stop, rows // 3: rows // 2, cols // 3: cols // 2] = 1
    array[slices.start, rows // 3, cols // 3] = 0  # an asymmetric frame: a flipped frame would not match
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(image)
    return mask


def test_a_seg_of_the_real_prostatex_t2_references_the_slices_the_mask_is_on(tmp_path):
    import highdicom as hd

    series = shared_path("mri", "prostatex", "ProstateX-0000", "t2w")
    t2 = read_image(series)
    mask = _box_mask(t2, range(6, 9))
    path = write_dicom_seg(mask, series, tmp_path / "tumour.seg.dcm", label="prostate tumour")
    seg = hd.seg.segread(path)
    sources = {d.SOPInstanceUID: d for d in (pydicom.dcmread(f) for f in series.iterdir())}
    assert seg.SeriesInstanceUID != next(iter(sources.values())).SeriesInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == next(iter(sources.values())).SeriesInstanceUID
    expected = sitk.GetArrayFromImage(mask)
    seen = set()
    for index, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        z = t2.TransformPhysicalPointToIndex([float(v) for v in sources[uid].ImagePositionPatient])[2]
        seen.add(z)
        np.testing.assert_array_equal(seg.pixel_array[index], expected[z])  # the mask's slice, not a flipped one
    assert seen == {6, 7, 8}


def test_a_series_without_uids_and_a_nifti_source_skip_the_seg_with_a_reason(tmp_path):
    series = shared_path("ct", "totalseg_dicom", "ct")  # anonymised with its UIDs emptied
    ct = read_image(series)
    with pytest.raises(DicomSegUnavailable, match="no StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID"):
        write_dicom_seg(_box_mask(ct, range(2, 4)), series, tmp_path / "x.seg.dcm", label="bone lesion")
    sitk.WriteImage(_box_mask(ct, range(2, 4)), str(tmp_path / "mask.nii.gz"))
    path, note = seg_beside(tmp_path / "mask.nii.gz", shared_path("ct", "totalseg_example", "ct.nii.gz"),
                            tmp_path / "y.seg.dcm", label="bone lesion")
    assert path is None and "is not a DICOM series" in note
    assert not (tmp_path / "x.seg.dcm").exists() and not (tmp_path / "y.seg.dcm").exists()


def test_a_mask_on_another_grid_is_refused(tmp_path):
    series = shared_path("mri", "prostatex", "ProstateX-0000", "t2w")
    adc = read_image(shared_path("mri", "prostatex", "ProstateX-0000", "adc"))
    with pytest.raises(ImageReadError, match="not on the grid of this DICOM series"):
        write_dicom_seg(_box_mask(adc, range(2, 4)), series, tmp_path / "x.seg.dcm", label="tumour")
