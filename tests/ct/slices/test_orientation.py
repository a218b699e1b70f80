"""The slice-cache index of a CT voxel, checked against SimpleITK's own DICOMOrient for every axis-aligned grid."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk

from osteomet.ct.slices.orientation import lps_slices


def _directions() -> list[np.ndarray]:
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            d = np.zeros((3, 3))
            for column, (row, sign) in enumerate(zip(perm, signs)):
                d[row, column] = sign
            out.append(d)
    return out


@pytest.mark.parametrize("direction", _directions(), ids=lambda d: "".join("+-0"[int(v) if v >= 0 else 1]
                                                                               for v in d.ravel()))
def test_every_voxel_lands_on_the_slice_dicomorient_puts_it_on(direction: np.ndarray):
    values = np.arange(9 * 5 * 7, dtype=np.int32).reshape(9, 5, 7)  # every voxel unique: findable after orienting
    image = sitk.GetImageFromArray(values)
    image.SetDirection(direction.ravel().tolist())
    image.SetSpacing([0.7, 1.1, 2.5])
    image.SetOrigin([3.0, -4.0, 10.0])
    oriented = sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))
    slice_of = np.empty(values.size, int)
    slice_of[oriented.ravel()] = np.repeat(np.arange(oriented.shape[0]), oriented[0].size)
    zyx = np.argwhere(np.ones(values.shape, bool))
    assert np.array_equal(lps_slices(image, zyx), slice_of[values[tuple(zyx.T)]])
