"""One patient: scan grid from landmarks, materials to HU, look-alikes, lesions, blur and noise."""

from __future__ import annotations

from dataclasses import dataclass, field

import cc3d
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from osteomet.data.synth._shapes import Canvas, Grid
from osteomet.data.synth.ct.anatomy import Anatomy, _sample_anatomy
from osteomet.data.synth.ct.bones import _build_bones
from osteomet.data.synth.ct.lesions import _Lesion, _lesion_hu, _place_lesions
from osteomet.data.synth.ct.lookalikes import BONE_ISLAND, OSTEOPHYTE, add_osteophytes, paint_bone_islands
from osteomet.data.synth.ct.materials import (
    _TISSUE_HU,
    _TISSUE_SD,
    AIR,
    CARTILAGE,
    CORTICAL,
    FATTY_MARROW,
    LUNG,
    TRABECULAR,
    CTSynthConfig,
)
from osteomet.data.synth.ct.soft_tissue import _soft_tissue
from osteomet.data.totalsegmentator import TOTALSEG_BONES


@dataclass
class CTPhantom:
    """One synthetic patient: arrays in (z, y, x) order, the grid geometry, the lesion truth and the look-alikes.

    ``lookalikes`` marks the benign look-alikes on the slices (:data:`~.lookalikes.BONE_ISLAND` where an
    island fills at least half a voxel, :data:`~.lookalikes.OSTEOPHYTE` on a spur's voxels); never in
    ``lesions``. ``lookalike_rows`` lists every one drawn (:data:`~.lookalikes.LOOKALIKE_COLUMNS`).
    """

    ct: np.ndarray  # int16 HU
    lesions: np.ndarray  # uint8 0/1
    bones: np.ndarray  # uint16 TotalSegmentator ids
    tissue: np.ndarray  # uint8 tissue codes (TISSUE_NAMES), bone materials before lesions
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    lesion_rows: list[dict]
    info: dict
    lookalikes: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.uint8))  # uint8 codes
    lookalike_rows: list[dict] = field(default_factory=list)

    def image(self, array: np.ndarray, pixel: int) -> sitk.Image:
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        return sitk.Cast(image, pixel)


def _z_range(anatomy: Anatomy, region: str) -> tuple[float, float]:
    verts = {v.label: v for v in anatomy.vertebrae}
    if region == "whole_body":
        return -250.0, anatomy.head_c[2] + 98
    if region == "torso":
        return -95.0, anatomy.z_shoulder + 45
    return -75.0, verts[31].zc + verts[31].h / 2 + 20


#: Most voxels rendered at once (sub-slices included): ~2.5 GB of working arrays.
_MAX_RENDER_VOXELS = 64 * 2**20


