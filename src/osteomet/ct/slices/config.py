"""Settings of the CT slice cache and its patient split (shared by detection and segmentation)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SliceConfig(BaseModel):
    """How CT volumes become cached axial slices; everything but the split is part of the cache key.

    Why native resolution: a 10 mm lesion is 2-3 pixels on a whole slice shrunk to 64 pixels
    over 500 mm, too few for any network to learn; at the scanner's own pixel size it keeps
    every pixel the radiologist sees. The slices are cropped to the bone region instead, which
    is where metastases are and which removes the air and most soft tissue.
    """

    model_config = ConfigDict(extra="forbid")

    window_level: float = Field(700.0, description="bone window centre (HU); -500 .. 1900 HU keeps dense cortex "
                                "(up to 1900 HU) apart from sclerotic lesions (300-1200 HU)")
    window_width: float = Field(2400.0, gt=0, description="bone window width (HU): level +/- width/2 maps to 0..1")
    inplane_spacing_mm: float | None = Field(
        None, gt=0, le=10, description="in-plane pixel size of the cached slices (mm); null keeps the CT's own")
    crop_margin_mm: float = Field(10.0, ge=0, description="margin around the bone region's bounding box (mm)")
    bone_hu: float = Field(200.0, description="bone threshold (HU) for the crop when the manifest has no bone map")
    min_lesion_voxels: int = Field(1, ge=1, description="lesion voxels in a slice of the mask to label it 'lesion'")
    test_fraction: float = Field(0.2, ge=0, lt=1, description="share of patients held out for testing")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="share of the training patients used for validation")
    split_seed: int = 0

    def cache_settings(self) -> str:
        """Only what changes the arrays: a new split does not invalidate the cache."""
        return self.model_dump_json(include={"window_level", "window_width", "inplane_spacing_mm", "crop_margin_mm",
                                             "bone_hu", "min_lesion_voxels"})
