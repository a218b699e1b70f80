"""Broken inputs are refused with one message naming the file: truncated NIfTI, NaN voxels,
DICOM series with a missing slice or several series; the CLI exits with code 2."""

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.data.case import load_mri_case
from osteomet.data.io import ImageError, ImageReadError, MaskError, read_image, read_mask, write_image
from osteomet.data.manifest import read_manifest

runner = CliRunner()


def _volume(shape=(12, 20, 24)) -> sitk.Image:
    array = np.random.default_rng(1).normal(300, 50, shape).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.7, 3.0))
    image.SetOrigin((-8.0, 4.0, 20.0))
    return image


def _truncate(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    cut = path.with_name(f"cut{int(fraction * 100)}_{path.name}")
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


# --- item 1: truncated NIfTI -------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_nifti_is_refused_naming_the_file(tmp_path: Path, suffix: str, fraction: float):
    image = _volume()
    whole = write_image(image, tmp_path / f"t2{suffix}")  # written by SimpleITK, as the pipeline does
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(whole)), sitk.GetArrayFromImage(image))
    cut = _truncate(whole, fraction)
    with pytest.raises(ImageReadError, match=rf"{cut.name}: file is truncated: the header promises {image.GetNumberOfPixels() * 4} bytes"):
        read_image(cut)


def test_gzip_cut_in_its_trailer_or_corrupted_is_refused(tmp_path: Path):
    whole = write_image(_volume(), tmp_path / "t2.nii.gz")
    data = whole.read_bytes()
    cut = tmp_path / "trailer.nii.gz"
    cut.write_bytes(data[:-4])  # every voxel there, the gzip CRC/length trailer cut short
    with pytest.raises(ImageReadError, match="trailer.nii.gz: file is truncated: the gzip stream ends"):
        read_image(cut)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    bad = tmp_path / "flipped.nii.gz"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(ImageReadError, match="flipped.nii.gz: "):
        read_image(bad)


def test_multi_member_gzip_nifti_still_reads(tmp_path: Path):
    """gzip allows several members back to back (e.g. from pigz or cat); the file is whole."""
    raw = write_image(_volume(), tmp_path / "t2.nii")
    data = raw.read_bytes()
    two = tmp_path / "two.nii.gz"
    two.write_bytes(gzip.compress(data[:1000]) + gzip.compress(data[1000:]))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(two)), sitk.GetArrayFromImage(read_image(raw)))


def test_truncated_image_in_a_cohort_fails_that_patient(tmp_path: Path, mri_cohort: Path):
    from osteomet.data.manifest import Manifest
    from osteomet.mri.preprocess import PreprocessConfig, preprocess_cohort

    records = read_manifest(mri_cohort).records
    cut = _truncate(Path(records[0].t2), 0.9)
    bad = records[0].model_copy(update={"t2": cut})
    index = preprocess_cohort(Manifest(kind="mri", records=[bad, records[1]]), tmp_path / "out",
                              PreprocessConfig(seg_size=(32, 32, 16)))
    assert index["status"].tolist() == ["failed", "processed"]
    assert f"{cut.name}: file is truncated" in index.loc[0, "error"]


# --- item 2: NaN in NIfTI ----------------------------------------------------------------

def _nibabel_nifti(path: Path, array_xyz: np.ndarray, slope: float | None = None) -> Path:
    image = nib.Nifti1Image(array_xyz, np.diag([0.7, 0.7, 3.0, 1.0]))
    if slope is not None:
        image.header.set_slope_inter(slope, 10.0)
    nib.save(image, str(path))
    return path


@pytest.mark.parametrize("slope", [None, 2.0])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nan_in_nifti_is_counted_and_refused(tmp_path: Path, slope, suffix):
    array = np.random.default_rng(2).normal(size=(24, 20, 12)).astype(np.float32)  # x, y, z as nibabel stores
    for x, y, z in [(5, 3, 2), (6, 3, 2), (1, 19, 11)]:
        array[x, y, z] = np.nan
    path = _nibabel_nifti(tmp_path / f"adc{suffix}", array, slope)
    assert np.isnan(nib.load(str(path)).get_fdata()).sum() == 3  # the peer library sees them
    with pytest.raises(ImageError, match=rf"adc{suffix}: 3 voxels are NaN or infinite \(first at voxel x,y,z=\(5, 3, 2\)\)"):
        read_image(path)


def test_integer_nifti_with_scaling_reads_and_infinite_float_is_refused(tmp_path: Path):
    counts = np.arange(24 * 20 * 12, dtype=np.int16).reshape(24, 20, 12) % 1000
    path = _nibabel_nifti(tmp_path / "scaled.nii.gz", counts, slope=0.5)
    values = sitk.GetArrayFromImage(read_image(path)).transpose(2, 1, 0)
    np.testing.assert_allclose(values, nib.load(str(path)).get_fdata(), rtol=1e-6)
    floats = counts.astype(np.float32)
    floats[0, 0, 0] = np.inf
    with pytest.raises(ImageError, match=r"inf.nii.gz: 1 voxels are NaN or infinite"):
        read_image(_nibabel_nifti(tmp_path / "inf.nii.gz", floats))


