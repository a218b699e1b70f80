"""Network inputs from cached slices: adjacent slices as channels, square bone crops for the classifiers.

Why adjacent slices: a lesion is a 3D object and its neighbours tell a nodule (present on a
few consecutive slices) from noise or a vessel (5 mm slices of a 10 mm nodule show it on
2-3 slices). ``context`` slices on each side become extra channels (clamped at the ends of
the scan, so every slice has the same number of channels).

Why square crops for detection: a classifier needs one input size; each slice's bone region
is cut out as a square (0 outside the scan: the bottom of the window) and resized modestly
(:class:`SquareSlices`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from osteomet.ct.slice_cache import SliceStore


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


def slice_box(bone: np.ndarray, margin_px: int, min_side: int) -> tuple[int, int, int]:
    """(centre y, centre x, side) of the square around the bone of one slice (``bone``: channels x H x W).

    The side is the bone's larger extent plus the margin, at least ``min_side``; a slice without
    bone gets the whole crop.
    """
    _, h, w = bone.shape
    ys, xs = np.flatnonzero(bone.any(axis=(0, 2))), np.flatnonzero(bone.any(axis=(0, 1)))
    if ys.size == 0:
        return h // 2, w // 2, max(h, w, min_side)
    side = max(int(ys[-1] - ys[0] + 1), int(xs[-1] - xs[0] + 1)) + 2 * margin_px
    return int((ys[0] + ys[-1] + 1) // 2), int((xs[0] + xs[-1] + 1) // 2), max(side, min_side)


def resize_square(x: np.ndarray, size: int, *, binary: bool = False) -> np.ndarray:
    """(C x S x S) -> (C x size x size): area mean when shrinking, bilinear when enlarging (nearest for masks)."""
    if x.shape[-1] == size:
        return x
    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))[None]
    mode = "nearest" if binary else ("area" if x.shape[-1] > size else "bilinear")
    out = F.interpolate(t, size=(size, size), mode=mode, **({} if mode != "bilinear" else {"align_corners": False}))
    return out[0].numpy()


class SquareSlices:
    """Each slice cropped to the square around its own bone, resized to ``size``, with its neighbours as channels.

    Why per slice: at the lumbar spine or pelvis the bone spans a few centimetres of a 50 cm
    field of view; cropping each slice to its own bone (TotalSegmentator map, or HU threshold)
    makes a lesion a sizeable part of the input instead of a few pixels lost in the body. The
    square is never enlarged by more than ``max_zoom`` (its side is at least ``size / max_zoom``
    cached pixels), so pixels stay near the scanner's own size. With ``bone_only_mm`` everything
    farther than that from bone is blanked (organs, contrast and bowel gas vary far more than
    bone and carry no lesion). Inputs are computed once per patient and kept in memory.
    """

    def __init__(self, store: SliceStore, size: int, context: int, *, bone_only_mm: float | None = None,
                 margin_mm: float = 10.0, max_zoom: float = 2.0):
        self.store, self.size, self.context = store, size, context
        self.bone_only_mm, self.margin_mm, self.max_zoom = bone_only_mm, margin_mm, max_zoom
        self._volumes: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _prepare(self, patient_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(Z x channels x size x size) float16 inputs, (Z x 3) boxes (cy, cx, side) and the bone array."""
        if patient_id not in self._volumes:
            image = np.asarray(self.store.array(patient_id, "image"), np.float32)
            bone = np.asarray(self.store.array(patient_id, "bone")) > 0
            spacing = self.store.spacing(patient_id)
            if self.bone_only_mm is not None:
                image = image * bone_neighbourhood(bone, spacing, self.bone_only_mm)
            margin = int(np.ceil(self.margin_mm / min(spacing)))
            min_side = int(np.ceil(self.size / self.max_zoom))
            n = image.shape[0]
            inputs = np.zeros((n, 2 * self.context + 1, self.size, self.size), np.float16)
            boxes = np.zeros((n, 3), np.int32)
            for k in range(n):
                ks = context_indices(k, n, self.context)
                cy, cx, side = slice_box(bone[ks], margin, min_side)
                boxes[k] = (cy, cx, side)
                inputs[k] = resize_square(extract(image, ks, cy, cx, side), self.size)
            self._volumes[patient_id] = (inputs, boxes, bone)
        return self._volumes[patient_id]

    def batch(self, patient_ids, slices) -> np.ndarray:
        """(B, channels, size, size) float32 for (patient, slice) pairs."""
        out = [self._prepare(pid)[0][int(k)] for pid, k in zip(patient_ids, slices)]
        return np.stack(out).astype(np.float32) if out else \
            np.zeros((0, 2 * self.context + 1, self.size, self.size), np.float32)

    def mask(self, patient_id: str, k: int) -> np.ndarray:
        """The lesion mask of one slice on the same square grid (for overlays and Grad-CAM distances)."""
        cy, cx, side = self._prepare(patient_id)[1][int(k)]
        mask = extract(np.asarray(self.store.array(patient_id, "mask")), np.array([int(k)]), cy, cx, side)
        return resize_square(mask, self.size, binary=True)[0] > 0.5

    def pixel_mm(self, patient_id: str, k: int) -> float:
        """Pixel size (mm) of one slice's square input: the cache's pixel size times side / size."""
        side = self._prepare(patient_id)[1][int(k)][2]
        return float(max(self.store.spacing(patient_id)) * side / self.size)


def random_affine(x: torch.Tensor, rng: np.random.Generator, *, degrees: float, scale: float,
                  shift: float) -> torch.Tensor:
    """Random rotation (+/- ``degrees``), zoom (1 +/- ``scale``) and shift (+/- ``shift`` of the side) per image.

    Why: a few hundred lesion slices are memorised within epochs; the same lesion seen at
    other angles, sizes and positions is what makes a classifier generalise to new patients.
    Draws come from ``rng`` (seeded per epoch), so reruns and resumed runs see the same inputs.
    """
    n = x.shape[0]
    angle = np.deg2rad(rng.uniform(-degrees, degrees, n))
    zoom = rng.uniform(1 - scale, 1 + scale, n)
    t = rng.uniform(-shift, shift, (n, 2)) * 2
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    theta = torch.tensor(np.stack([np.stack([cos, -sin, t[:, 0]], 1), np.stack([sin, cos, t[:, 1]], 1)], 1),
                         dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
