"""Grids in physical space: comparing them, and resampling by world coordinates, never by array shape."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from osteomet.data.geometry import MIN_OVERLAP, Geometry, GeometryMismatchError, check_same_geometry, resample_to
from osteomet.data.images import read_image
from tests.data.volumes import oblique_image, sphere


def test_geometry_dict_round_trip():
    geometry = Geometry.of(oblique_image())
    assert Geometry.from_dict(geometry.to_dict()) == geometry


def test_check_same_geometry_lists_every_difference():
    a = oblique_image(size=(10, 10, 4), tilt=0)
    b = oblique_image(size=(10, 12, 4), spacing=(1.0, 1.0, 4.0), tilt=5)
    with pytest.raises(GeometryMismatchError) as info:
        check_same_geometry(b, a, name="b.nii", reference_name="a.nii")
    message = str(info.value)
    assert "size" in message and "spacing" in message and "direction" in message


def test_resampling_is_in_physical_space_not_by_array_shape():
    """A sphere drawn on a coarse oblique grid lands on the same world spot on a fine grid."""
    fine = oblique_image(size=(60, 60, 20), spacing=(0.8, 0.8, 3.0), origin=(-24.0, -24.0, -30.0), tilt=0.0)
    coarse = oblique_image(size=(24, 30, 16), spacing=(2.5, 2.0, 4.0), origin=(-35.0, -20.0, -35.0), tilt=12.0)
    centre, radius = (3.0, 6.0, -5.0), 9.0
    moving = sitk.GetImageFromArray(sphere(coarse, centre, radius))
    moving.CopyInformation(coarse)
    moved = sitk.GetArrayFromImage(resample_to(moving, Geometry.of(fine), interpolator=sitk.sitkNearestNeighbor))
    truth = sphere(fine, centre, radius)
    dice = 2 * (moved & truth).sum() / (moved.sum() + truth.sum())
    assert dice > 0.8
    # stretching the coarse array to the fine shape (ignoring geometry) misplaces the sphere
    from scipy.ndimage import zoom

    coarse_array = sitk.GetArrayFromImage(moving)
    naive = zoom(coarse_array, np.array(truth.shape) / np.array(coarse_array.shape), order=0)
    naive_dice = 2 * (naive & truth).sum() / (naive.sum() + truth.sum())
    assert naive_dice < dice - 0.3


def test_non_overlapping_volumes_are_refused():
    a = oblique_image(origin=(0.0, 0.0, 0.0), tilt=0)
    b = oblique_image(origin=(500.0, 0.0, 0.0), tilt=0)
    with pytest.raises(GeometryMismatchError, match="covers only 0.0%"):
        resample_to(b, Geometry.of(a), min_overlap=MIN_OVERLAP, name="dwi.nii.gz", reference_name="t2.nii.gz")


@pytest.mark.parametrize("case", ["ProstateX-0000", "ProstateX-0001"])
def test_real_adc_resampled_onto_t2_matches_physical_lookup(prostatex: Path, case: str):
    """Each resampled voxel equals the ADC voxel nearest to the same world point."""
    t2 = read_image(prostatex / case / "t2w")
    adc = read_image(prostatex / case / "adc", pixel_type=sitk.sitkFloat32)
    on_t2 = resample_to(adc, Geometry.of(t2), interpolator=sitk.sitkNearestNeighbor, default=-1)
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
