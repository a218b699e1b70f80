"""Bone metastases: sites (axial skeleton first), focal or diffuse shapes, sclerotic or lytic HU."""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np
from scipy import ndimage

from osteomet.data.synth.ct.materials import CORTICAL, FATTY_MARROW, RIB_IDS, TRABECULAR, VERTEBRA_IDS, CTSynthConfig
from osteomet.data.totalsegmentator import TOTALSEG_BONES


def _site_weight(bone_id: int) -> float:
    """Relative metastasis frequency per bone: axial skeleton first, lumbar spine most."""
    if 27 <= bone_id <= 31:
        return 3.0
    if 32 <= bone_id <= 43:
        return 1.3
    if 44 <= bone_id <= 50:
        return 0.4
    if bone_id in (25, 26):
        return 1.5
    if bone_id in (77, 78):
        return 4.0
    if 92 <= bone_id <= 115:
        return 0.35
    return {75: 2.0, 76: 2.0, 91: 2.0, 69: 0.9, 70: 0.9, 116: 0.8, 71: 0.5, 72: 0.5, 73: 0.2, 74: 0.2}.get(bone_id, 0.0)


_DIFFUSE_OK = set(VERTEBRA_IDS) | {25, 26, 75, 76, 77, 78, 69, 70, 116, 71, 72} | set(RIB_IDS)
# Lytic lesions replace marrow inside the cortex: only bones with a marrow space wider than the cortex
# and the CT's voxels (in ribs, claviculae, scapulae, sternum and skull the lucency would be a voxel or
# two between two cortices and vanish in partial volume); a lytic draw elsewhere becomes sclerotic.
_LYTIC_OK = set(range(27, 44)) | {25, 26, 75, 76, 77, 78, 69, 70}


@dataclass
class _Lesion:
    bone_id: int
    kind: str
    type: str
    crop: tuple[slice, slice, slice]
    mask: np.ndarray
    coverage: float


def _blob(X, Y, Z, c, r, rng: np.random.Generator) -> np.ndarray:
    """Irregular nodule: a random ellipsoid with a few low-frequency bumps on its surface."""
    axes = r * rng.uniform(0.75, 1.25, size=3)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    dx, dy, dz = X - c[0], Y - c[1], Z - c[2]
    loc = [q[0, i] * dx + q[1, i] * dy + q[2, i] * dz for i in range(3)]
    rho = np.sqrt(sum((loc[i] / axes[i]) ** 2 for i in range(3)))
    for _ in range(3):
        w = rng.normal(0, 2.5, size=3) / r
        rho = rho + 0.12 * np.sin(w[0] * dx + w[1] * dy + w[2] * dz + rng.uniform(0, 2 * np.pi))
    return rho < 1.0


def _place_lesions(bones: np.ndarray, tissue: np.ndarray, spacing: tuple[float, float, float],
                   config: CTSynthConfig, rng: np.random.Generator) -> list[_Lesion]:
    """Draw lesion count, sites and shapes; enforce visibility, focal/diffuse coverage and separation.

    Only for a patient with lesions: whether it has any is the renderer's draw (``lesion_free``).
    """
    n_target = min(1 + int(rng.poisson(config.mean_lesions - 1)), config.max_lesions)
    sp = np.array(spacing[::-1])  # z, y, x
    voxel_ml = float(np.prod(sp)) / 1000.0
    objects = ndimage.find_objects(bones)
    counts = np.bincount(bones.ravel(), minlength=max(TOTALSEG_BONES) + 1)
    min_bone = max(40, 8 * config.min_lesion_voxels)
    present = [i for i in TOTALSEG_BONES if counts[i] >= min_bone and _site_weight(i) > 0]
    if not present:
        return []
    weights = np.array([_site_weight(i) for i in present])
    weights /= weights.sum()
    # smallest nodule: the configured one, one that still covers min_lesion_voxels on average, and one
    # min_focal_width_voxels wide in-plane (the largest of the three)
    d_min = max(config.focal_diameter_mm[0], (6 * 1.5 * config.min_lesion_voxels * voxel_ml * 1000 / np.pi) ** (1 / 3),
                config.min_focal_width_voxels * float(sp[1:].min()))
    d_max = max(config.focal_diameter_mm[1], 2.0 * d_min)
    lesion_mask = np.zeros(bones.shape, bool)
    placed: list[_Lesion] = []
    slice_counts: dict[int, np.ndarray] = {}
    for _ in range(n_target):
        kind = "diffuse" if rng.random() < config.diffuse_fraction else "focal"
        ltype = "lytic" if rng.random() < config.lytic_fraction else "sclerotic"
        for _attempt in range(8):
            bone_id = int(rng.choice(present, p=weights))
            this_kind = kind if bone_id in _DIFFUSE_OK else "focal"
            this_type = ltype if bone_id in _LYTIC_OK else "sclerotic"
            lesion = _try_lesion(bone_id, this_kind, this_type, bones, tissue, objects[bone_id - 1], sp, d_min, d_max,
                                 lesion_mask, slice_counts, config, rng)
            if lesion is not None:
                lesion_mask[lesion.crop] |= lesion.mask
                placed.append(lesion)
                break
    return placed


