"""Damaged NIfTI files are refused with one message naming the file: truncated data, NaN voxels."""

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from osteomet.data.image_errors import ImageError, ImageReadError
from osteomet.data.images import read_image, write_image
from tests.data.volumes import nibabel_nifti, truncate, volume


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_nifti_is_refused_naming_the_file(tmp_path: Path, suffix: str, fraction: float):
    image = volume()
    whole = write_image(image, tmp_path / f"t2{suffix}")  # written by SimpleITK, as the pipeline does
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(whole)), sitk.GetArrayFromImage(image))
    cut = truncate(whole, fraction)
    with pytest.raises(ImageReadError, match=rf"{cut.name}: file is truncated: the header promises {image.GetNumberOfPixels() * 4} bytes"):
        read_image(cut)


def test_gzip_cut_in_its_trailer_or_corrupted_is_refused(tmp_path: Path):
    whole = write_image(volume(), tmp_path / "t2.nii.gz")
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
    raw = write_image(volume(), tmp_path / "t2.nii")
    data = raw.read_bytes()
    two = tmp_path / "two.nii.gz"
    two.write_bytes(gzip.compress(data[:1000]) + gzip.compress(data[1000:]))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(two)), sitk.GetArrayFromImage(read_image(raw)))


@pytest.mark.parametrize("slope", [None, 2.0])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nan_in_nifti_is_counted_and_refused(tmp_path: Path, slope, suffix):
    array = np.random.default_rng(2).normal(size=(24, 20, 12)).astype(np.float32)  # x, y, z as nibabel stores
    for x, y, z in [(5, 3, 2), (6, 3, 2), (1, 19, 11)]:
        array[x, y, z] = np.nan
    path = nibabel_nifti(tmp_path / f"adc{suffix}", array, slope)
    assert np.isnan(nib.load(str(path)).get_fdata()).sum() == 3  # the peer library sees them
    with pytest.raises(ImageError, match=rf"adc{suffix}: 3 voxels are NaN or infinite \(first at voxel x,y,z=\(5, 3, 2\)\)"):
        read_image(path)


def test_integer_nifti_with_scaling_reads_and_infinite_float_is_refused(tmp_path: Path):
    counts = np.arange(24 * 20 * 12, dtype=np.int16).reshape(24, 20, 12) % 1000
    path = nibabel_nifti(tmp_path / "scaled.nii.gz", counts, slope=0.5)
    values = sitk.GetArrayFromImage(read_image(path)).transpose(2, 1, 0)
    np.testing.assert_allclose(values, nib.load(str(path)).get_fdata(), rtol=1e-6)
    floats = counts.astype(np.float32)
    floats[0, 0, 0] = np.inf
    with pytest.raises(ImageError, match=r"inf.nii.gz: 1 voxels are NaN or infinite"):
        read_image(nibabel_nifti(tmp_path / "inf.nii.gz", floats))


def _with_pixdim(path: Path, axis: int, value: float) -> Path:
    """Patch pixdim[axis] in the raw header, as a converter that lost the slice spacing writes it."""
    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    header = bytearray(raw)
    header[76 + 4 * axis: 80 + 4 * axis] = np.float32(value).tobytes()  # NIfTI-1: float pixdim[8] at byte 76
    out = path.with_name(f"pixdim{axis}_{value:g}_{path.name}")
    out.write_bytes(gzip.compress(bytes(header)) if path.name.endswith(".gz") else bytes(header))
    return out


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize(("axis", "value"), [(3, 0.0), (1, -0.8), (2, float("nan"))])
def test_zero_or_negative_voxel_size_is_refused_not_read_as_1_mm(tmp_path: Path, suffix: str, axis: int, value: float):
    good = tmp_path / f"t2{suffix}"
    nib.save(nib.Nifti1Image(np.ones((6, 5, 4), np.int16), np.diag([0.8, 0.8, 3.0, 1.0])), good)
    assert read_image(good).GetSpacing() == pytest.approx((0.8, 0.8, 3.0))
    bad = _with_pixdim(good, axis, value)
    raw = gzip.decompress(bad.read_bytes()) if suffix == ".nii.gz" else bad.read_bytes()
    stored = float(np.frombuffer(raw, "<f4", count=1, offset=76 + 4 * axis)[0])
    assert stored == np.float32(value) or (np.isnan(value) and np.isnan(stored))
    # SimpleITK alone reads it on a made-up grid (1 mm, or ignoring the sign) with a console warning only
    assert sitk.ReadImage(str(bad)).GetSpacing()[axis - 1] > 0
    with pytest.raises(ImageReadError, match="not a physical grid") as err:
        read_image(bad)
    assert bad.name in str(err.value) and "xyz"[axis - 1] in str(err.value)


def test_negative_spacing_in_an_mha_header_is_refused(tmp_path: Path):
    good = write_image(sitk.GetImageFromArray(np.ones((4, 5, 6), np.int16)), tmp_path / "ct.mha")
    text = good.read_bytes()
    bad = tmp_path / "bad.mha"
    bad.write_bytes(text.replace(b"ElementSpacing = 1 1 1", b"ElementSpacing = 1 1 0"))
    assert b"ElementSpacing = 1 1 0" in bad.read_bytes()
    with pytest.raises(ImageError, match="bad.mha"):
        read_image(bad)
