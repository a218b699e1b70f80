"""The settings of a synthetic bpMRI cohort (:class:`MRISynthConfig`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from osteomet.data.synth.clinical import EXTERNAL_FRACTION

#: The smallest in-plane matrix factor that renders every tumour: below it the coarsest grid (centre C2's
#: 16-voxel T2, 12.6 mm voxels at 0.05) lets a 0.4 mL tumour fall between voxel centres (about 1 in 7
#: patients at 0.05, 1 in 150 at 0.08, none in 600 draws at 0.1).
MIN_SCALE = 0.1


class MRISynthConfig(BaseModel):
    """Knobs of the synthetic bpMRI cohort (defaults: demo-sized, both centres)."""

    model_config = ConfigDict(extra="forbid")

    scale: float = Field(0.25, ge=MIN_SCALE, le=1.0, description="in-plane matrix factor; 1.0 = scanner matrix "
                                                                "(512/320); at least MIN_SCALE")
    slices: int | None = Field(None, ge=8, description="override the number of slices of every sequence")
    external_fraction: float = Field(EXTERNAL_FRACTION, ge=0, le=1, description="share of patients from centre C2")
    missing_rate: float = Field(0.02, ge=0, le=0.5, description="chance each of age/PSA/hematuria/leukocyturia is blank")
    t2_noise: float = Field(0.03, ge=0, description="T2 noise SD relative to muscle-fat contrast scale")
    dwi_noise: float = Field(0.012, ge=0, description="Rician noise sigma of high-b DWI (relative units)")
    adc_noise: float = Field(0.07, ge=0, description="ADC noise SD, 10^-3 mm2/s")
    c2_noise_factor: float = Field(1.0, gt=0, description="noise of centre C2 relative to C1 on every sequence "
                                                          "(2 = half the SNR: another coil or protocol); 1 = same")
    image_format: Literal["nii.gz", "mha", "nrrd"] = "nii.gz"
    split_ratios: tuple[float, float, float] = Field((0.6, 0.1, 0.3), description="train/val/test within centre C1")
