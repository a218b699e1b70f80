"""Soft tissues around the skeleton: fat, muscle, organs, lungs, bowel gas (material codes)."""

from __future__ import annotations

import numpy as np

from osteomet.data.synth._shapes import Capsule, Ellipsoid, Grid, ZCylinder
from osteomet.data.synth.ct.anatomy import Anatomy, _thorax, _trunk
from osteomet.data.synth.ct.bones import _arm_points, _rot_z
from osteomet.data.synth.ct.materials import (
    AIR,
    BLOOD,
    BOWEL,
    BRAIN,
    DISC,
    FAT,
    GAS,
    KIDNEY,
    LIVER,
    LUNG,
    MUSCLE,
    SPLEEN,
    URINE,
    VISCERAL_FAT,
)


def _paint(tissue: np.ndarray, grid: Grid, prim, code: int, where: tuple[int, ...] | None = None) -> None:
    """Paint a primitive's interior with a tissue code (optionally only over the given codes)."""
    lo, hi = prim.bounds()
    sl = grid.box(lo, hi)
    if sl is None:
        return
    inside = prim.depth(*grid.coords(sl)) > 0
    sub = tissue[sl]
    inside = np.broadcast_to(inside, sub.shape)
    if where is not None:
        inside = inside & np.isin(sub, where)
    sub[inside] = code


