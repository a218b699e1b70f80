"""One patient rendered on the grids of one centre: T2, high-b DWI, ADC, tumour and prostate masks.

Each sequence evaluates the analytic anatomy at the voxel centres of its own grid, so T2 and
the coarser DWI/ADC grids agree in physical space exactly as real acquisitions do. High-b DWI
is ``S0 * exp(-b * ADC)`` with Rician noise; ADC is stored in 10^-6 mm2/s like scanner maps.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from osteomet.data.synth.mri.anatomy import Anatomy
from osteomet.data.synth.mri.config import MRISynthConfig
from osteomet.data.synth.mri.scanner import B_VALUE, CENTRES, _rotation_x, make_grid, world_coordinates
from osteomet.errors import InputError


def _partial_volume(array: np.ndarray, image: sitk.Image) -> np.ndarray:
    """Blur by about half a voxel: thick slices and coarse matrices average tissues."""
    spacing = np.array(image.GetSpacing())[::-1]
    sigma = np.clip(0.45 / np.maximum(spacing / spacing.min(), 1.0), 0.2, 0.45)
    return ndimage.gaussian_filter(array, sigma=sigma, mode="nearest")


def _to_image(array: np.ndarray, grid: sitk.Image, pixel: int) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(grid)
    return sitk.Cast(image, pixel)


def synthesize_mri_patient(centre: str, phenotype: dict, rng: np.random.Generator,
                           config: MRISynthConfig) -> dict[str, sitk.Image]:
    """Render T2, high-b DWI, ADC, the tumour mask and the prostate mask (both on the T2 grid)."""
    spec = CENTRES[centre]
    anatomy = Anatomy.sample(phenotype, rng)
    direction = _rotation_x(spec.tilt_deg)
    t2_centre = anatomy.prostate_c + rng.normal(0.0, 4.0, size=3)
    dwi_centre = t2_centre + np.array([rng.normal(0, 6), rng.normal(-5, 6), rng.normal(0, 4)])
    t2_grid = make_grid(spec.t2, config.scale, t2_centre, direction, config.slices)
    # DWI keeps its scanner resolution where it can, always coarser than T2 (about 1.3x).
    dwi_grid = make_grid(spec.dwi, 1.0, dwi_centre, direction, config.slices,
                         min_spacing_mm=1.3 * t2_grid.GetSpacing()[0])

    x, y, z = world_coordinates(t2_grid)
    t2_sig, _, _, tumour = anatomy.render(x, y, z)
    t2_sig = _partial_volume(t2_sig, t2_grid) * anatomy.bias_field(x, y, z)
    factor = config.c2_noise_factor if centre == "C2" else 1.0  # site SNR (coil, acceleration)
    noise = config.t2_noise * factor
    t2_mag = np.sqrt((t2_sig + rng.normal(0, noise, t2_sig.shape)) ** 2 + rng.normal(0, noise, t2_sig.shape) ** 2)
    t2_arr = t2_mag * spec.t2_scale + spec.t2_offset

    x, y, z = world_coordinates(dwi_grid)
    _, adc, s0, _ = anatomy.render(x, y, z)
    adc = _partial_volume(adc, dwi_grid)
    s0 = _partial_volume(s0, dwi_grid) * anatomy.bias_field(x, y, z)
    highb = s0 * np.exp(-B_VALUE * adc * 1e-3)
    sigma = config.dwi_noise * factor
    highb = np.sqrt((highb + rng.normal(0, sigma, highb.shape)) ** 2 + rng.normal(0, sigma, highb.shape) ** 2)
    adc_arr = np.where(s0 > 0.03, adc + rng.normal(0, config.adc_noise * factor, adc.shape), 0.0)
    adc_arr = np.clip(adc_arr, 0.0, 4.0) * 1000.0  # 10^-6 mm2/s, as scanners store it

    if not tumour.any():  # not seen at scale >= MIN_SCALE for >= 0.4 mL; guard anyway
        raise InputError(f"a synthetic tumour fell between the voxels of centre {centre}'s T2 grid at scale "
                         f"{config.scale:g} ({t2_grid.GetSpacing()[0]:.1f} mm voxels); use a larger --scale")
    prostate = Anatomy._ellipsoid(*world_coordinates(t2_grid), anatomy.prostate_c, anatomy.prostate_r) <= 1.0
    return {
        "prostate": _to_image(prostate.astype(np.uint8), t2_grid, sitk.sitkUInt8),
        "t2": _to_image(t2_arr.astype(np.float32), t2_grid, sitk.sitkInt16),
        "dwi": _to_image((highb * spec.dwi_scale).astype(np.float32), dwi_grid, sitk.sitkInt16),
        "adc": _to_image(adc_arr.astype(np.float32), dwi_grid, sitk.sitkInt16),
        "mask": _to_image(tumour.astype(np.uint8), t2_grid, sitk.sitkUInt8),
    }
