"""Patient-level anatomy: body size, vertebra heights, body outline along z, per-patient tissue HU."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from osteomet.data.synth.ct.materials import _TISSUE_HU


@dataclass
class Vertebra:
    label: int
    zc: float
    h: float
    a: float
    b: float
    yc: float


@dataclass
class Anatomy:
    """Per-patient parameters; lengths in anatomical mm (before the size factor)."""

    scale: float
    shift: np.ndarray  # world = scale * anat + shift
    fat: float  # subcutaneous fat thickness, anatomical mm
    age: float
    trab_hu: float
    cort_hu: float
    marrow_hu: float
    tissue_jitter: np.ndarray
    vertebrae: list[Vertebra] = field(default_factory=list)
    disc_z: list[tuple[float, float, float, float, float]] = field(default_factory=list)  # z0, z1, a, b, yc
    ribs: list[dict] = field(default_factory=list)
    z_shoulder: float = 590.0
    z_c1_top: float = 730.0
    z_diaphragm: float = 420.0
    head_c: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def y_spine(self, z: np.ndarray | float) -> np.ndarray:
        """Centre (y) of the vertebral bodies: lumbar lordosis, thoracic kyphosis, cervical lordosis."""
        return np.interp(z, [100, 200, 290, 450, 590, 660, 740], [24, 8, 18, 45, 30, 12, 15])


def _sample_anatomy(rng: np.random.Generator) -> Anatomy:
    scale = float(np.clip(rng.normal(1.0, 0.04), 0.9, 1.1))
    age = float(np.clip(rng.normal(71.0, 8.0), 50, 90))
    anatomy = Anatomy(
        scale=scale,
        shift=np.array([rng.normal(0, 8), rng.normal(-5, 8), rng.uniform(-700, -300)]),
        fat=float(rng.uniform(8, 35)),
        age=age,
        trab_hu=float(np.clip(260 - 3.0 * (age - 55) + rng.normal(0, 15), 115, 290)),
        cort_hu=float(np.clip(rng.uniform(1300, 1700) - 4.0 * (age - 55), 1000, 1800)),
        marrow_hu=float(rng.uniform(-70, -20)),
        tissue_jitter=rng.normal(0, 4, size=len(_TISSUE_HU)).astype(np.float32),
    )
    # vertebral column, stacked from the sacral promontory
    z = 105.0
    specs = []  # (label, h, a, b, disc below)
    for i, (h, a, b) in enumerate([(27, 26, 18), (27, 25, 18), (27, 24, 17), (26, 23, 17), (25, 22, 16)]):
        specs.append((27 + i, h, a, b, 10.0))
    for i in range(12):  # T12 .. T1
        f = i / 11
        specs.append((32 + i, 24 - 8 * f, 21 - 7 * f, 16 - 5 * f, 8.0 - 3 * f if i else 9.0))
    for i in range(5):  # C7 .. C3
        specs.append((44 + i, 14, 13 - 0.3 * i, 9, 5.0))
    specs.append((49, 18, 12, 9, 4.0))  # C2 body (dens added at render time)
    specs.append((50, 11, 22, 20, 3.0))  # C1 ring
    for label, h, a, b, disc in specs:
        h, a, b = (v * rng.normal(1.0, 0.02) for v in (h, a, b))
        z0 = z + disc
        zc = z0 + h / 2
        yc = float(anatomy.y_spine(zc))
        if label != 50:
            prev = anatomy.vertebrae[-1] if anatomy.vertebrae else None
            anatomy.disc_z.append((z, z0, prev.a if prev else a, prev.b if prev else b, yc))
        anatomy.vertebrae.append(Vertebra(label, zc, h, a, b, yc))
        z = z0 + h
    anatomy.z_c1_top = z
    by_label = {v.label: v for v in anatomy.vertebrae}
    anatomy.z_shoulder = by_label[43].zc + 5  # T1
    # ribs: posterior end at the body of T_k, arc of the rib-cage ellipse
    table = [  # a, b, drop, tr, tz
        (62, 48, 25, 5, 6), (92, 65, 45, 4, 7), (110, 75, 60, 4, 7), (122, 82, 75, 4, 7), (130, 86, 85, 4, 7),
        (134, 88, 90, 4, 7), (135, 88, 95, 4, 7), (134, 87, 90, 4, 7), (130, 85, 80, 4, 7), (125, 82, 70, 4, 6),
        (118, 78, 45, 4, 5), (108, 72, 30, 4, 5),
    ]
    x_end = [35, 50, 60, 70, 75, 80, 85]
    for k in range(12):
        a, b, drop, tr, tz = table[k]
        a, b = a * rng.normal(1, 0.02), b * rng.normal(1, 0.02)
        vert = by_label[43 - k]
        z_post = vert.zc + 0.3 * vert.h
        yc = vert.yc + 28 - b
        phi0 = float(np.arcsin(28 / a))
        phi1 = float(np.pi - np.arcsin(x_end[k] / a)) if k < 7 else [2.25, 2.1, 1.95, 1.6, 1.3][k - 7]
        anatomy.ribs.append(dict(k=k + 1, a=a, b=b, yc=yc, z_post=z_post, drop=drop, phi0=phi0, phi1=phi1,
                                 tr=tr, tz=tz, vert=vert))
    anatomy.z_diaphragm = anatomy.ribs[10]["z_post"]
    c1 = by_label[50]
    anatomy.head_c = np.array([0.0, c1.yc - 10, anatomy.z_c1_top + 88])
    return anatomy


def _thorax(anatomy: Anatomy, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rib-cage ellipse (a, b, y centre) at heights z, interpolated between the ribs' mid-arcs."""
    ribs = sorted(anatomy.ribs, key=lambda r: r["z_post"] - 0.5 * r["drop"])
    zk = [r["z_post"] - 0.5 * r["drop"] for r in ribs]
    return (np.interp(z, zk, [r["a"] for r in ribs]), np.interp(z, zk, [r["b"] for r in ribs]),
            np.interp(z, zk, [r["yc"] for r in ribs]))


_BODY_Z = [-60, 40, 160, 300, 420, 520, 590, 625, 650, 740]
_BODY_A = [160, 158, 150, 145, 150, 152, 158, 120, 60, 58]
_BODY_B = [112, 110, 100, 100, 110, 115, 100, 80, 55, 55]
_BODY_Y = [5, 5, 0, 0, -8, -8, 0, 10, 20, 15]


def _trunk(anatomy: Anatomy, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lean (muscle) trunk ellipse semi-axes and y centre at heights z, shoulders anchored to T1."""
    zz = np.asarray(_BODY_Z, float)
    zz[6:] += anatomy.z_shoulder - 590
    return np.interp(z, zz, _BODY_A), np.interp(z, zz, _BODY_B), np.interp(z, zz, _BODY_Y)
