"""Tissue codes, their typical HU and the synthetic-CT settings (:class:`CTSynthConfig`)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from osteomet.errors import InputError

Region = Literal["whole_body", "torso", "abdomen_pelvis"]

#: Internal label of rendered but unlabelled bones (forearms): not a ``total``-task class.
UNLABELLED_BONE = 200

# Tissue codes of the phantom's material map (returned by :func:`render_ct_phantom`).
AIR, LUNG, FAT, VISCERAL_FAT, MUSCLE, LIVER, SPLEEN, KIDNEY, URINE, BOWEL, BLOOD, BRAIN, DISC, GAS = range(14)
CARTILAGE, CORTICAL, TRABECULAR, FATTY_MARROW = 14, 15, 16, 17
TISSUE_NAMES = {
    AIR: "air", LUNG: "lung", FAT: "fat", VISCERAL_FAT: "visceral_fat", MUSCLE: "muscle", LIVER: "liver",
    SPLEEN: "spleen", KIDNEY: "kidney", URINE: "urine", BOWEL: "bowel", BLOOD: "blood", BRAIN: "brain",
    DISC: "disc", GAS: "gas", CARTILAGE: "cartilage", CORTICAL: "cortical", TRABECULAR: "trabecular",
    FATTY_MARROW: "fatty_marrow",
}
# Typical HU and texture SD per tissue (before per-patient jitter, blur and noise).
_TISSUE_HU = np.array([-1000, -850, -95, -90, 50, 58, 48, 33, 8, 28, 40, 35, 80, -950, 120, 0, 0, -50], np.float32)
_TISSUE_SD = np.array([0, 25, 8, 10, 6, 5, 5, 5, 3, 10, 5, 3, 8, 20, 15, 40, 25, 15], np.float32)

LUMBAR_IDS = list(range(27, 32))
VERTEBRA_IDS = list(range(27, 51))  # L5 .. C1
RIB_IDS = list(range(92, 116))


class CTSynthConfig(BaseModel):
    """Knobs of the synthetic CT cohort (defaults: a fast torso cohort for the demo)."""

    model_config = ConfigDict(extra="forbid")

    inplane_size: int = Field(128, ge=32, le=1024, description="In-plane matrix; 128 over 500 mm is ~3.9 mm voxels.")
    fov_mm: float = Field(500.0, gt=100, le=1000, description="In-plane field of view (mm).")
    slice_thickness_mm: float = Field(5.0, gt=0.3, le=10, description="Slice spacing = thickness (mm).")
    region: Region = Field("torso", description="Scan range: whole_body (mid-femur to vertex), torso "
                                                "(shoulders to proximal femur), abdomen_pelvis (~L1 to proximal femur).")
    noise_hu: float = Field(15.0, ge=0, le=200, description="SD of the Gaussian image noise (HU).")
    lesion_free_fraction: float = Field(0.4, ge=0, le=1, description=(
        "Share of patients without any lesion: exact in a cohort (round(n * share), see generate_ct_cohort), "
        "drawn per patient when one is rendered alone. Staging CTs of prostate cancer are mostly negative (the "
        "bpMRI study's cohort is 67% metastasis-free, screening cohorts far more), but the CT models need lesions "
        "to learn from; 0.4 keeps most patients with lesions while a clean scan is common enough that the models "
        "learn to leave benign dense bone alone (a 10-patient cohort has 4)."))
    mean_lesions: float = Field(3.0, ge=1, le=20, description="Mean lesion count of patients with lesions.")
    max_lesions: int = Field(8, ge=1, le=30, description="Cap on lesions per patient.")
    diffuse_fraction: float = Field(0.2, ge=0, le=1, description="Fraction of lesions that replace most of a bone.")
    lytic_fraction: float = Field(0.1, ge=0, le=1, description="Fraction of lesions that are lytic (rest sclerotic).")
    focal_diameter_mm: tuple[float, float] = Field((8.0, 30.0), description="Range of focal nodule diameters (mm).")
    min_lesion_voxels: int = Field(4, ge=1, description="Smallest lesion kept, so that every lesion is visible.")
    min_focal_width_voxels: float = Field(4.0, ge=1, le=32, description=(
        "Smallest focal nodule diameter in in-plane voxels (raises the lower end of focal_diameter_mm on coarse "
        "grids): the study's 8 mm nodules are 11 voxels wide at its 0.7 mm pixels, while at the demo's 3.9 mm "
        "they would be 2, drawn like cortex and lost to a one-voxel boundary error."))
    bone_islands_per_patient: float = Field(1.0, ge=0, le=10, description=(
        "Mean number (Poisson) of bone islands (enostoses) per patient, lesion-free or not: round, homogeneous, "
        "cortex-dense foci in the trabecular bone of spine, pelvis and femora, never in the lesion mask. More than "
        "real prevalence (a few % to ~15% of adults show one on CT), so that the models meet enough benign dense "
        "foci to learn to leave alone; 0 turns them off."))
    bone_island_diameter_mm: tuple[float, float] = Field((2.0, 12.0), description=(
        "Range of bone-island diameters (equivalent sphere, drawn log-uniformly: 90% under 1 cm with the "
        "default), smaller than the focal metastases, which are also heterogeneous and irregular."))
    osteophyte_fraction: float = Field(0.7, ge=0, le=1, description=(
        "Chance that a patient of the cohort's mean age (71) has vertebral osteophytes, its odds doubling per "
        "decade of age; affected patients get more and longer spurs with age (1-9 mm, cortical density) at "
        "vertebral-body endplate margins. Spondylotic osteophytes are found in most men over 65. They are part of "
        "their vertebra in the bone map (as TotalSegmentator labels them) and never in the lesion mask; 0 turns "
        "them off."))
    max_cortex_share: float = Field(0.5, gt=0, le=1, description=(
        "A sclerotic lesion lying more than this share in cortex is drawn in another bone: on a coarse grid the "
        "skull, ribs and scapulae are cortex through and through, and sclerosis there would not change the image "
        "(1 keeps every draw)."))

    @model_validator(mode="after")
    def _check(self) -> "CTSynthConfig":
        lo, hi = self.focal_diameter_mm
        if not 0 < lo <= hi:
            raise InputError(f"focal_diameter_mm must be increasing and positive, got {self.focal_diameter_mm}")
        lo, hi = self.bone_island_diameter_mm
        if not 0 < lo <= hi <= 40:
            raise InputError(f"bone_island_diameter_mm must be increasing, positive and at most 40 mm, got "
                             f"{self.bone_island_diameter_mm}")
        return self

    @property
    def spacing(self) -> tuple[float, float, float]:
        sp = self.fov_mm / self.inplane_size
        return (sp, sp, self.slice_thickness_mm)
