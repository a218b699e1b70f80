"""Network inputs from cached slices: adjacent slices as channels, square bone crops for the classifiers.

Why adjacent slices: a lesion is a 3D object and its neighbours tell a nodule (present on a
few consecutive slices) from noise or a vessel (5 mm slices of a 10 mm nodule show it on
2-3 slices). ``context`` slices on each side become extra channels (clamped at the ends of
the scan, so every slice has the same number of channels).

Why square crops for detection: a classifier needs one input size; each patient's bone crop
is padded to a square (with 0, the bottom of the window: air) and shrunk to ``size`` only
when it is larger, so the pixels stay at or near the scanner's own size.
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


def square_pad(volume: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad (Z x H x W) with zeros to (Z x S x S), S = max(H, W), centred; returns the array and (top, left)."""
    z, h, w = volume.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    out = np.zeros((z, side, side), np.float32)
    out[:, top:top + h, left:left + w] = volume
    return out, (top, left)


def fit_square(volume: np.ndarray, size: int, *, binary: bool = False, zoom: float = 1.0) -> tuple[np.ndarray, float]:
    """(Z x H x W) -> (Z x size x size): padded to a square, magnified by ``zoom``, then shrunk (area mean) or padded.

    Returns the array (float16; 0/1 uint8 when ``binary``) and the factor by which its pixels
    are larger than the cached ones (1/zoom when nothing was shrunk).
    """
    squared, _ = square_pad(np.asarray(volume, np.float32))
    if zoom != 1.0:
        side = int(round(squared.shape[-1] * zoom))
        squared = F.interpolate(torch.from_numpy(squared)[:, None], size=(side, side),
                                mode="nearest" if binary else "bilinear")[:, 0].numpy()
    side = squared.shape[-1]
    if side > size:
        scale = side / size
        shrunk = F.interpolate(torch.from_numpy(squared)[:, None], size=(size, size), mode="area")[:, 0].numpy()
    else:
        scale, shrunk = 1.0, square_pad_to(squared, size)
    return (shrunk >= 0.5).astype(np.uint8) if binary else shrunk.astype(np.float16), float(scale) / zoom


def square_pad_to(squared: np.ndarray, size: int) -> np.ndarray:
    """Centre a (Z x S x S) array in (Z x size x size) zeros, S <= size."""
    side = squared.shape[-1]
    offset = (size - side) // 2
    out = np.zeros((squared.shape[0], size, size), np.float32)
    out[:, offset:offset + side, offset:offset + side] = squared
    return out


class SquareSlices:
    """Each patient's slices fitted to ``size`` x ``size`` once (in memory), served with their context channels."""

    def __init__(self, store: SliceStore, size: int, context: int, zoom: float = 1.0):
        self.store, self.size, self.context, self.zoom = store, size, context, zoom
        self._volumes: dict[str, tuple[np.ndarray, float]] = {}

    def volume(self, patient_id: str) -> tuple[np.ndarray, float]:
        """(Z x size x size) float16 and the pixel-size factor against the cache."""
        if patient_id not in self._volumes:
            self._volumes[patient_id] = fit_square(self.store.array(patient_id, "image"), self.size, zoom=self.zoom)
        return self._volumes[patient_id]

    def batch(self, patient_ids, slices) -> np.ndarray:
        """(B, channels, size, size) float32 for (patient, slice) pairs."""
        out = []
        for pid, k in zip(patient_ids, slices):
            out.append(with_context(self.volume(pid)[0], [int(k)], self.context)[0])
        return np.stack(out) if out else np.zeros((0, 2 * self.context + 1, self.size, self.size), np.float32)

    def mask(self, patient_id: str, k: int) -> np.ndarray:
        """The lesion mask of one slice on the same square grid (for overlays and Grad-CAM distances)."""
        mask = self.store.array(patient_id, "mask")[int(k)][None]
        return fit_square(mask, self.size, binary=True, zoom=self.zoom)[0][0]

    def pixel_mm(self, patient_id: str) -> float:
        """Pixel size of the square inputs (mm): the cache's pixel size times the shrink factor."""
        return float(max(self.store.spacing(patient_id)) * self.volume(patient_id)[1])
