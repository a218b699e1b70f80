"""Quality control of automatic tumour masks: which UNETR masks a radiologist should see before they are used.

A network trained on a few hundred patients returns, now and then, an empty mask, a few
voxels, several blobs, a blob far from the prostate or one cut off by the field of view. Used
silently, such a mask drops the patient from the radiomics and deep models (no ROI, a
pyradiomics error) or feeds them features of the wrong tissue. Each rule here is cheap, reads
only the mask and its geometry, and says why in words a reviewer understands.

The gland region is approximated by the field of view: prostate bpMRI is planned centred on
the gland (a 30-60 mL gland is 40-50 mm across), so a lesion whose centre lies more than
``max_distance_mm`` in-plane from the centre of the T2 field of view is outside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
from pydantic import BaseModel, ConfigDict, Field


class MaskQCSettings(BaseModel):
    """Thresholds of the automatic-mask checks (``segmentation.qc`` in study.yaml)."""

    model_config = ConfigDict(extra="forbid")

    min_volume_ml: float = Field(0.1, ge=0, description="flag masks smaller than this (index tumours are 0.5-10 mL)")
    max_components: int = Field(1, ge=1, description="flag masks with more 26-connected components than this")
    max_distance_mm: float = Field(45.0, gt=0, description="flag a component whose centre lies further in-plane "
                                                          "from the centre of the T2 field of view (the gland)")
    border: bool = Field(True, description="flag masks touching the edge of the T2 volume (cut off by the field "
                                           "of view)")


@dataclass
class MaskQC:
    """One mask's measurements and the reasons it was flagged (none: it passed)."""

    volume_ml: float
    components: int
    distance_mm: float | None
    touches_border: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)

    def row(self) -> dict[str, Any]:
        return {"volume_ml": round(self.volume_ml, 4), "components": self.components,
                "distance_mm": None if self.distance_mm is None else round(self.distance_mm, 1),
                "touches_border": self.touches_border, "flagged": self.flagged, "reasons": "; ".join(self.reasons)}


def check_mask(mask: sitk.Image, settings: MaskQCSettings | None = None) -> MaskQC:
    """Measure one automatic mask on its T2 grid and list what is implausible about it."""
    from scipy import ndimage

    from osteomet.data.lesions import STRUCTURE

    settings = settings or MaskQCSettings()
    array = sitk.GetArrayViewFromImage(mask) > 0  # z, y, x
    voxel_ml = float(np.prod(mask.GetSpacing())) / 1000.0
    volume = float(array.sum()) * voxel_ml
    if not array.any():
        return MaskQC(0.0, 0, None, False, ["empty: the network found no tumour"])
    labels, n = ndimage.label(array, structure=STRUCTURE)
    reasons = []
    if volume < settings.min_volume_ml:
        reasons.append(f"{volume:.3g} mL, below the {settings.min_volume_ml:g} mL minimum")
    if n > settings.max_components:
        reasons.append(f"{n} separate components (at most {settings.max_components})")
    centre = np.array(mask.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in mask.GetSize()]))
    distances = []
    for index in ndimage.center_of_mass(array, labels, range(1, n + 1)):
        point = np.array(mask.TransformContinuousIndexToPhysicalPoint([float(i) for i in index[::-1]]))
        offset = point - centre
        direction = np.array(mask.GetDirection()).reshape(3, 3)
        in_plane = direction.T @ offset  # along the image axes: x, y in-plane, z through-plane
        distances.append(float(np.hypot(in_plane[0], in_plane[1])))
    farthest = max(distances)
    if farthest > settings.max_distance_mm:
        reasons.append(f"a component {farthest:.0f} mm from the centre of the field of view, outside the gland "
                       f"region ({settings.max_distance_mm:g} mm)")
    touches = bool(array[0].any() or array[-1].any() or array[:, 0].any() or array[:, -1].any()
                   or array[:, :, 0].any() or array[:, :, -1].any())
    if touches and settings.border:
        reasons.append("touches the edge of the volume (cut off by the field of view)")
    return MaskQC(volume, int(n), farthest, touches, reasons)
