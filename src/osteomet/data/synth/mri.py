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

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pandas as pd
import SimpleITK as sitk
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

from osteomet.data.io import write_image
from osteomet.data.manifest import write_manifest
from osteomet.data.splits import assign_splits
from osteomet.data.synth._cohort import start_cohort, write_synth_record
from osteomet.data.synth.clinical import (
    CENTRE_PREVALENCE,
    EXTERNAL_FRACTION,
    apply_missingness,
    draw_labels,
    sample_clinical,
    sample_tumour_phenotype,
)
from osteomet.utils.files import write_text_atomic
from osteomet.utils.parallel import map_tasks

B_VALUE = 1400.0  # s/mm2, high-b DWI of the study


@dataclass(frozen=True)
class SequenceGrid:
    matrix: int  # in-plane matrix at scale 1
    spacing_mm: float  # in-plane spacing at scale 1
    slices: int
    slice_mm: float


@dataclass(frozen=True)
class CentreSpec:
    """Scanner of one centre: grids, vendor intensity scale and obliquity."""

    vendor: str
    t2: SequenceGrid
    dwi: SequenceGrid
    t2_scale: float
    t2_offset: float
    dwi_scale: float
    tilt_deg: float  # rotation about the left-right axis (oblique axial)


CENTRES: dict[str, CentreSpec] = {
    "C1": CentreSpec("GE 3T", SequenceGrid(512, 0.39, 24, 4.0), SequenceGrid(256, 0.78, 20, 4.0),
                     t2_scale=1000.0, t2_offset=0.0, dwi_scale=900.0, tilt_deg=0.0),
    "C2": CentreSpec("Siemens 3T", SequenceGrid(320, 0.63, 24, 4.0), SequenceGrid(256, 1.0, 20, 4.0),
                     t2_scale=420.0, t2_offset=25.0, dwi_scale=260.0, tilt_deg=4.0),
}


class MRISynthConfig(BaseModel):
    """Knobs of the synthetic bpMRI cohort (defaults: demo-sized, both centres)."""

    model_config = ConfigDict(extra="forbid")

    scale: float = Field(0.25, gt=0, le=1.0, description="in-plane matrix factor; 1.0 = scanner matrix (512/320)")
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


# Tissue properties: (T2 relative signal, ADC 10^-3 mm2/s, DWI S0 relative).
TISSUES: dict[str, tuple[float, float, float]] = {
    "air": (0.0, 0.0, 0.0),
    "fat": (0.9, 0.3, 0.08),
    "muscle": (0.28, 1.4, 0.35),
    "marrow": (0.72, 0.45, 0.15),
    "cortex": (0.05, 0.2, 0.02),
    "urine": (1.35, 3.0, 1.0),
    "wall": (0.32, 1.4, 0.45),
    "rectal_air": (0.02, 0.0, 0.01),
    "vessel": (0.1, 2.0, 0.2),
    "pz": (0.85, 1.8, 0.7),
    "tz": (0.5, 1.35, 0.55),
}


def _rotation_x(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])