def _sub_slices(config: CTSynthConfig, n_slices: int) -> int:
    """Sub-slices rendered per CT slice (odd, so one lies at the slice centre).

    A CT slice is the average of its slab. Sampling only the slice centre turned a 1 mm
    vertebral endplate into a whole 5 mm slice of cortex (660-850 HU across the vertebra,
    where a real slab averages ~400 HU), which looks like a sclerotic vertebra. Sub-slices
    no thicker than the widened cortex (0.6 in-plane voxel) see every endplate. Capped at 5,
    and at what keeps the render within :data:`_MAX_RENDER_VOXELS` (a 512 x 512 whole body
    renders its slice centres only, as before).
    """
    sp_xy, _, sp_z = config.spacing
    need = int(np.ceil(sp_z / (0.6 * sp_xy) - 1e-6))
    k = min(need + 1 - need % 2, 5, _MAX_RENDER_VOXELS // max(n_slices * config.inplane_size**2, 1))
    return max(k - (1 - k % 2), 1)  # odd: up to what the cortex needs, down to what memory allows


def _make_grid(anatomy: Anatomy, config: CTSynthConfig, rng: np.random.Generator) -> tuple[Grid, tuple, tuple, int]:
    """World axes of the scan (centred in-plane, z range from landmarks), their anatomical twins and the sub-slices.

    The z axis holds :func:`_sub_slices` evenly spaced sub-slices per slice, centred on it;
    spacing and origin are those of the slices.
    """
    sp_xy, _, sp_z = config.spacing
    n = config.inplane_size
    lo, hi = _z_range(anatomy, config.region)
    lo, hi = lo + rng.normal(0, 6), hi + rng.normal(0, 6)
    s, shift = anatomy.scale, anatomy.shift
    z_lo = s * lo + shift[2]
    nz = max(int(np.ceil(s * (hi - lo) / sp_z)), 4)
    z0 = float(np.round(z_lo / sp_z * 2) / 2 * sp_z)  # table positions on a half-slice raster
    xw = -config.fov_mm / 2 + sp_xy / 2 + sp_xy * np.arange(n)
    zw = z0 + sp_z * np.arange(nz)
    sub = _sub_slices(config, nz)
    zf = (zw[:, None] + sp_z / sub * (np.arange(sub) - (sub - 1) / 2)).ravel()
    anat = Grid(((xw - shift[0]) / s).astype(np.float32), ((xw - shift[1]) / s).astype(np.float32),
                ((zf - shift[2]) / s).astype(np.float32))
    return anat, (sp_xy, sp_xy, sp_z), (float(xw[0]), float(xw[0]), float(zw[0])), sub



#: Placement rounds for a patient who should have lesions before it is left without (one in ~30 at 64 x 64).
_LESION_ROUNDS = 4


def lesion_free_draw(rng: np.random.Generator) -> float:
    """A patient's first draw: lesion-free when below ``lesion_free_fraction`` (a cohort ranks its patients by it)."""
    return float(rng.random())


def render_ct_phantom(rng_or_seed: np.random.Generator | np.random.SeedSequence | int,
                      config: CTSynthConfig | None = None, *, lesion_free: bool | None = None) -> CTPhantom:
    """Render one patient as arrays plus the tissue map (for tests and QA of the phantom).

    Materials, HU and lesions are rendered on sub-slices (:func:`_sub_slices`); each slice's HU is
    the mean of its slab, while the label maps (bones, tissue) are those at the slice centre, as a
    segmentation of the slice would be. A lesion is labelled where it fills most of a slab.

    ``lesion_free`` None draws the status (:func:`lesion_free_draw` below ``lesion_free_fraction``);
    a cohort passes it to hold an exact share. A patient meant to have lesions gets at least one
    wherever one fits (up to :data:`_LESION_ROUNDS` placements). Look-alikes
    (:mod:`.lookalikes`) come from a generator of their own, drawn right after the scan range.
    """
    config = config or CTSynthConfig()
    rng = rng_or_seed if isinstance(rng_or_seed, np.random.Generator) else np.random.default_rng(rng_or_seed)
    status = lesion_free_draw(rng)  # drawn whatever ``lesion_free`` says, so that the rest stays the same
    lesion_free = status < config.lesion_free_fraction if lesion_free is None else bool(lesion_free)
    anatomy = _sample_anatomy(rng)
    grid, spacing, origin, sub = _make_grid(anatomy, config, rng)
    lookalike_rng = np.random.default_rng(rng.integers(2**63))
    s = anatomy.scale
    pv_min = 0.6 * spacing[0]
    canvas = Canvas(grid)
    _build_bones(canvas, anatomy)
    spurs, spur_rows = add_osteophytes(canvas, anatomy, config, pv_min, lookalike_rng)
    tissue = _soft_tissue(grid, anatomy, rng)

    # bone materials from depth (converted to world mm) and each primitive's cortex thickness
    depth = canvas.depth * np.float32(s)
    is_bone = canvas.label > 0
    t_cort = np.array([max(c.t_cortex, pv_min) if c.marrow != "cartilage" else 0.0 for c in canvas.classes] or [0.0],
                      np.float32)
    mix = np.array([min(1.0, c.t_cortex / max(c.t_cortex, pv_min)) for c in canvas.classes] or [1.0], np.float32)
    marrow_code = np.array([{"trabecular": TRABECULAR, "fatty": FATTY_MARROW, "cartilage": CARTILAGE}[c.marrow]
                            for c in canvas.classes] or [TRABECULAR], np.uint8)
    mat = canvas.material
    cortex = is_bone & (depth < t_cort[mat])
    tissue[is_bone] = marrow_code[mat[is_bone]]
    tissue[cortex] = CORTICAL

    lut = _TISSUE_HU + anatomy.tissue_jitter
    lut[TRABECULAR] = anatomy.trab_hu
    lut[FATTY_MARROW] = anatomy.marrow_hu
    lut[AIR] = -1000.0
    hu = lut[tissue]
    # texture SDs are those of a slice: scaled up by sqrt(sub) so that the slab mean keeps them
    texture = np.float32(np.sqrt(sub))
    hu += texture * _TISSUE_SD[tissue] * rng.standard_normal(tissue.shape, dtype=np.float32)
    # cortex: full cortical HU where thick enough, mixed with marrow where thinner than a voxel
    under = np.where(marrow_code[mat] == FATTY_MARROW, anatomy.marrow_hu, anatomy.trab_hu).astype(np.float32)
    cort_values = under + (anatomy.cort_hu - under) * mix[mat]
    hu[cortex] = cort_values[cortex] + texture * 40 * rng.standard_normal(int(cortex.sum()), dtype=np.float32)
    # per-bone density variation
    bones = np.where(np.isin(canvas.label, list(TOTALSEG_BONES)), canvas.label, 0).astype(np.uint16)
    trab = tissue == TRABECULAR
    factor = rng.uniform(0.9, 1.1, size=256).astype(np.float32)
    hu[trab] *= factor[np.minimum(canvas.label[trab], 255)]
    # gentle lung gradient (dependent lung is denser, patient supine: posterior = +y)
    lung = tissue == LUNG
    if lung.any():
        Yb = np.broadcast_to(grid.y[None, :, None], tissue.shape)
        hu[lung] += 0.25 * (Yb[lung] + 100)

    fine_config = config.model_copy(update={"min_lesion_voxels": config.min_lesion_voxels * sub})
    fine_spacing = (spacing[0], spacing[1], spacing[2] / sub)
    bones_c, tissue_c = bones[sub // 2::sub], tissue[sub // 2::sub]
    lookalikes_c = np.where(spurs[sub // 2::sub] > 0, OSTEOPHYTE, 0).astype(np.uint8)
    spur_counts = np.bincount(spurs[sub // 2::sub].ravel(), minlength=len(spur_rows) + 1)
    for k, row in enumerate(spur_rows, start=1):
        row["n_voxels"] = int(spur_counts[k])
    lesion_mask = np.zeros(bones_c.shape, np.uint8)
    lesion_fine = np.zeros(hu.shape, bool)
    rows = []
    voxel_ml = float(np.prod(spacing)) / 1000.0
    for _round in range(0 if lesion_free else _LESION_ROUNDS):
        for lesion in _place_lesions(bones, tissue, fine_spacing, fine_config, rng):
            lesion.mask &= spurs[lesion.crop] == 0  # a spur stays a look-alike, never part of a lesion
            coarse = _slice_lesion(lesion, sub, bones_c, tissue_c, lesion_mask, config, exclude=lookalikes_c > 0)
            if coarse is None:
                continue
            crop_c, mask_c, coverage = coarse
            lesion.mask &= np.repeat(mask_c, sub, axis=0)[_fine_rows(lesion.crop[0], sub)]
            _lesion_hu(lesion, hu, tissue, anatomy.trab_hu, rng)
            lesion_mask[crop_c][mask_c] = 1
            lesion_fine[lesion.crop] |= lesion.mask
            idx = np.argwhere(mask_c) + [s_.start for s_ in crop_c]
            centre = idx.mean(axis=0)[::-1] * np.array(spacing) + np.array(origin)
            bone = TOTALSEG_BONES[lesion.bone_id]
            rows.append({
                "lesion_id": len(rows) + 1, "bone_id": lesion.bone_id, "bone_name": bone.name, "group": bone.group,
                "kind": lesion.kind, "type": lesion.type,
                "centre_x_mm": round(float(centre[0]), 2), "centre_y_mm": round(float(centre[1]), 2),
                "centre_z_mm": round(float(centre[2]), 2),
                "volume_ml": round(len(idx) * voxel_ml, 4), "n_voxels": int(len(idx)),
                "max_slice_fraction": round(coverage, 3),
            })
        if rows:
            break

    # bone islands after the lesions, which they keep clear of (as of the spurs)
    axes_mm = tuple(s * np.asarray(a, np.float64) + anatomy.shift[i] for i, a in enumerate((grid.x, grid.y, grid.z)))
    island_share, island_rows = paint_bone_islands(hu, bones, tissue, depth, lesion_fine | (spurs > 0), axes_mm, sub,
                                                   anatomy.cort_hu, config, lookalike_rng)
    lookalikes_c[(island_share >= 0.5) & (bones_c > 0)] = BONE_ISLAND
    lookalike_rows = spur_rows + island_rows
    for k, row in enumerate(lookalike_rows, start=1):
        row["lookalike_id"] = k

    if sub > 1:
        hu = hu.reshape(-1, sub, *hu.shape[1:]).mean(axis=1)
    hu = ndimage.gaussian_filter(hu, sigma=(0.35, 0.45, 0.45), mode="nearest")
    if config.noise_hu > 0:
        hu += np.float32(config.noise_hu) * rng.standard_normal(hu.shape, dtype=np.float32)
    ct = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)

    info = {"age": round(anatomy.age, 1), "scale": round(s, 3), "fat_mm": round(anatomy.fat * s, 1),
            "trabecular_hu": round(anatomy.trab_hu, 1), "cortical_hu": round(anatomy.cort_hu, 1),
            "lesion_free": lesion_free, "bone_islands": len(island_rows), "osteophytes": len(spur_rows)}
    return CTPhantom(ct, lesion_mask, bones_c, tissue_c, spacing, origin, rows, info, lookalikes_c, lookalike_rows)


def _fine_rows(z: slice, sub: int) -> slice:
    """The rows of a slab-aligned block (slices z.start//sub ...) that a sub-slice crop covers."""
    offset = z.start - (z.start // sub) * sub
    return slice(offset, offset + z.stop - z.start)


def _slice_lesion(lesion: _Lesion, sub: int, bones_c: np.ndarray, tissue_c: np.ndarray, labelled: np.ndarray,
                  config: CTSynthConfig, *, exclude: np.ndarray | None = None,
                  ) -> tuple[tuple[slice, slice, slice], np.ndarray, float] | None:
    """A lesion drawn on sub-slices as the slices see it: voxels whose slab it mostly fills, inside its bone
    and outside ``exclude`` (the look-alikes on the slices).

    None when, on the slices, it would no longer satisfy what :func:`_place_lesions` promised
    (visible size, focal/diffuse coverage, lytic lesions sparing the cortex, lesions never
    touching); its HU is then never painted, so no unlabelled lesion is left in the image.
    """
    zs, ys, xs = lesion.crop
    z0, z1 = zs.start // sub, -(-zs.stop // sub)
    block = np.zeros(((z1 - z0) * sub, *lesion.mask.shape[1:]), np.float32)
    block[_fine_rows(zs, sub)] = lesion.mask
    crop_c = (slice(z0, z1), ys, xs)
    mask = (block.reshape(z1 - z0, sub, *block.shape[1:]).mean(axis=1) > 0.5) & (bones_c[crop_c] == lesion.bone_id)
    if lesion.type == "lytic":
        mask &= tissue_c[crop_c] != CORTICAL
    if exclude is not None:
        mask &= ~exclude[crop_c]
    if not mask.any():
        return None
    labels = cc3d.connected_components(mask.astype(np.uint8), connectivity=26)
    mask = labels == int(np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    min_voxels = config.min_lesion_voxels * (3 if lesion.type == "lytic" else 1)
    near = labelled[crop_c].astype(bool)
    if int(mask.sum()) < min_voxels or (near.any() and (ndimage.binary_dilation(mask, np.ones((3, 3, 3), bool))
                                                          & near).any()):
        return None
    bone_area = (bones_c[z0:z1] == lesion.bone_id).sum(axis=(1, 2))
    coverage = float(np.max(mask.sum(axis=(1, 2)) / np.maximum(bone_area, 1)))
    if (lesion.kind == "focal") == (coverage > 0.5):
        return None
    return crop_c, mask, coverage


def phantom_images(phantom: CTPhantom) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """CT (int16 HU), lesion mask (uint8 0/1) and bone map (uint16 TotalSegmentator ids) of a phantom."""
    return (phantom.image(phantom.ct, sitk.sitkInt16), phantom.image(phantom.lesions, sitk.sitkUInt8),
            phantom.image(phantom.bones, sitk.sitkUInt16))


def synthesize_ct_patient(rng_or_seed: np.random.Generator | np.random.SeedSequence | int,
                          config: CTSynthConfig | None = None, *, lesion_free: bool | None = None,
                          ) -> tuple[sitk.Image, sitk.Image, sitk.Image, list[dict]]:
    """CT (int16 HU), lesion mask (uint8 0/1), bone map (uint16 TotalSegmentator ids) and lesion truth rows."""
    phantom = render_ct_phantom(rng_or_seed, config, lesion_free=lesion_free)
    return (*phantom_images(phantom), phantom.lesion_rows)
