"""Lesion overlays: one picture per lesion, the outline drawn where the mask is, the bone named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import SimpleITK as sitk
from PIL import Image

from osteomet.ct.lesions.overlays import lesion_overlays


def test_each_lesion_gets_a_png_with_a_red_outline_on_its_own_side_of_the_slice(tmp_path):
    hu = np.full((10, 80, 80), -50.0, np.float32)
    hu[:, 20:60, 20:60] = 300.0  # a bone block
    mask = np.zeros(hu.shape, np.uint8)
    mask[4:7, 30:38, 48:56] = 1  # a lesion in the right half of the image (columns 48-55)
    ct = sitk.GetImageFromArray(hu)
    lesion = sitk.GetImageFromArray(mask)
    lesion.CopyInformation(ct)
    table = pd.DataFrame([{"lesion_id": 1, "volume_ml": 0.19, "mean_hu": 900.0, "centroid_x_vox": 51.5,
                           "centroid_y_vox": 33.5, "centroid_z_vox": 5.0, "bone_name": "vertebrae_L3"}])
    paths = lesion_overlays(ct, lesion, table, tmp_path)
    assert [p.name for p in paths] == ["lesion_1.png"]
    image = np.asarray(Image.open(paths[0]).convert("RGB")).astype(int)
    red = (image[..., 0] > 200) & (image[..., 1] < 90) & (image[..., 2] < 90)
    assert red.sum() > 20
    gray = (np.abs(image[..., 0] - image[..., 1]) < 3) & (image[..., 0] < 250)  # the CT slice itself
    cols = np.nonzero(gray.any(axis=0))[0]
    middle = (cols.min() + cols.max()) / 2
    assert np.nonzero(red)[1].mean() > middle  # the outline sits where the mask is, right of centre
