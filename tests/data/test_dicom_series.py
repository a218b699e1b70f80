"""DICOM series: one series chosen by UID, slices with a gap or a duplicate refused (or resampled when asked)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.data.image_errors import ImageReadError
from osteomet.data.images import read_image, write_image
from tests.data.volumes import series_uid, slice_position, truncate, volume

runner = CliRunner()


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
    assert "1 slice(s) missing" in message and f"at {slice_position(removed):.2f} mm" in message
    assert "allow_gaps" in message


def test_dicom_gap_resampled_onto_even_slices_when_asked(gapped_t2, caplog):
    original, copy, removed = gapped_t2
    full = read_image(original, pixel_type=sitk.sitkFloat32)
    with caplog.at_level("WARNING", logger="osteomet.data.dicom_series"):
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
    assert float(np.dot(point, normal)) == pytest.approx(slice_position(removed), abs=1e-3)
    np.testing.assert_allclose(a[k], (b[k - 1] + b[k + 1]) / 2, atol=1e-3)  # halfway between its neighbours


def test_damaged_dicom_file_is_named(prostatex: Path, tmp_path: Path):
    """A slice file cut in half is dropped by GDCM: the gap is reported and the file named."""
    copy = tmp_path / "t2w"
    shutil.copytree(prostatex / "ProstateX-0000" / "t2w", copy)
    damaged = sorted(copy.iterdir())[9]
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    with pytest.raises(ImageReadError, match=rf"1 slice\(s\) missing.*could not be read as part of a series: {damaged.name}"):
        read_image(copy)


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
    assert slice_position(copy / "duplicate.dcm") == pytest.approx(slice_position(source), abs=1e-4)
    with pytest.raises(ImageReadError, match="slice spacing is not uniform: 0 mm between"):
        read_image(copy)
    with pytest.raises(ImageReadError, match="share a slice position"):
        read_image(copy, allow_gaps=True)


def test_series_uid_chooses_one_of_several_series(two_series: Path, prostatex: Path):
    adc_uid = series_uid(prostatex / "ProstateX-0000" / "adc")
    with pytest.raises(ImageReadError, match="2 DICOM series in one folder.*series UID"):
        read_image(two_series)
    assert read_image(two_series, series_uid=adc_uid).GetSize() == (84, 128, 19)
    assert read_image(two_series / "adc-1-01.dcm", series_uid=adc_uid).GetSize() == (84, 128, 19)
    with pytest.raises(ImageReadError, match="not a DICOM series"):
        read_image(write_image(volume(), two_series.parent / "t2.nii.gz"), series_uid=adc_uid)


def test_cli_image_info_series_uid_and_broken_file(two_series: Path, prostatex: Path, tmp_path: Path):
    adc_uid = series_uid(prostatex / "ProstateX-0000" / "adc")
    result = runner.invoke(app, ["image", "info", str(two_series), "--series-uid", adc_uid])
    assert result.exit_code == 0 and "(84, 128, 19)" in result.output
    result = runner.invoke(app, ["image", "info", str(two_series)])
    assert result.exit_code == 2 and "--series-uid" in result.output and "Traceback" not in result.output
    cut = truncate(write_image(volume(), tmp_path / "ct.nii.gz"), 0.5)
    result = runner.invoke(app, ["image", "info", str(cut)])
    assert result.exit_code == 2 and "file is truncated" in result.output and "Traceback" not in result.output