def test_nan_checked_before_any_cast(tmp_path: Path):
    array = np.ones((4, 5, 6), np.float32)
    array[2, 1, 0] = np.nan
    path = write_image(sitk.GetImageFromArray(array), tmp_path / "nan.mha")
    with pytest.raises(ImageError, match=r"nan.mha: 1 voxels are NaN"):
        read_image(path, pixel_type=sitk.sitkUInt8)
    mask = np.zeros((24, 20, 12), np.float32)
    mask[4:8, 4:8, 4:6] = 1
    mask[0, 0, 0] = np.nan
    with pytest.raises(ImageError, match=r"mask.nii.gz: 1 voxels are NaN"):
        read_mask(_nibabel_nifti(tmp_path / "mask.nii.gz", mask))


# --- item 3: DICOM series with a missing slice -------------------------------------------

def _slice_position(path: Path) -> float:
    """Position of one DICOM file along its slice normal, from its own header."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    ipp = np.array(reader.GetMetaData("0020|0032").split("\\"), float)
    iop = np.array(reader.GetMetaData("0020|0037").split("\\"), float)
    return float(ipp @ np.cross(iop[:3], iop[3:]))


@pytest.fixture()
def gapped_t2(prostatex: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A copy of the real ProstateX-0000 T2 series with its 10th file (of 19) removed."""
    original = prostatex / "ProstateX-0000" / "t2w"
    copy = tmp_path / "t2w"
    shutil.copytree(original, copy)
    removed = sorted(copy.iterdir())[9]
    removed.unlink()
    return original, copy, original / removed.name


def test_dicom_series_with_a_missing_slice_is_refused(gapped_t2):
    _, copy, removed = gapped_t2
    with pytest.raises(ImageReadError) as info:
        read_image(copy)
    message = str(info.value)
    assert message.startswith(f"{copy}: slice spacing is not uniform")
    assert "1 slice(s) missing" in message and f"at {_slice_position(removed):.2f} mm" in message
    assert "allow_gaps" in message


def test_dicom_gap_resampled_onto_even_slices_when_asked(gapped_t2, caplog):
    original, copy, removed = gapped_t2
    full = read_image(original, pixel_type=sitk.sitkFloat32)
    with caplog.at_level("WARNING", logger="osteomet.data.io"):
        filled = read_image(copy, allow_gaps=True)
    assert "resampled onto 19 evenly spaced slices" in caplog.text.lower()
    assert filled.GetSize() == full.GetSize()
    np.testing.assert_allclose(filled.GetSpacing(), full.GetSpacing(), atol=1e-6)  # 3.0 mm, not ITK's 3.18
    np.testing.assert_allclose(filled.GetOrigin(), full.GetOrigin(), atol=1e-6)
    a, b = sitk.GetArrayFromImage(filled), sitk.GetArrayFromImage(full)
    missing = [k for k in range(19) if not np.array_equal(a[k], b[k])]
    assert len(missing) == 1  # every real slice is kept at its true place, unchanged
    k = missing[0]
    point = full.TransformIndexToPhysicalPoint((0, 0, k))
    normal = np.array(full.GetDirection()).reshape(3, 3)[:, 2]
    assert float(np.dot(point, normal)) == pytest.approx(_slice_position(removed), abs=1e-3)
    np.testing.assert_allclose(a[k], (b[k - 1] + b[k + 1]) / 2, atol=1e-3)  # halfway between its neighbours


# --- item 11: several series in one folder -----------------------------------------------

def _series_uid(folder: Path) -> str:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(next(folder.iterdir())))
    reader.ReadImageInformation()
    return reader.GetMetaData("0020|000e").strip()


