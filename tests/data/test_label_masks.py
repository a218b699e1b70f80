"""Tumour masks and label maps: integer labels, binary float masks only, grid checked against the image."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from osteomet.data.geometry import GeometryMismatchError
from osteomet.data.images import write_image
from osteomet.data.label_masks import MaskError, read_label_map, read_mask
from tests.data.volumes import oblique_image, volume


def test_mask_checks(tmp_path: Path):
    reference = oblique_image(size=(10, 10, 4), tilt=0)
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
    shifted = oblique_image(size=(10, 10, 4), origin=(0.0, 0.0, 7.0), tilt=0)
    with pytest.raises(GeometryMismatchError, match=r"good.nii.gz: not on the grid of t2.nii.gz: origin"):
        read_mask(path, reference=shifted, reference_name="t2.nii.gz")


def test_label_map_must_be_integer(tmp_path: Path):
    image = sitk.GetImageFromArray(np.full((3, 3, 3), 1.5, np.float32))
    with pytest.raises(MaskError, match="non-integer"):
        read_label_map(write_image(image, tmp_path / "bones.nii.gz"))


def test_float_mask_with_other_values_or_negative_labels_is_refused(tmp_path: Path):
    reference = volume()
    for name, values, expected in [("soft.nii.gz", np.float32([0, 0.4, 1]), "float mask must hold only 0 and 1"),
                                   ("neg.nii.gz", np.int16([0, -1, 2]), "negative labels")]:
        array = np.zeros(sitk.GetArrayViewFromImage(reference).shape, values.dtype)
        array[2, 3:6, 3:6] = values[1]
        array[3, 3:6, 3:6] = values[2]
        mask = sitk.GetImageFromArray(array)
        mask.CopyInformation(reference)
        with pytest.raises(MaskError, match=rf"{name}: .*{expected}"):
            read_mask(write_image(mask, tmp_path / name))
