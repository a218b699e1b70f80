"""Reading and writing volumes: formats, geometry kept, refused files named."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from osteomet.data.geometry import Geometry
from osteomet.data.image_errors import ImageError, ImageReadError
from osteomet.data.images import read_image, write_image
from osteomet.data.label_masks import read_mask
from tests.data.volumes import nibabel_nifti, oblique_image, truncate, volume


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_round_trip_keeps_geometry_and_values(tmp_path: Path, suffix: str):
    image = oblique_image()
    path = write_image(image, tmp_path / f"img{suffix}")
    back = read_image(path)
    assert Geometry.of(back).differences(Geometry.of(image)) == []
    np.testing.assert_allclose(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image), rtol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == [f"img{suffix}"]  # no temporary left behind


def test_missing_and_unreadable_files_name_the_file(tmp_path: Path):
    with pytest.raises(ImageReadError, match="nope.nii.gz: file or folder does not exist"):
        read_image(tmp_path / "nope.nii.gz")
    garbage = tmp_path / "broken.nii.gz"
    garbage.write_bytes(b"this is not a nifti file")
    with pytest.raises(ImageReadError, match="broken.nii.gz: cannot be read as an image"):
        read_image(garbage)
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(ImageReadError, match="notes.txt: unsupported image format"):
        read_image(other)
    empty_dir = tmp_path / "series"
    empty_dir.mkdir()
    with pytest.raises(ImageReadError, match="series: no DICOM series found"):
        read_image(empty_dir)


def test_nan_voxels_are_refused(tmp_path: Path):
    array = np.zeros((4, 5, 6), np.float32)
    array[1, 2, 3] = np.nan
    path = write_image(sitk.GetImageFromArray(array), tmp_path / "nan.mha")
    with pytest.raises(ImageError, match=r"nan.mha: 1 voxels are NaN or infinite \(first at voxel x,y,z=\(3, 2, 1\)\)"):
        read_image(path)


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
        read_mask(nibabel_nifti(tmp_path / "mask.nii.gz", mask))


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_truncated_mha_and_nrrd_are_refused(tmp_path: Path, suffix: str):
    """ITK itself notices these; the message still names the file."""
    cut = truncate(write_image(volume(), tmp_path / f"t2{suffix}"), 0.9)
    with pytest.raises(ImageReadError, match=rf"{cut.name}: cannot be read as an image"):
        read_image(cut)


def test_write_refuses_unknown_suffix(tmp_path: Path):
    with pytest.raises(ImageReadError, match="unsupported image format"):
        write_image(oblique_image(), tmp_path / "img.png")
    assert list(tmp_path.iterdir()) == []


def test_reads_real_prostatex_dicom_series(prostatex: Path):
    t2 = read_image(prostatex / "ProstateX-0000" / "t2w")
    adc = read_image(prostatex / "ProstateX-0000" / "adc")
    assert t2.GetSize() == (384, 384, 19) and adc.GetSize() == (84, 128, 19)
    np.testing.assert_allclose(t2.GetSpacing(), (0.5, 0.5, 3.0), atol=1e-3)
    np.testing.assert_allclose(adc.GetSpacing(), (2.0, 2.0, 3.0), atol=1e-3)
    assert Geometry.of(t2).origin != Geometry.of(adc).origin
