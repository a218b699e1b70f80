"""One patient's pelvis: analytic shapes in world mm and the signal of each tissue at any world point.

Signal model per tissue (relative T2 signal, ADC in 10^-3 mm2/s, DWI S0): tumour dark on T2
and ADC, bright on high-b, with its T2 signal, ADC, S0, texture heterogeneity, size and
extraprostatic extension taken from the patient's phenotype (``osteomet.data.synth.clinical``).
Textures are analytic too, so every grid samples the same patient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
