"""Synthetic bpMRI cohort: pelvis phantoms with prostate and index tumour, two centres.

The anatomy is an analytic model in world coordinates (LPS, mm, prostate near the
origin). Each sequence is rendered by evaluating that model at the voxel centres of its
own grid, so T2 and the coarser DWI/ADC grids (different matrix, field of view and
origin; centre C2 slightly oblique) agree in physical space exactly as real acquisitions
do, and only a physical-space resampling brings them together.

Signal model per tissue (relative T2 signal, ADC in 10^-3 mm2/s, DWI S0): tumour dark on
T2 and ADC, bright on high-b, with its T2 signal, ADC, S0, texture heterogeneity, size and
extraprostatic extension taken per patient from the phenotype drawn by
``osteomet.data.synth.clinical`` (where the BM signal lives); high-b DWI is
``S0 * exp(-b * ADC)`` with Rician noise; ADC is stored in 10^-6 mm2/s like scanner maps.
Vendor intensity scale and grids follow the two centres of the reproduced study (GE
512/0.39 mm T2, Siemens 320/0.63 mm T2, 4 mm slices; DWI 256 matrix), shrunk in-plane by
``config.scale`` for speed.
"""

from osteomet.data.synth.mri.anatomy import TISSUES, Anatomy
from osteomet.data.synth.mri.cohort import (
    MIN_INTERNAL,
    SPLIT_MINIMUM,
    centre_counts,
    check_run_mri_size,
    generate_mri_cohort,
    plan_centres,
    scorable_splits,
)
from osteomet.data.synth.mri.config import MRISynthConfig
from osteomet.data.synth.mri.render import synthesize_mri_patient
from osteomet.data.synth.mri.scanner import B_VALUE, CENTRES, CentreSpec, SequenceGrid, make_grid, world_coordinates

__all__ = [
    "B_VALUE",
    "CENTRES",
    "MIN_INTERNAL",
    "SPLIT_MINIMUM",
    "TISSUES",
    "Anatomy",
    "CentreSpec",
    "MRISynthConfig",
    "SequenceGrid",
    "centre_counts",
    "check_run_mri_size",
    "generate_mri_cohort",
    "make_grid",
    "plan_centres",
    "scorable_splits",
    "synthesize_mri_patient",
    "world_coordinates",
]