def _try_lesion(bone_id: int, kind: str, ltype: str, bones: np.ndarray, tissue: np.ndarray, bsl: tuple,
                sp: np.ndarray, d_min: float, d_max: float, lesion_mask: np.ndarray,
                slice_counts: dict[int, np.ndarray], config: CTSynthConfig, rng: np.random.Generator) -> _Lesion | None:
    """One lesion in one bone, or None when it cannot satisfy the constraints there."""
    bone_sub = bones[bsl] == bone_id
    tis_sub = tissue[bsl]
    cand = bone_sub & ((tis_sub == TRABECULAR) if bone_id in (69, 70, 75, 76) or ltype == "lytic" else
                       np.isin(tis_sub, (TRABECULAR, FATTY_MARROW)))
    if not cand.any():
        cand = bone_sub
    if bone_id not in slice_counts:
        slice_counts[bone_id] = (bones == bone_id).sum(axis=(1, 2))
    counts = slice_counts[bone_id]
    idx = np.flatnonzero(cand)
    start = np.array(np.unravel_index(idx[rng.integers(len(idx))], cand.shape)) + [s.start for s in bsl]
    extent = np.array([(s.stop - s.start) for s in bsl]) * sp
    if kind == "diffuse":
        r = float(np.clip(0.55 * np.max(extent[1:]), 22, 60)) * rng.uniform(0.9, 1.2)
        if bone_id in VERTEBRA_IDS:  # centre on the body so that the vertebra is replaced
            body = bone_sub & (tis_sub == TRABECULAR)
            if body.any():
                start = np.round(ndimage.center_of_mass(body)).astype(int) + [s.start for s in bsl]
    else:
        r = float(np.exp(rng.uniform(np.log(d_min), np.log(d_max)))) / 2
    # lytic lesions have less contrast and lose more of it to partial volume: keep them bigger
    min_voxels = config.min_lesion_voxels * (3 if ltype == "lytic" else 1)
    if ltype == "lytic" and kind == "focal":
        r *= 1.3
    seed = int(rng.integers(2**31))
    for _ in range(6):
        blob_rng = np.random.default_rng(seed)
        half = np.ceil(1.6 * r / sp).astype(int) + 1
        lo = np.maximum(start - half, 0)
        hi = np.minimum(start + half + 1, bones.shape)
        crop = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        Z = ((np.arange(lo[0], hi[0]) - start[0]) * sp[0])[:, None, None]
        Y = ((np.arange(lo[1], hi[1]) - start[1]) * sp[1])[None, :, None]
        X = ((np.arange(lo[2], hi[2]) - start[2]) * sp[2])[None, None, :]
        mask = _blob(X, Y, Z, (0.0, 0.0, 0.0), r, blob_rng) & (bones[crop] == bone_id)
        if ltype == "lytic":  # lytic lesions replace the marrow, the cortex stays (domain facts)
            mask &= tissue[crop] != CORTICAL
        near = lesion_mask[crop]
        if near.any():
            mask &= ~ndimage.binary_dilation(near, structure=np.ones((3, 3, 3), bool))
        if mask.any():
            labels = cc3d.connected_components(mask.astype(np.uint8), connectivity=26)
            sizes = np.bincount(labels.ravel())
            sizes[0] = 0
            mask = labels == int(np.argmax(sizes))
        n = int(mask.sum())
        if n and ltype == "sclerotic" and (tissue[crop][mask] == CORTICAL).mean() > config.max_cortex_share:
            return None  # a thin bone that is all cortex at this voxel size: sclerosis would not change it
        per_slice = mask.sum(axis=(1, 2))
        coverage = float(np.max(per_slice / np.maximum(counts[lo[0]:hi[0]], 1))) if n else 0.0
        if kind == "focal":
            if n < min_voxels:
                r *= 1.25
                continue
            if coverage > 0.45:
                if 0.8 * r < d_min / 2:  # the bone is too small for a visible nodule at this resolution
                    return None
                r *= 0.8
                continue
        else:
            if n < min_voxels or coverage < 0.6:
                r *= 1.3
                continue
        return _Lesion(bone_id, kind, ltype, crop, mask, coverage)
    return None


def _lesion_hu(lesion: _Lesion, hu: np.ndarray, tissue: np.ndarray, trab_hu: float, rng: np.random.Generator) -> None:
    """Paint a lesion's HU: sclerotic 300-1200 (heterogeneous) or lytic 0-100 replacing bone."""
    sub_hu, sub_t, m = hu[lesion.crop], tissue[lesion.crop], lesion.mask
    shape = m.shape
    zz, yy, xx = np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij", sparse=True)
    field_ = sum(np.sin(2 * np.pi * (f[0] * zz + f[1] * yy + f[2] * xx) + ph)
                 for f, ph in zip(rng.uniform(0.3, 1.5, size=(3, 3)), rng.uniform(0, 2 * np.pi, 3))) / 3
    noise = rng.standard_normal(shape, dtype=np.float32)
    if lesion.type == "sclerotic":
        # at least ~300 HU above this patient's trabecular bone, so that even small nodules show
        low = max(500.0, trab_hu + 300) if lesion.kind == "focal" else max(420.0, trab_hu + 250)
        base = rng.uniform(low, 1000 if lesion.kind == "focal" else 850)
        values = np.clip(base + 150 * field_ + 60 * noise, 300, 1200)
        cortex = m & (sub_t == CORTICAL)
        marrow = m & ~cortex
        sub_hu[marrow] = values[marrow]
        sub_hu[cortex] = np.maximum(sub_hu[cortex], values[cortex])
    else:  # the mask holds no cortex (see _try_lesion): the bone's outline stays visible around the lucency
        base = rng.uniform(15, 60)
        values = np.clip(base + 20 * field_ + 10 * noise, 0, 100)
        sub_hu[m] = values[m]
