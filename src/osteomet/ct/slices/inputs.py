"""Network inputs from cached slices: adjacent slices as channels, square cut-outs, resizing, bone neighbourhood.

Why adjacent slices: a lesion is a 3D object and its neighbours tell a nodule (present on a
few consecutive slices) from noise or a vessel (5 mm slices of a 10 mm nodule show it on
2-3 slices). ``context`` slices on each side become extra channels (clamped at the ends of
the scan, so every slice has the same number of channels).

Square cut-outs are zero outside the scan (0 is the bottom of the window); the segmentation
patches (:mod:`osteomet.ct.segmentation.patches`) and the detection tiles
(:mod:`osteomet.ct.detection.tiles`) are both cut with :func:`extract`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def context_indices(k: int, n_slices: int, context: int) -> np.ndarray:
    """Slice indices ``k - context .. k + context``, clamped to the scan."""
    return np.clip(np.arange(k - context, k + context + 1), 0, n_slices - 1)


def with_context(volume: np.ndarray, ks: np.ndarray | list[int], context: int) -> np.ndarray:
    """(B, 2*context+1, H, W) float32: each slice ``k`` of ``volume`` (Z x H x W) with its neighbours."""
    n = volume.shape[0]
    return np.stack([np.asarray(volume[context_indices(int(k), n, context)], np.float32) for k in ks])


def bone_neighbourhood(bone: np.ndarray, spacing: tuple[float, float], margin_mm: float) -> np.ndarray:
    """The bone region of each slice grown in-plane by ``margin_mm`` (a lesion breaking through the cortex stays in)."""
    from scipy import ndimage

    radius = max(1, int(np.ceil(margin_mm / min(spacing))))
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disc = ((yy * spacing[1]) ** 2 + (xx * spacing[0]) ** 2) <= margin_mm ** 2 + 1e-6
    return ndimage.binary_dilation(np.asarray(bone) > 0, structure=disc[None]).astype(np.float32)


def extract(volume: np.ndarray, ks: np.ndarray, cy: int, cx: int, size: int) -> np.ndarray:
    """(len(ks), size, size) float32 centred on (cy, cx) of slices ``ks``, zero outside the volume."""
    _, h, w = volume.shape
    out = np.zeros((len(ks), size, size), np.float32)
    y0, x0 = cy - size // 2, cx - size // 2
    sy0, sx0, sy1, sx1 = max(y0, 0), max(x0, 0), min(y0 + size, h), min(x0 + size, w)
    if sy1 > sy0 and sx1 > sx0:
        out[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = volume[ks, sy0:sy1, sx0:sx1]
    return out


def resize_square(x: np.ndarray, size: int, *, binary: bool = False) -> np.ndarray:
    """(C x S x S) -> (C x size x size): area mean when shrinking, bilinear when enlarging (nearest for masks)."""
    if x.shape[-1] == size:
        return x
    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))[None]
    mode = "nearest" if binary else ("area" if x.shape[-1] > size else "bilinear")
    out = F.interpolate(t, size=(size, size), mode=mode, **({} if mode != "bilinear" else {"align_corners": False}))
    return out[0].numpy()


def _affine_grid(shape: torch.Size, rng: np.random.Generator, degrees: float, scale: float, shift: float,
                 dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Sampling grid of a random rotation, zoom and shift per image of a (N, C, H, W) batch."""
    n = shape[0]
    angle = np.deg2rad(rng.uniform(-degrees, degrees, n))
    zoom = rng.uniform(1 - scale, 1 + scale, n)
    t = rng.uniform(-shift, shift, (n, 2)) * 2
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    theta = torch.tensor(np.stack([np.stack([cos, -sin, t[:, 0]], 1), np.stack([sin, cos, t[:, 1]], 1)], 1),
                         dtype=dtype, device=device)
    return F.affine_grid(theta, list(shape), align_corners=False)


def random_affine(x: torch.Tensor, rng: np.random.Generator, *, degrees: float, scale: float,
                  shift: float) -> torch.Tensor:
    """Random rotation (+/- ``degrees``), zoom (1 +/- ``scale``) and shift (+/- ``shift`` of the side) per image.

    Why: a few hundred lesion slices are memorised within epochs; the same lesion seen at
    other angles, sizes and positions is what makes a classifier generalise to new patients.
    Draws come from ``rng`` (seeded per epoch), so reruns and resumed runs see the same inputs.
    """
    grid = _affine_grid(x.shape, rng, degrees, scale, shift, x.dtype, x.device)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_affine_pair(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator, *, degrees: float, scale: float,
                       shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`random_affine` of images and, with the same transform, of their label maps (nearest, so labels stay labels)."""
    grid = _affine_grid(x.shape, rng, degrees, scale, shift, x.dtype, x.device)
    moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    labels = F.grid_sample(y.to(x.dtype), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return moved, labels.round().to(y.dtype)


def random_intensity(x: torch.Tensor, rng: np.random.Generator, *, contrast: float, brightness: float) -> torch.Tensor:
    """Per image ``x * c + b`` with c in 1 +/- ``contrast``, b in +/- ``brightness`` (window units).

    Why: bone density differs between patients and scanners (trabecular bone 100-300 HU, lower
    with age); a segmenter that learned one patient group's absolute brightness calls denser
    normal bone a lesion.
    """
    n = x.shape[0]
    c = torch.tensor(rng.uniform(1 - contrast, 1 + contrast, n), dtype=x.dtype, device=x.device).view(n, 1, 1, 1)
    b = torch.tensor(rng.uniform(-brightness, brightness, n), dtype=x.dtype, device=x.device).view(n, 1, 1, 1)
    return x * c + b