def _soft_tissue(grid: Grid, anatomy: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Tissue code map of everything but bone: fat, muscle, organs, lungs, brain, air."""
    X, Y, Z = grid.coords((slice(None), slice(None), slice(None)))
    z1 = grid.z
    fat = anatomy.fat
    tissue = np.zeros(grid.shape, np.uint8)
    a, b, yb = (v[:, None, None] for v in _trunk(anatomy, z1))
    has_trunk = ((z1 >= -60) & (z1 <= anatomy.z_c1_top + 5))[:, None, None]
    fz = np.where(z1 > anatomy.z_shoulder + 40, 0.4, 1.0)[:, None, None] * fat
    rho_out = ((X / (a + fz)) ** 2 + ((Y - yb) / (b + fz)) ** 2)
    lean = ((X / a) ** 2 + ((Y - yb) / b) ** 2) <= 1
    tissue[(rho_out <= 1) & has_trunk] = FAT
    tissue[lean & has_trunk] = MUSCLE
    # thighs
    legs = (z1 < -20)[:, None, None]
    for s in (1, -1):
        r = np.interp(z1, [-450, -60], [58, 75])[:, None, None]
        cx = s * np.interp(z1, [-450, -60], [85, 100])[:, None, None]
        d2 = (X - cx) ** 2 + ((Y - 5) * 1.1) ** 2
        tissue[(d2 <= (r + 0.8 * fat) ** 2) & legs & (tissue == AIR)] = FAT
        tissue[(d2 <= r**2) & legs] = MUSCLE
    # arms
    z_sh = anatomy.z_shoulder
    for s in (1, -1):
        elbow, wrist = _arm_points(anatomy, s)
        top = (s * 180, 22, z_sh + 5)
        for p0, p1, r0, r1 in ((top, elbow, 40, 33), (elbow, wrist, 33, 24)):
            _paint(tissue, grid, Capsule(p0, p1, r0 + 0.6 * fat, r1 + 0.6 * fat), FAT, (AIR,))
            _paint(tissue, grid, Capsule(p0, p1, r0, r1), MUSCLE)
    # head and face
    hc = anatomy.head_c
    _paint(tissue, grid, Ellipsoid(hc, (78, 98, 94)), FAT, (AIR,))
    _paint(tissue, grid, Ellipsoid((0, hc[1] - 55, hc[2] - 55), (52, 38, 55)), MUSCLE, (AIR, FAT))
    _paint(tissue, grid, Ellipsoid(hc, (76, 96, 92)), MUSCLE)
    _paint(tissue, grid, Ellipsoid(hc, (64, 84, 80)), BRAIN)
    # abdominal cavity: visceral fat in front of the spine
    z_d = anatomy.z_diaphragm
    zsl = grid.box([-1e9, -1e9, -25], [1e9, 1e9, z_d + 60])
    if zsl is not None:
        zz = z1[zsl[0]]
        aa, bb, yy = (v[:, None, None] for v in _trunk(anatomy, zz))
        ys = anatomy.y_spine(zz)[:, None, None]
        cav = (((X / (aa - 14)) ** 2 + ((Y - yy) / (bb - 14)) ** 2) <= 1) & (Y < ys + 5)
        sub = tissue[zsl]
        sub[cav] = VISCERAL_FAT
    verts = {v.label: v for v in anatomy.vertebrae}
    vfat = (VISCERAL_FAT,)
    organs = (VISCERAL_FAT, LIVER, SPLEEN, KIDNEY, BOWEL)
    # bowel loops, some with gas
    for _ in range(22):
        c = (rng.uniform(-110, 110), rng.uniform(-85, 0), rng.uniform(40, z_d - 60))
        r = rng.uniform(14, 28)
        _paint(tissue, grid, Ellipsoid(c, (r, r * rng.uniform(0.7, 1.0), r * rng.uniform(0.8, 1.4))), BOWEL, vfat)
        if rng.random() < 0.35:
            _paint(tissue, grid, Ellipsoid(c, (0.45 * r, 0.4 * r, 0.45 * r)), GAS, (BOWEL,))
    _paint(tissue, grid, Capsule((0, 60, -15), (5, 45, 60), 15), BOWEL, organs + (MUSCLE,))  # rectum
    _paint(tissue, grid, Ellipsoid((0, -40, 15), (38, 30, 32)), URINE, organs + (MUSCLE,))  # bladder
    _paint(tissue, grid, Ellipsoid((-65, -15, z_d - 5), (88, 95, 80)), LIVER, organs)
    _paint(tissue, grid, Ellipsoid((85, 35, z_d - 15), (32, 45, 50)), SPLEEN, organs)
    l2 = verts[30]
    for s in (1, -1):
        _paint(tissue, grid, Ellipsoid((s * 72, l2.yc + 8, l2.zc + (10 if s < 0 else 20)), (27, 24, 55)), KIDNEY, organs)
    # psoas and paraspinal muscles
    for v in anatomy.vertebrae:
        if v.label <= 31:
            t = (v.label - 27) / 4  # 0 at L5, 1 at L1
            for s in (1, -1):
                r = 24 - 14 * t
                _paint(tissue, grid, ZCylinder((s * (v.a + r - 2), v.yc + 2), (s * (v.a + r - 2), v.yc + 2),
                                               v.zc - v.h, v.zc + v.h, r, r * 0.9), MUSCLE, organs + (FAT,))
    for s in (1, -1):
        for z0, z_1 in ((-10, 300), (300, anatomy.z_c1_top)):
            y0, y1 = float(anatomy.y_spine(z0)), float(anatomy.y_spine(z_1))
            rr = 30 if z0 < 300 else 24
            _paint(tissue, grid, ZCylinder((s * 33, y0 + 45), (s * 33, y1 + 42), z0, z_1, rr, 28), MUSCLE,
                   (FAT, VISCERAL_FAT, MUSCLE, BOWEL))
    # thorax: mediastinum, lungs above the domed diaphragm, heart, aorta, trachea
    apex = anatomy.ribs[0]["z_post"] + 25
    zsl = grid.box([-1e9, -1e9, z_d - 30], [1e9, 1e9, apex])
    if zsl is not None:
        zz = z1[zsl[0]]
        at, bt, yt = (v[:, None, None] for v in _thorax(anatomy, zz))
        Zs = zz[:, None, None]
        ys = anatomy.y_spine(zz)[:, None, None]
        inner = ((X / (at - 7)) ** 2 + ((Y - yt) / (bt - 7)) ** 2) <= 1
        dome = np.where(X < 0, z_d + 58, z_d + 45) - 45 * (((np.abs(X) - 70) / 110) ** 2 + ((Y - yt) / 120) ** 2)
        thorax = inner & (Zs > dome)
        sub = tissue[zsl]
        sub[thorax] = MUSCLE
        narrow = np.clip((apex - Zs) / 60, 0.3, 1.0)
        lung = thorax & (np.abs(X) > 18 + 12 * narrow) & ~((np.abs(X) < 45) & (Y > ys - 25))
        lung &= ((X / (at - 9)) ** 2 + ((Y - yt) / (bt - 9)) ** 2) <= np.clip((apex - Zs) / 40, 0, 1)
        sub[lung] = LUNG
        _paint(tissue, grid, Ellipsoid((18, -30, z_d + 70), (60, 48, 55), rot=_rot_z([np.cos(0.5), -np.sin(0.5), 0])),
               BLOOD, (LUNG, MUSCLE))
    t4 = verts[40]
    _paint(tissue, grid, ZCylinder((12, float(anatomy.y_spine(150)) - 28), (18, t4.yc - 28), 150, t4.zc, 12, 12), BLOOD,
           (LUNG, MUSCLE, VISCERAL_FAT, BOWEL, LIVER))
    _paint(tissue, grid, Capsule((18, t4.yc - 28, t4.zc), (5, -40, t4.zc + 25), 13), BLOOD, (LUNG, MUSCLE))
    _paint(tissue, grid, ZCylinder((5, -40), (5, -40), z_d + 60, t4.zc + 25, 14, 14), BLOOD, (LUNG, MUSCLE))
    _paint(tissue, grid, ZCylinder((0, t4.yc - 30), (0, verts[46].yc - 22), t4.zc + 10, verts[46].zc, 9, 9), AIR,
           (LUNG, MUSCLE))
    # intervertebral discs and the spinal canal (soft tissue, unlabelled)
    for z0, z_1, a, b, yc in anatomy.disc_z:
        _paint(tissue, grid, ZCylinder((0, yc), (0, yc), z0 - 1, z_1 + 1, a, b), DISC)
    return tissue
