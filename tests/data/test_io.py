"""Image I/O: formats, geometry, physical-space resampling and clear errors."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from osteomet.data.io import (
    Geometry,
    GeometryMismatchError,
    ImageError,
    ImageReadError,
    MaskError,
    check_same_geometry,
    read_image,
    read_label_map,
    read_mask,
    resample_to_reference,
    write_image,
)


def _oblique_image(size=(20, 18, 8), spacing=(1.5, 1.2, 4.0), origin=(-10.0, 5.0, 2.0), tilt=15.0, value=None):
    t = np.deg2rad(tilt)
    direction = [1, 0, 0, 0, np.cos(t), -np.sin(t), 0, np.sin(t), np.cos(t)]
    array = value if value is not None else np.random.default_rng(0).normal(size=size[::-1]).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def _sphere(grid: sitk.Image, centre_mm, radius_mm) -> np.ndarray:
    size = grid.GetSize()
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in size], indexing="ij"), -1).reshape(-1, 3)
    world = np.array([grid.TransformIndexToPhysicalPoint([int(a) for a in i]) for i in idx])
    inside = np.linalg.norm(world - np.asarray(centre_mm), axis=1) <= radius_mm
    return inside.reshape(size).transpose(2, 1, 0).astype(np.uint8)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_round_trip_keeps_geometry_and_values(tmp_path: Path, suffix: str):
    image = _oblique_image()
    path = write_image(image, tmp_path / f"img{suffix}")
    back = read_image(path)
    assert Geometry.of(back).differences(Geometry.of(image)) == []
    np.testing.assert_allclose(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image), rtol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == [f"img{suffix}"]  # no temporary left behind


def test_geometry_dict_round_trip():
    geometry = Geometry.of(_oblique_image())
    assert Geometry.from_dict(geometry.to_dict()) == geometry


def test_resampling_is_in_physical_space_not_by_array_shape():
    """A sphere drawn on a coarse oblique grid lands on the same world spot on a fine grid."""
    fine = _oblique_image(size=(60, 60, 20), spacing=(0.8, 0.8, 3.0), origin=(-24.0, -24.0, -30.0), tilt=0.0)
    coarse = _oblique_image(size=(24, 30, 16), spacing=(2.5, 2.0, 4.0), origin=(-35.0, -20.0, -35.0), tilt=12.0)
    centre, radius = (3.0, 6.0, -5.0), 9.0
    moving = sitk.GetImageFromArray(_sphere(coarse, centre, radius))
    moving.CopyInformation(coarse)
    moved = sitk.GetArrayFromImage(resample_to_reference(moving, fine, interpolator=sitk.sitkNearestNeighbor))
    truth = _sphere(fine, centre, radius)
    dice = 2 * (moved & truth).sum() / (moved.sum() + truth.sum())
    assert dice > 0.8
    # stretching the coarse array to the fine shape (ignoring geometry) misplaces the sphere
    from scipy.ndimage import zoom

    coarse_array = sitk.GetArrayFromImage(moving)
    naive = zoom(coarse_array, np.array(truth.shape) / np.array(coarse_array.shape), order=0)
    naive_dice = 2 * (naive & truth).sum() / (naive.sum() + truth.sum())
    assert naive_dice < dice - 0.3


def test_non_overlapping_volumes_are_refused():
    a = _oblique_image(origin=(0.0, 0.0, 0.0), tilt=0)
    b = _oblique_image(origin=(500.0, 0.0, 0.0), tilt=0)
    with pytest.raises(GeometryMismatchError, match="covers only 0.0%"):
        resample_to_reference(b, a, name="dwi.nii.gz", reference_name="t2.nii.gz")


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


def test_mask_checks(tmp_path: Path):
    reference = _oblique_image(size=(10, 10, 4), tilt=0)
    array = np.zeros((4, 10, 10), np.uint8)
    empty = sitk.GetImageFromArray(array)
    empty.CopyInformation(reference)
    with pytest.raises(MaskError, match="empty.nii.gz: mask is empty"):
        read_mask(write_image(empty, tmp_path / "empty.nii.gz"))
    array[1, 2:4, 2:4] = 255  # integer labels (0/255 from many tools): non-zero = tumour
    labels = sitk.GetImageFromArray(array)
    labels.CopyInformation(reference)
    assert sitk.GetArrayFromImage(read_mask(write_image(labels, tmp_path / "m255.nii.gz"))).tolist() == \
        (array > 0).astype(np.uint8).tolist()
    soft = sitk.GetImageFromArray(array.astype(np.float32) / 510)  # a float mask of 0/0.5: a probability map
    soft.CopyInformation(reference)
    with pytest.raises(MaskError, match=r"soft.nii.gz: mask is not binary.*has 0.5"):
        read_mask(write_image(soft, tmp_path / "soft.nii.gz"))
    array[array > 0] = 1
    good = sitk.GetImageFromArray(array)
    good.CopyInformation(reference)
    path = write_image(good, tmp_path / "good.nii.gz")
    assert sitk.GetArrayFromImage(read_mask(path, reference=reference)).sum() == 4
    shifted = _oblique_image(size=(10, 10, 4), origin=(0.0, 0.0, 7.0), tilt=0)
    with pytest.raises(GeometryMismatchError, match=r"good.nii.gz: not on the grid of t2.nii.gz: origin"):
        read_mask(path, reference=shifted, reference_name="t2.nii.gz")


def test_label_map_must_be_integer(tmp_path: Path):
    image = sitk.GetImageFromArray(np.full((3, 3, 3), 1.5, np.float32))
    with pytest.raises(MaskError, match="non-integer"):
        read_label_map(write_image(image, tmp_path / "bones.nii.gz"))


def test_check_same_geometry_lists_every_difference():
    a = _oblique_image(size=(10, 10, 4), tilt=0)
    b = _oblique_image(size=(10, 12, 4), spacing=(1.0, 1.0, 4.0), tilt=5)
    with pytest.raises(GeometryMismatchError) as info:
        check_same_geometry(b, a, name="b.nii", reference_name="a.nii")
    message = str(info.value)
    assert "size" in message and "spacing" in message and "direction" in message


def test_write_refuses_unknown_suffix(tmp_path: Path):
    with pytest.raises(ImageReadError, match="unsupported image format"):
        write_image(_oblique_image(), tmp_path / "img.png")
    assert list(tmp_path.iterdir()) == []


# --- real ProstateX DICOM -------------------------------------------------------------

def test_reads_real_prostatex_dicom_series(prostatex: Path):
    t2 = read_image(prostatex / "ProstateX-0000" / "t2w")
    adc = read_image(prostatex / "ProstateX-0000" / "adc")
    assert t2.GetSize() == (384, 384, 19) and adc.GetSize() == (84, 128, 19)
    np.testing.assert_allclose(t2.GetSpacing(), (0.5, 0.5, 3.0), atol=1e-3)
    np.testing.assert_allclose(adc.GetSpacing(), (2.0, 2.0, 3.0), atol=1e-3)
    assert Geometry.of(t2).origin != Geometry.of(adc).origin


@pytest.mark.parametrize("case", ["ProstateX-0000", "ProstateX-0001"])
def test_real_adc_resampled_onto_t2_matches_physical_lookup(prostatex: Path, case: str):
    """Each resampled voxel equals the ADC voxel nearest to the same world point."""
    t2 = read_image(prostatex / case / "t2w")
    adc = read_image(prostatex / case / "adc", pixel_type=sitk.sitkFloat32)
    on_t2 = resample_to_reference(adc, t2, interpolator=sitk.sitkNearestNeighbor, default_value=-1)
    assert on_t2.GetSize() == t2.GetSize()
    resampled = sitk.GetArrayViewFromImage(on_t2)
    native = sitk.GetArrayViewFromImage(adc)
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(400):
        i, j, k = (int(rng.integers(0, s)) for s in t2.GetSize())
        point = t2.TransformIndexToPhysicalPoint((i, j, k))
        cont = np.asarray(adc.TransformPhysicalPointToContinuousIndex(point))
        idx = np.floor(cont + 0.5).astype(int)
        if np.any(idx < 0) or np.any(idx >= np.asarray(adc.GetSize())):
            assert resampled[k, j, i] == -1  # outside the ADC field of view
            continue
        if np.any(np.abs(cont - np.round(cont)) > 0.499):
            continue  # exactly between two voxels: either neighbour is right
        assert resampled[k, j, i] == native[idx[2], idx[1], idx[0]]
        checked += 1
    assert checked > 50
    # T2 and ADC have different fields of view: part of the T2 grid lies outside the ADC one
    assert (resampled == -1).any() and (resampled != -1).mean() > 0.3
