"""Per-channel z-score normalisation with clipping, and the region its statistics come from.

Statistics region (documented choice): the body, found on T2 as the voxels above 5% of
the 99th percentile, largest connected component, holes filled, intersected for DWI and ADC with the part
of the T2 grid their own field of view covers. Air and the zero padding outside a
coarser DWI/ADC field of view would otherwise drag mean and SD towards zero and make the
same tissue look different at two centres. Values are then clipped to +/-3 SD and voxels
outside a channel's field of view set to 0 (the mean).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from osteomet.errors import InputError


def body_mask(t2: sitk.Image, fraction: float = 0.05) -> sitk.Image:
    """Foreground of the T2 volume: brighter than ``fraction`` of the 99th percentile, largest
    component, holes filled. Air and coil background are near zero on T2; Otsu would instead
    split bright fat from dark muscle and leave the muscles out of the body."""
    smooth = sitk.SmoothingRecursiveGaussian(sitk.Cast(t2, sitk.sitkFloat32), float(min(t2.GetSpacing())))
    array = sitk.GetArrayViewFromImage(smooth)
    threshold = fraction * float(np.percentile(array, 99))
    foreground = sitk.Cast(smooth > threshold, sitk.sitkUInt8)
    components = sitk.RelabelComponent(sitk.ConnectedComponent(foreground), sortByObjectSize=True)
    largest = sitk.Cast(components == 1, sitk.sitkUInt8)
    return sitk.BinaryFillhole(largest)


def zscore_clip(array: np.ndarray, region: np.ndarray, clip_sd: float = 3.0) -> tuple[np.ndarray, dict[str, float]]:
    """(array - mean) / SD over ``region``, clipped to +/-clip_sd; 0 outside ``region``'s coverage is left to the caller."""
    values = array[region]
    if values.size < 10:
        raise InputError(f"normalisation region has only {values.size} voxels")
    mean, sd = float(values.mean()), float(values.std())
    if not np.isfinite(sd) or sd <= 0:
        raise InputError("normalisation region has zero variance (blank image?)")
    out = np.clip((array - mean) / sd, -clip_sd, clip_sd).astype(np.float32)
    return out, {"mean": mean, "sd": sd, "n_voxels": int(values.size)}
