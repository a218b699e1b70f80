"""Automatic-mask QC: each rule flags the mask it is for, measured by hand on a T2-like grid, and passes a tumour."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from osteomet.mri.segmentation.qc import MaskQCSettings, check_mask


def _grid(array_zyx: np.ndarray, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> sitk.Image:
    image = sitk.GetImageFromArray(array_zyx.astype(np.uint8))
    image.SetSpacing((0.5, 0.5, 3.0))  # ProstateX T2: 0.5 x 0.5 x 3 mm
    image.SetOrigin((-96.0, -80.0, 20.0))
    image.SetDirection(direction)
    return image


def _ball(shape=(19, 384, 384), centre=(9, 192, 192), radius_mm=6.0) -> np.ndarray:
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    d2 = ((z - centre[0]) * 3.0) ** 2 + ((y - centre[1]) * 0.5) ** 2 + ((x - centre[2]) * 0.5) ** 2
    return d2 <= radius_mm ** 2


def test_a_central_tumour_passes_and_its_volume_is_measured():
    mask = _ball()
    qc = check_mask(_grid(mask))
    assert not qc.flagged and qc.components == 1 and not qc.touches_border
    assert qc.volume_ml == pytest.approx(mask.sum() * 0.75 / 1000)  # 0.5 * 0.5 * 3 mm3 per voxel
    assert qc.distance_mm == pytest.approx(0.25, abs=0.3)  # the ball sits on the centre voxel (191.5 is the middle)


def test_each_implausible_mask_is_flagged_with_its_reason():
    empty = check_mask(_grid(np.zeros((19, 384, 384))))
    assert empty.flagged and empty.reasons == ["empty: the network found no tumour"] and empty.volume_ml == 0
    one = np.zeros((19, 384, 384), bool)
    one[9, 192, 192] = True
    assert "below the 0.1 mL minimum" in check_mask(_grid(one)).reasons[0]
    two = _ball() | _ball(centre=(9, 192, 250))  # 29 mm apart: two blobs
    assert check_mask(_grid(two)).reasons == ["2 separate components (at most 1)"]
    far = _ball(centre=(9, 192, 192 + 120))  # 60 mm right of the centre, in the pelvic side wall
    flagged = check_mask(_grid(far))
    assert flagged.distance_mm == pytest.approx(60.0, abs=0.3)
    assert flagged.reasons == ["a component 60 mm from the centre of the field of view, outside the gland region (45 mm)"]
    edge = _ball(centre=(0, 192, 192))  # cut by the first slice
    assert check_mask(_grid(edge)).reasons == ["touches the edge of the volume (cut off by the field of view)"]
    assert not check_mask(_grid(edge), MaskQCSettings(border=False)).flagged


def test_the_gland_distance_is_measured_along_the_image_axes_of_an_oblique_scan():
    """An oblique acquisition: the distance is in-plane (image x, y), not along the scanner's z."""
    angle = np.deg2rad(30)
    direction = (1, 0, 0, 0, np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle))
    deep = _ball(centre=(2, 192, 192), radius_mm=4.0)  # 7 slices (21 mm) from the centre, in-plane on it
    qc = check_mask(_grid(deep, direction))
    assert qc.distance_mm == pytest.approx(0.25, abs=0.3) and not qc.flagged
