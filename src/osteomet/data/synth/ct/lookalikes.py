"""Benign dense look-alikes of sclerotic metastases: bone islands (enostoses) and vertebral osteophytes.

Why: on real CT a metastasis-free scan still holds dense bone that is no lesion, and a model
has to learn to leave it alone. Without look-alikes the phantom's lesion-free patients held
nothing a model could mistake, so every dense focus it ever saw was a metastasis (a
lesion-free patient came back positive in 28 of 30 benchmark runs). Both kinds are drawn for
every patient, with or without lesions, from a generator of their own, so their settings
leave the patient's anatomy and scan range as they are. They are painted into the HU but
never into the lesion mask, and the lesions keep clear of them (a look-alike is never part
of a labelled lesion).

* **Bone islands** (:func:`paint_bone_islands`): round to slightly oblong foci in the
  trabecular bone of the pelvis, proximal femora and spine (diameters drawn log-uniformly
  from ``bone_island_diameter_mm``, most under 1 cm), homogeneous (15 HU texture) and as dense
  as the patient's cortex (800-1500 HU), with a sharp edge: each voxel takes the share of it
  the island fills (supersampled), so a sub-voxel island is faint, as on real CT. Metastases
  differ by being larger, heterogeneous and irregular (:mod:`.lesions`).
* **Osteophytes** (:func:`add_osteophytes`): tapered bony spurs from the anterior and lateral
  margins of vertebral-body endplates, growing outward and towards the disc, 1.5-9 mm long,
  all cortex. They are added to the bone canvas with their vertebra's label, so they extend
  the bone outline and the bone map the way TotalSegmentator labels them (as part of the
  vertebra). A spur thinner than half a voxel is widened to that and its contrast
  lowered in proportion to its cross-section (partial volume), as the renderer does for thin
  cortex, so that it neither vanishes between voxel centres nor shows as a full voxel of cortex.
* **Joint cortex cut tangentially** needs nothing here: the anatomy produces it. An axial slab
  through the dome of the femoral head and the acetabular roof holds a cap of subchondral
  cortex; at 3.9 mm pixels and 5 mm slices the femoral head's section there averages 430-650 HU
  against 200-300 HU through its centre, a dense disc 2-3 cm across (five lesion-free
  abdomen-pelvis phantoms), and the pubic and ischial rami show the same. Every patient has them.

Each look-alike is a row (:data:`LOOKALIKE_COLUMNS`); the slice-centre map of
:class:`~osteomet.data.synth.ct.render.CTPhantom` marks the voxels an island mostly fills and
the voxels of each spur.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from osteomet.data.synth._shapes import Canvas, Capsule
from osteomet.data.synth.ct.anatomy import Anatomy
from osteomet.data.synth.ct.materials import TRABECULAR, CTSynthConfig
from osteomet.data.totalsegmentator import TOTALSEG_BONES

#: Codes of the look-alike map (0: none).
BONE_ISLAND, OSTEOPHYTE = 1, 2
LOOKALIKE_KINDS = {BONE_ISLAND: "bone_island", OSTEOPHYTE: "osteophyte"}
#: One row per look-alike: centre in world (LPS) mm; ``size_mm`` the diameter of an island, the length of a spur;
#: ``hu`` what was painted; ``n_voxels`` its voxels in the look-alike map; ``max_fraction`` the largest share of
#: a voxel an island fills (how visible it is), or a spur's contrast after widening (1 where not widened).
LOOKALIKE_COLUMNS = ["lookalike_id", "kind", "bone_id", "bone_name", "centre_x_mm", "centre_y_mm", "centre_z_mm",
                     "size_mm", "hu", "n_voxels", "max_fraction"]

# Relative frequency per vertebra: lower lumbar and lower cervical spine most (load and motion).
_OSTEOPHYTE_SITES = {27: 3.0, 28: 3.0, 29: 2.5, 30: 2.0, 31: 1.5, **{i: 1.2 for i in range(32, 37)},
                     **{i: 0.8 for i in range(37, 44)}, **{i: 1.5 for i in range(44, 49)}}
# Bone islands: pelvis and proximal femora most, then the spine (humeri: rarely).
_ISLAND_SITES = {77: 3.0, 78: 3.0, 75: 2.5, 76: 2.5, 25: 1.0, 26: 1.0, **{i: 1.5 for i in range(27, 32)},
                 **{i: 0.6 for i in range(32, 44)}, 69: 0.4, 70: 0.4}
_MAX_OSTEOPHYTES = 8
_MAX_ISLANDS = 8
_ISLAND_TEXTURE_HU = 15.0
#: Thinnest spur sampled as it is, in in-plane voxels; thinner ones are widened with less contrast.
_MIN_SPUR_RADIUS_VOXELS = 0.5


def osteophyte_chance(fraction: float, age: float) -> float:
    """Chance of vertebral osteophytes at ``age``: ``fraction`` at 71 (the cohort's mean), odds x2 per decade."""
    if fraction <= 0 or fraction >= 1:
        return float(fraction)
    odds = fraction / (1 - fraction) * 2.0 ** ((age - 71.0) / 10.0)
    return float(odds / (1 + odds))


def add_osteophytes(canvas: Canvas, anatomy: Anatomy, config: CTSynthConfig, pv_min: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """Draw a patient's vertebral osteophytes and union them into their vertebrae on the canvas.

    ``pv_min`` is the renderer's widened cortex (world mm). Returns a map of the canvas grid with
    each spur's number (1, 2, ...) on the voxels it won, and one row per spur (no ``n_voxels``
    yet: the renderer counts them on its slices). Spurs that miss every voxel are dropped.
    """
    spurs = np.zeros(canvas.grid.shape, np.uint8)
    if rng.random() >= osteophyte_chance(config.osteophyte_fraction, anatomy.age):
        return spurs, []
    z_lo, z_hi = float(canvas.grid.z.min()), float(canvas.grid.z.max())
    sites = [v for v in anatomy.vertebrae if v.label in _OSTEOPHYTE_SITES and z_lo <= v.zc <= z_hi]
    if not sites:
        return spurs, []
    weights = np.array([_OSTEOPHYTE_SITES[v.label] for v in sites])
    n = min(1 + int(rng.poisson(max(anatomy.age - 50.0, 0.0) / 10.0)), _MAX_OSTEOPHYTES)
    s, voxel = anatomy.scale, float(canvas.grid.x[1] - canvas.grid.x[0]) * anatomy.scale
    rows: list[dict] = []
    used: list[tuple[int, int, float]] = []
    for _ in range(n):
        v = sites[int(rng.choice(len(sites), p=weights / weights.sum()))]
        theta = float(rng.uniform(-1.75, 1.75))  # around the body from the front (0): anterior and lateral margins
        up = 1 if rng.random() < 0.5 else -1  # superior or inferior endplate; the spur grows towards the disc
        length = float(np.clip(rng.uniform(2.0, 5.0) + 0.1 * (anatomy.age - 60.0), 1.5, 9.0))  # world mm
        r0 = float(rng.uniform(1.5, 2.5)) + 0.15 * length
        r1 = 0.8
        if any(label == v.label and side == up and abs(angle - theta) < 0.7 for label, side, angle in used):
            continue  # one spur per stretch of margin
        used.append((v.label, up, theta))
        widen = max(1.0, _MIN_SPUR_RADIUS_VOXELS * voxel / r0)
        contrast = 1.0 / widen**2  # the cross-section the spur really fills
        if widen > 1.0:  # all of it cortex (radius <= pv_min), at reduced contrast (render's mix = t / pv_min)
            t_cortex = max(round(contrast * 20) / 20, 0.05) * pv_min
        else:
            t_cortex = max(r0 * widen + 1.0, pv_min)
        mix = min(1.0, t_cortex / max(t_cortex, pv_min))
        rim = np.array([v.a * np.sin(theta), v.yc - v.b * np.cos(theta)])
        normal = np.array([np.sin(theta) / v.a, -np.cos(theta) / v.b])
        normal /= np.linalg.norm(normal)
        z_end = v.zc + up * v.h / 2
        la = length / s  # the canvas is in anatomical mm
        p0 = (*(rim - 1.0 * normal), z_end - up * 1.0)
        p1 = (*(rim + la * normal), z_end + up * 0.4 * la)
        prim = Capsule(p0, p1, r0 * widen / s, r1 * widen / s)
        sl = canvas.grid.box(*prim.bounds())
        if sl is None:
            continue
        d = np.broadcast_to(prim.depth(*canvas.grid.coords(sl)), canvas.depth[sl].shape).astype(np.float32)
        if ((d > 0) & (canvas.label[sl] != 0) & (canvas.label[sl] != v.label)).any():
            continue  # it would bridge to another bone (the next vertebra across a thin disc, a rib head)
        canvas.add(prim, v.label, t_cortex)
        won = (d > 0) & (canvas.depth[sl] == d) & (canvas.label[sl] == v.label)
        if not won.any():
            continue
        spurs[sl][won] = len(rows) + 1
        idx = np.argwhere(won) + [a.start for a in sl]
        centre = idx.mean(axis=0)
        anat = np.array([np.interp(centre[2], np.arange(len(canvas.grid.x)), canvas.grid.x),
                         np.interp(centre[1], np.arange(len(canvas.grid.y)), canvas.grid.y),
                         np.interp(centre[0], np.arange(len(canvas.grid.z)), canvas.grid.z)])
        world = s * anat + anatomy.shift
        rows.append(_row("osteophyte", v.label, world, length,
                         anatomy.trab_hu + (anatomy.cort_hu - anatomy.trab_hu) * mix, max_fraction=mix))
    return spurs, rows


def paint_bone_islands(hu: np.ndarray, bones: np.ndarray, tissue: np.ndarray, depth_mm: np.ndarray,
                       avoid: np.ndarray, axes_mm: tuple[np.ndarray, np.ndarray, np.ndarray], sub: int,
                       cort_hu: float, config: CTSynthConfig,
                       rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """Draw a patient's bone islands and paint them into ``hu`` (the sub-slice grid), in place.

    ``depth_mm`` is the depth below the bone surface and ``axes_mm`` the world x, y, z of the
    voxel centres; ``avoid`` (lesions, spurs) is kept one slice and one pixel away, and grows by
    each island. Returns, per slice (the mean of its ``sub`` rows), the share of each voxel an
    island fills (float32, 0 elsewhere) and one row per island (islands with no room are dropped).
    """
    n_slices = hu.shape[0] // sub
    share = np.zeros((n_slices, *hu.shape[1:]), np.float32)
    n = min(int(rng.poisson(config.bone_islands_per_patient)), _MAX_ISLANDS)
    if n == 0:
        return share, []
    present = [b for b in _ISLAND_SITES if b <= bones.max()]
    objects = ndimage.find_objects(bones)
    present = [b for b in present if b - 1 < len(objects) and objects[b - 1] is not None]
    if not present:
        return share, []
    weights = np.array([_ISLAND_SITES[b] for b in present])
    xw, yw, zw = axes_mm
    spacing = np.array([zw[1] - zw[0] if len(zw) > 1 else 1.0, yw[1] - yw[0], xw[1] - xw[0]])  # z, y, x
    lo_d, hi_d = config.bone_island_diameter_mm
    rows: list[dict] = []
    for _ in range(n):
        diameter = float(np.exp(rng.uniform(np.log(lo_d), np.log(hi_d))))
        jitter = rng.uniform(0.8, 1.2, size=3)
        semi = diameter / 2 * jitter / np.cbrt(np.prod(jitter))  # equivalent sphere: exactly ``diameter``
        rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # oblong along a random (trabecular) axis
        value = float(np.clip(cort_hu * rng.uniform(0.75, 1.0), 800.0, 1500.0))
        for _attempt in range(10):
            bone_id = int(present[int(rng.choice(len(present), p=weights / weights.sum()))])
            bsl = objects[bone_id - 1]
            cand = (bones[bsl] == bone_id) & (tissue[bsl] == TRABECULAR) & (depth_mm[bsl] >= semi.max())
            idx = np.flatnonzero(cand)
            if idx.size == 0:
                continue
            centre_idx = np.array(np.unravel_index(idx[rng.integers(idx.size)], cand.shape)) + [a.start for a in bsl]
            centre = np.array([xw[centre_idx[2]], yw[centre_idx[1]], zw[centre_idx[0]]])
            centre += rng.uniform(-0.5, 0.5, size=3) * spacing[::-1]  # anywhere in its voxel
            painted = _paint_island(hu, bones, avoid, centre, semi, rot, value, axes_mm, spacing, sub, rng)
            if painted is None:
                continue
            crop_c, slab_share = painted
            share[crop_c] = np.maximum(share[crop_c], slab_share)
            rows.append(_row("bone_island", bone_id, centre, diameter, value,
                             n_voxels=int((slab_share >= 0.5).sum()), max_fraction=float(slab_share.max())))
            break
    return share, rows


def island_fraction(X: np.ndarray, Y: np.ndarray, Z: np.ndarray, centre: np.ndarray, semi: np.ndarray,
                    rot: np.ndarray, spacing: np.ndarray, samples: tuple[int, int, int] = (2, 4, 4)) -> np.ndarray:
    """Share of each voxel (centres X, Y, Z in mm; ``spacing`` z, y, x) inside a rotated ellipsoid.

    Supersampled, so that the edge is as sharp as the voxels allow and a small island is as faint
    as the share of a voxel it fills.
    """
    total = np.zeros(np.broadcast_shapes(X.shape, Y.shape, Z.shape), np.float32)
    offsets = [(np.arange(k) + 0.5) / k - 0.5 for k in samples]  # z, y, x
    for oz in offsets[0]:
        for oy in offsets[1]:
            for ox in offsets[2]:
                dx = X + ox * spacing[2] - centre[0]
                dy = Y + oy * spacing[1] - centre[1]
                dz = Z + oz * spacing[0] - centre[2]
                rho = sum(((rot[0, i] * dx + rot[1, i] * dy + rot[2, i] * dz) / semi[i]) ** 2 for i in range(3))
                total += rho <= 1.0
    return total / float(np.prod(samples))


def _paint_island(hu: np.ndarray, bones: np.ndarray, avoid: np.ndarray, centre: np.ndarray, semi: np.ndarray,
                  rot: np.ndarray, value: float, axes_mm: tuple[np.ndarray, np.ndarray, np.ndarray],
                  spacing: np.ndarray, sub: int,
                  rng: np.random.Generator) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Paint one island unless it would come within a slice and a pixel of ``avoid``; its slab shares, or None."""
    xw, yw, zw = axes_mm
    c_idx = np.array([(centre[2] - zw[0]) / spacing[0], (centre[1] - yw[0]) / spacing[1],
                      (centre[0] - xw[0]) / spacing[2]])
    half = np.ceil(semi.max() / spacing).astype(int) + [sub + 1, 2, 2]
    lo = np.maximum(np.floor(c_idx).astype(int) - half, 0)
    hi = np.minimum(np.ceil(c_idx).astype(int) + half + 1, hu.shape)
    lo[0], hi[0] = lo[0] // sub * sub, min(-(-hi[0] // sub) * sub, hu.shape[0])  # whole slabs
    crop = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    X, Y, Z = xw[crop[2]][None, None, :], yw[crop[1]][None, :, None], zw[crop[0]][:, None, None]
    frac = island_fraction(X, Y, Z, centre, semi, rot, spacing) * (bones[crop] > 0)
    footprint = frac > 0
    if not footprint.any():
        return None
    near = ndimage.binary_dilation(footprint, np.ones((2 * sub + 1, 3, 3), bool))
    if (near & avoid[crop]).any():
        return None
    target = np.maximum(hu[crop], value + _ISLAND_TEXTURE_HU * rng.standard_normal(frac.shape, dtype=np.float32))
    hu[crop] += frac * (target - hu[crop])
    avoid[crop] |= footprint
    slab_share = frac.reshape(-1, sub, *frac.shape[1:]).mean(axis=1)
    return (slice(crop[0].start // sub, crop[0].stop // sub), crop[1], crop[2]), slab_share


def _row(kind: str, bone_id: int, centre_mm: np.ndarray, size_mm: float, hu: float, *, n_voxels: int = 0,
         max_fraction: float = 1.0) -> dict:
    return {"lookalike_id": 0, "kind": kind, "bone_id": int(bone_id), "bone_name": TOTALSEG_BONES[bone_id].name,
            "centre_x_mm": round(float(centre_mm[0]), 2), "centre_y_mm": round(float(centre_mm[1]), 2),
            "centre_z_mm": round(float(centre_mm[2]), 2), "size_mm": round(float(size_mm), 2),
            "hu": round(float(hu), 1), "n_voxels": int(n_voxels), "max_fraction": round(float(max_fraction), 3)}