@pytest.fixture()
def two_series(prostatex: Path, tmp_path: Path) -> Path:
    """The real T2 and ADC series of ProstateX-0000 copied into one folder."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for kind in ("t2w", "adc"):
        for file in (prostatex / "ProstateX-0000" / kind).iterdir():
            shutil.copy(file, folder / f"{kind}-{file.name}")
    return folder


def test_series_uid_chooses_one_of_several_series(two_series: Path, prostatex: Path):
    adc_uid = _series_uid(prostatex / "ProstateX-0000" / "adc")
    with pytest.raises(ImageReadError, match="2 DICOM series in one folder.*series UID"):
        read_image(two_series)
    assert read_image(two_series, series_uid=adc_uid).GetSize() == (84, 128, 19)
    assert read_image(two_series / "adc-1-01.dcm", series_uid=adc_uid).GetSize() == (84, 128, 19)
    with pytest.raises(ImageReadError, match="not a DICOM series"):
        read_image(write_image(_volume(), two_series.parent / "t2.nii.gz"), series_uid=adc_uid)


def test_manifest_series_uid_columns_reach_the_reader(two_series: Path, prostatex: Path, tmp_path: Path):
    t2_uid = _series_uid(prostatex / "ProstateX-0000" / "t2w")
    adc_uid = _series_uid(prostatex / "ProstateX-0000" / "adc")
    path = tmp_path / "manifest.csv"
    pd.DataFrame([{"patient_id": "ProstateX-0000", "t2": "mixed", "t2_series_uid": t2_uid, "dwi": str(prostatex / "ProstateX-0000" / "hbv"),
                   "adc": "mixed", "adc_series_uid": adc_uid}]).to_csv(path, index=False)
    manifest = read_manifest(path)
    assert manifest.extra_columns == []
    case = load_mri_case(manifest.records[0])
    assert case.t2.GetSize() == (384, 384, 19)
    native_adc = read_image(prostatex / "ProstateX-0000" / "adc", pixel_type=sitk.sitkFloat32)
    from osteomet.data.io import resample_to_reference

    expected = resample_to_reference(native_adc, case.t2)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(case.adc), sitk.GetArrayFromImage(expected))


def test_cli_image_info_series_uid_and_broken_file(two_series: Path, prostatex: Path, tmp_path: Path):
    adc_uid = _series_uid(prostatex / "ProstateX-0000" / "adc")
    result = runner.invoke(app, ["image", "info", str(two_series), "--series-uid", adc_uid])
    assert result.exit_code == 0 and "(84, 128, 19)" in result.output
    result = runner.invoke(app, ["image", "info", str(two_series)])
    assert result.exit_code == 2 and "--series-uid" in result.output and "Traceback" not in result.output
    cut = _truncate(write_image(_volume(), tmp_path / "ct.nii.gz"), 0.5)
    result = runner.invoke(app, ["image", "info", str(cut)])
    assert result.exit_code == 2 and "file is truncated" in result.output and "Traceback" not in result.output


def test_float_mask_with_other_values_or_negative_labels_is_refused(tmp_path: Path):
    reference = _volume()
    for name, values, expected in [("soft.nii.gz", np.float32([0, 0.4, 1]), "float mask must hold only 0 and 1"),
                                   ("neg.nii.gz", np.int16([0, -1, 2]), "negative labels")]:
        array = np.zeros(sitk.GetArrayViewFromImage(reference).shape, values.dtype)
        array[2, 3:6, 3:6] = values[1]
        array[3, 3:6, 3:6] = values[2]
        mask = sitk.GetImageFromArray(array)
        mask.CopyInformation(reference)
        with pytest.raises(MaskError, match=rf"{name}: .*{expected}"):
            read_mask(write_image(mask, tmp_path / name))


def test_damaged_dicom_file_is_named(prostatex: Path, tmp_path: Path):
    """A slice file cut in half is dropped by GDCM: the gap is reported and the file named."""
    copy = tmp_path / "t2w"
    shutil.copytree(prostatex / "ProstateX-0000" / "t2w", copy)
    damaged = sorted(copy.iterdir())[9]
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    with pytest.raises(ImageReadError, match=rf"1 slice\(s\) missing.*could not be read as part of a series: {damaged.name}"):
        read_image(copy)


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_truncated_mha_and_nrrd_are_refused(tmp_path: Path, suffix: str):
    """ITK itself notices these; the message still names the file."""
    cut = _truncate(write_image(_volume(), tmp_path / f"t2{suffix}"), 0.9)
    with pytest.raises(ImageReadError, match=rf"{cut.name}: cannot be read as an image"):
        read_image(cut)


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
    assert _series_uid(ct_folder) == ""
    mr_uid = _series_uid(prostatex / "ProstateX-0001" / "adc")
    pd.DataFrame([{"patient_id": "C1", "ct": "ct", "ct_series_uid": mr_uid}]).to_csv(path, index=False)
    # the named series (an MR ADC map) is the one read: the CT loader's HU check then refuses it as a CT
    expected = read_image(prostatex / "ProstateX-0001" / "adc", pixel_type=sitk.sitkFloat32)
    top = int(sitk.GetArrayViewFromImage(expected).max())
    with pytest.raises(ImageError, match=rf"patient 'C1': .*not in Hounsfield units: minimum 0 \(max {top}\)"):
        load_ct_case(read_manifest(path).records[0])


def test_duplicated_dicom_slice_is_refused_even_with_allow_gaps(prostatex: Path, tmp_path: Path):
    """A slice stored twice (another SOP instance at the same position) cannot be resampled either."""
    copy = tmp_path / "t2w"
    shutil.copytree(prostatex / "ProstateX-0000" / "t2w", copy)
    source = sorted(copy.iterdir())[5]
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(source))
    image = reader.Execute()
    for key in reader.GetMetaDataKeys():
        image.SetMetaData(key, reader.GetMetaData(key))
    image.SetMetaData("0008|0018", reader.GetMetaData("0008|0018").strip() + ".1")  # a new SOP instance UID
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(copy / "duplicate.dcm"))
    writer.Execute(image)
    assert _slice_position(copy / "duplicate.dcm") == pytest.approx(_slice_position(source), abs=1e-4)
    with pytest.raises(ImageReadError, match="slice spacing is not uniform: 0 mm between"):
        read_image(copy)
    with pytest.raises(ImageReadError, match="share a slice position"):
        read_image(copy, allow_gaps=True)