def make_grid(seq: SequenceGrid, scale: float, centre_mm: np.ndarray, direction: np.ndarray,
              slices: int | None = None, min_spacing_mm: float = 0.0) -> sitk.Image:
    """Blank image whose grid is centred on ``centre_mm`` (the scanner's field of view).

    The matrix shrinks by ``scale`` but never below the resolution ``min_spacing_mm``
    asks for; the field of view is kept either way.
    """
    fov = seq.matrix * seq.spacing_mm
    matrix = max(16, int(round(seq.matrix * scale)))
    if min_spacing_mm > 0:
        matrix = min(matrix, int(fov // min_spacing_mm))
    spacing = fov / matrix
    n_slices = slices or seq.slices
    size = np.array([matrix, matrix, n_slices])
    spacing_v = np.array([spacing, spacing, seq.slice_mm])
    origin = centre_mm - direction @ ((size - 1) / 2.0 * spacing_v)
    image = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    image.SetSpacing([float(s) for s in spacing_v])
    image.SetOrigin([float(o) for o in origin])
    image.SetDirection([float(d) for d in direction.ravel()])
    return image


def world_coordinates(image: sitk.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World x, y, z of every voxel centre, as arrays in numpy (z, y, x) order."""
    size = image.GetSize()
    k, j, i = np.meshgrid(np.arange(size[2]), np.arange(size[1]), np.arange(size[0]), indexing="ij")
    idx = np.stack([i, j, k], axis=-1).astype(np.float32) * np.asarray(image.GetSpacing(), np.float32)
    direction = np.asarray(image.GetDirection(), np.float32).reshape(3, 3)
    world = idx @ direction.T + np.asarray(image.GetOrigin(), np.float32)
    return world[..., 0], world[..., 1], world[..., 2]


class _RandomField:
    """Smooth random texture from random Fourier features: analytic, so identical on every grid."""

    def __init__(self, rng: np.random.Generator, n: int, wavelength_mm: tuple[float, float]):
        lengths = rng.uniform(*wavelength_mm, size=n)
        dirs = rng.normal(size=(n, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        self.k = (2 * np.pi / lengths)[:, None] * dirs
        self.phase = rng.uniform(0, 2 * np.pi, size=n)
        self.scale = np.sqrt(2.0 / n)

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        out = np.zeros_like(x)
        for (kx, ky, kz), ph in zip(self.k, self.phase):
            out += np.cos(kx * x + ky * y + kz * z + ph)
        return out * self.scale


@dataclass
class Anatomy:
    """One patient's pelvis: analytic shapes in world mm, sampled from the patient's RNG."""

    prostate_c: np.ndarray
    prostate_r: np.ndarray
    tz_c: np.ndarray
    tz_r: np.ndarray
    tumour_c: np.ndarray
    tumour_r: np.ndarray
    tumour_harmonics: np.ndarray
    tumour_epe: bool
    tumour_adc: float
    tumour_t2: float
    tumour_s0: float
    heterogeneity: float
    body_r: np.ndarray
    bladder_c: np.ndarray
    bladder_r: np.ndarray
    rectum_c: np.ndarray
    rectum_r: float
    bias: np.ndarray
    tz_texture: _RandomField
    tumour_texture: _RandomField

    @classmethod
    def sample(cls, phenotype: dict, rng: np.random.Generator) -> "Anatomy":
        prostate_volume = rng.uniform(30.0, 60.0) * 1000.0  # mm3
        shape = np.array([1.35, 1.0, 1.25]) * rng.uniform(0.9, 1.1, size=3)  # LR, AP, SI
        base = (prostate_volume / (4 / 3 * np.pi * np.prod(shape))) ** (1 / 3)
        prostate_r = base * shape
        prostate_c = rng.normal(0.0, 3.0, size=3)
        tz_r = prostate_r * np.array([0.62, 0.55, 0.7]) * rng.uniform(0.9, 1.15)
        tz_c = prostate_c + np.array([0.0, -0.3 * prostate_r[1], 0.1 * prostate_r[2]])

        volume = phenotype["tumour_volume_ml"] * 1000.0
        aspect = rng.uniform(0.8, 1.25, size=3)
        radius = (volume / (4 / 3 * np.pi * np.prod(aspect))) ** (1 / 3) * aspect
        if phenotype["zone"] == "TZ":
            direction = np.array([rng.uniform(-1, 1), rng.uniform(-1, 0.2), rng.uniform(-0.5, 0.5)])
            tumour_c = tz_c + direction / np.linalg.norm(direction) * 0.35 * tz_r
        else:  # posterior-lateral peripheral zone
            angle = rng.uniform(np.deg2rad(20), np.deg2rad(160)) * rng.choice([-1, 1])
            unit = np.array([np.cos(angle), abs(np.sin(angle)), rng.uniform(-0.4, 0.4)])
            unit /= np.linalg.norm(unit)
            reach = np.linalg.norm(unit * prostate_r)
            # Organ-confined tumours sit inside the capsule; EPE ones bulge through it.
            depth = reach - radius.max() * (0.25 if phenotype["epe"] else 1.1)
            tumour_c = prostate_c + unit * max(depth, 0.3 * reach)
        return cls(
            prostate_c=prostate_c, prostate_r=prostate_r, tz_c=tz_c, tz_r=tz_r,
            tumour_c=tumour_c, tumour_r=radius, tumour_harmonics=rng.normal(0.0, 0.08, size=(3, 2)),
            tumour_epe=bool(phenotype["epe"]), tumour_adc=phenotype["tumour_adc"],
            tumour_t2=phenotype["tumour_t2"], tumour_s0=phenotype["tumour_s0"],
            heterogeneity=phenotype["heterogeneity"],
            body_r=np.array([170.0, 120.0]) * rng.uniform(0.9, 1.12),
            bladder_c=prostate_c + np.array([rng.normal(0, 4), -12.0, prostate_r[2] + 28.0]),
            bladder_r=np.array([42.0, 34.0, 28.0]) * rng.uniform(0.7, 1.2),
            rectum_c=np.array([rng.normal(0, 3), prostate_c[1] + prostate_r[1] + 17.0]),
            rectum_r=float(rng.uniform(13.0, 18.0)),
            bias=rng.normal(0.0, 0.08, size=3),
            tz_texture=_RandomField(rng, 12, (6.0, 14.0)),
            tumour_texture=_RandomField(rng, 16, (3.0, 8.0)),
        )

    # ---- shapes ---------------------------------------------------------------------
    @staticmethod
    def _ellipsoid(x, y, z, c, r) -> np.ndarray:
        return ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2

    def tumour_inside(self, x, y, z) -> np.ndarray:
        """Irregular ellipsoid: radius modulated by low-order harmonics of the direction."""
        dx, dy, dz = (x - self.tumour_c[0]), (y - self.tumour_c[1]), (z - self.tumour_c[2])
        rho = np.sqrt((dx / self.tumour_r[0]) ** 2 + (dy / self.tumour_r[1]) ** 2 + (dz / self.tumour_r[2]) ** 2)
        norm = np.sqrt(dx**2 + dy**2 + dz**2) + 1e-6
        u = np.stack([dx / norm, dy / norm, dz / norm])
        h = self.tumour_harmonics
        bumps = sum(h[a, 0] * np.sin(2 * np.pi * u[a]) + h[a, 1] * np.cos(3 * np.pi * u[a]) for a in range(3))
        inside = rho <= 1.0 + bumps
        if not self.tumour_epe:
            inside &= self._ellipsoid(x, y, z, self.prostate_c, self.prostate_r) <= 1.0
        return inside

    def render(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """T2 signal, ADC, DWI S0 and the tumour indicator at the given world points."""
        t2 = np.zeros(x.shape, np.float32)
        adc = np.zeros(x.shape, np.float32)
        s0 = np.zeros(x.shape, np.float32)

        def paint(region: np.ndarray, tissue: str) -> None:
            a, b, c = TISSUES[tissue]
            t2[region], adc[region], s0[region] = a, b, c

        by = y - 15.0
        body = (x / self.body_r[0]) ** 2 + (by / self.body_r[1]) ** 2
        paint(body <= 1.0, "fat")
        # gluteal and obturator muscles, levator ani sling
        for side in (-1, 1):
            paint(((x - side * 85) / 55) ** 2 + ((y - 70) / 38) ** 2 <= 1.0, "muscle")
            paint(((x - side * 52) / 13) ** 2 + ((y - 2) / 36) ** 2 <= 1.0, "muscle")
        sling = ((x / 38) ** 2 + ((y - 22) / 40) ** 2)
        paint((sling <= 1.0) & (sling >= 0.72) & (body <= 1.0), "muscle")
        # bones: femoral heads with cortex, pubic symphysis, ischial tuberosities
        for side in (-1, 1):
            fem = self._ellipsoid(x, y, z, (side * 96, -6, 8), (25, 25, 25))
            paint(fem <= 1.0, "cortex")
            paint(fem <= 0.8, "marrow")
            pub = ((x - side * 14) / 12) ** 2 + ((y + 58) / 11) ** 2
            paint(pub <= 1.0, "cortex")
            paint(pub <= 0.65, "marrow")
            isc = ((x - side * 58) / 14) ** 2 + ((y - 38) / 14) ** 2 + ((z + 25) / 30) ** 2
            paint(isc <= 1.0, "cortex")
            paint(isc <= 0.7, "marrow")
            paint(((x - side * 75) / 4.5) ** 2 + ((y + 48) / 4.5) ** 2 <= 1.0, "vessel")
        # bladder (wall + urine) above the prostate, rectum behind it
        bladder = self._ellipsoid(x, y, z, self.bladder_c, self.bladder_r)
        paint(bladder <= 1.0, "wall")
        paint(bladder <= 0.85, "urine")
        rect = ((x - self.rectum_c[0]) ** 2 + (y - self.rectum_c[1]) ** 2) / self.rectum_r**2
        paint(rect <= 1.0, "wall")
        paint(rect <= 0.35, "rectal_air")
        # prostate: peripheral zone, transition zone with BPH-like texture
        prostate = self._ellipsoid(x, y, z, self.prostate_c, self.prostate_r) <= 1.0
        paint(prostate, "pz")
        tz = prostate & (self._ellipsoid(x, y, z, self.tz_c, self.tz_r) <= 1.0)
        if tz.any():
            tex = self.tz_texture(x[tz], y[tz], z[tz])
            t2[tz] = TISSUES["tz"][0] * (1.0 + 0.22 * tex)
            adc[tz] = TISSUES["tz"][1] * (1.0 + 0.08 * tex)
            s0[tz] = TISSUES["tz"][2]
        tumour = self.tumour_inside(x, y, z)
        if tumour.any():
            tex = self.tumour_texture(x[tumour], y[tumour], z[tumour])
            h = self.heterogeneity
            t2[tumour] = self.tumour_t2 * (1.0 + 1.6 * h * tex)
            adc[tumour] = self.tumour_adc * (1.0 + 1.2 * h * tex)
            s0[tumour] = self.tumour_s0 * (1.0 + 0.8 * h * tex)
        outside_body = body > 1.0
        paint(outside_body, "air")
        return t2, adc, s0, tumour

    def bias_field(self, x, y, z) -> np.ndarray:
        """Smooth receive-coil sensitivity (brighter near the posterior coil)."""
        b = self.bias
        return (1.0 + b[0] * x / 100.0 + (0.1 + b[1]) * (y / 100.0) + b[2] * (z / 100.0) ** 2).astype(np.float32)


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

    if not tumour.any():  # cannot happen for >= 0.4 mL at these grids; guard anyway
        raise RuntimeError("synthetic tumour fell between voxels; increase config.scale")
    prostate = Anatomy._ellipsoid(*world_coordinates(t2_grid), anatomy.prostate_c, anatomy.prostate_r) <= 1.0
    return {
        "prostate": _to_image(prostate.astype(np.uint8), t2_grid, sitk.sitkUInt8),
        "t2": _to_image(t2_arr.astype(np.float32), t2_grid, sitk.sitkInt16),
        "dwi": _to_image((highb * spec.dwi_scale).astype(np.float32), dwi_grid, sitk.sitkInt16),
        "adc": _to_image(adc_arr.astype(np.float32), dwi_grid, sitk.sitkInt16),
        "mask": _to_image(tumour.astype(np.uint8), t2_grid, sitk.sitkUInt8),
    }


def _patient_task(args: tuple) -> dict:
    """Generate and write one patient (a process-pool task; RNG from its own SeedSequence)."""
    index, centre, label, seed_seq, config, out = args
    rng = np.random.default_rng(seed_seq)
    pid = f"MRI{index + 1:03d}"
    clinical = sample_clinical(label, rng)
    phenotype = sample_tumour_phenotype(label, clinical["isup"], rng)
    images = synthesize_mri_patient(centre, phenotype, rng, config)
    ext = config.image_format
    paths = {
        "t2": out / "images" / f"{pid}_t2.{ext}",
        "dwi": out / "images" / f"{pid}_dwi.{ext}",
        "adc": out / "images" / f"{pid}_adc.{ext}",
        "mask": out / "labels" / f"{pid}_tumour.{ext}",
    }
    for key, path in paths.items():
        write_image(images[key], path)
    prostate_path = write_image(images["prostate"], out / "labels" / f"{pid}_prostate.{ext}")
    mask = sitk.GetArrayViewFromImage(images["mask"])
    voxel_ml = float(np.prod(images["mask"].GetSpacing())) / 1000.0
    clinical = apply_missingness(clinical, config.missing_rate, rng)
    return {
        "manifest": {"patient_id": pid, "centre": centre, "label": label, **clinical,
                     **{k: str(p.relative_to(out)) for k, p in paths.items()}},
        "truth": {"patient_id": pid, "centre": centre, "label": label, **phenotype,
                  "mask_volume_ml": float(mask.sum()) * voxel_ml,
                  "prostate_mask": str(prostate_path.relative_to(out))},
    }


def plan_centres(n: int, external_fraction: float, rng: np.random.Generator) -> list[tuple[str, int]]:
    """Centre and BM label per patient: C1 first, then the external centre C2."""
    n_c2 = int(round(n * external_fraction)) if n >= 4 else 0
    n_c1 = n - n_c2
    plan = [("C1", int(lab)) for lab in draw_labels(n_c1, CENTRE_PREVALENCE["C1"], rng)]
    plan += [("C2", int(lab)) for lab in draw_labels(n_c2, CENTRE_PREVALENCE["C2"], rng)]
    return plan


def generate_mri_cohort(out: str | Path, n: int, *, seed: int = 0, config: MRISynthConfig | None = None,
                        progress: Callable[[], None] | None = None, overwrite: bool = False, jobs: int = 1) -> Path:
    """Write ``n`` synthetic bpMRI patients and their manifest into ``out``; return the manifest path.

    Each patient draws from its own child of ``SeedSequence(seed)``, so the cohort is the
    same whatever ``jobs`` is. Centre C2 patients are the external test set; C1 is split
    6:1:3 into train/val/test by patient, stratified by label.
    """
    out, manifest_path = start_cohort(out, n, overwrite=overwrite)
    config = config or MRISynthConfig()
    start = time.perf_counter()
    root = np.random.SeedSequence(seed)
    plan_rng = np.random.default_rng(root.spawn(1)[0])
    plan = plan_centres(n, config.external_fraction, plan_rng)
    children = np.random.SeedSequence(seed, spawn_key=(1,)).spawn(n)
    tasks = [(i, centre, label, children[i], config, out) for i, (centre, label) in enumerate(plan)]
    results = map_tasks(_patient_task, tasks, jobs=jobs, progress=progress)

    manifest = pd.DataFrame([r["manifest"] for r in results])
    manifest["split"] = assign_splits(manifest, ratios=config.split_ratios, seed=seed, external_centres=("C2",))
    write_manifest(manifest, manifest_path, kind="mri", overwrite=overwrite)
    truth = pd.DataFrame([r["truth"] for r in results])
    write_text_atomic(out / "truth.csv", truth.to_csv(index=False))
    write_synth_record(out, "mri", n=n, seed=seed, config=config, started=start)
    return manifest_path
