"""Classifier inputs: square tiles of bone at a fixed physical size, lesion-centred or random for training.

Why tiles: a slice classifier fed whole slices (or whole bone crops) sees a 10 mm lesion as a
few pixels among thousands and, with a few hundred lesion slices to learn from, memorises the
slices instead of learning what a lesion looks like. A tile of ``tile_mm`` millimetres resized
to ``tile_pixel_mm`` pixels keeps the lesion large in the input; lesion-centred tiles (centre
jittered by up to a quarter tile) give every lesion many different views; the other tiles are
random tiles of the very grid inference uses, so the classifier learns the normal bone (cortex,
endplates, bone edges) it will be shown. The networks stay the method's
slice classifiers: at inference each slice is covered by tiles over its bone (stride half a
tile) and the slice's probability is the highest tile probability (a slice holds a lesion when
any part of it does).

Everything farther than ``bone_only_mm`` from bone is blanked (organs, contrast and bowel gas vary
far more than bone and carry no lesion). Adjacent slices are extra channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from osteomet.ct.slices.cache import SliceStore
from osteomet.ct.slices.inputs import bone_neighbourhood, context_indices, extract, resize_square
from osteomet.errors import InputError
from osteomet.training.hard_negatives import HardNegatives


@dataclass(frozen=True)
class TileSettings:
    tile_mm: float
    tile_pixel_mm: float
    context: int
    bone_only_mm: float | None

    @property
    def size(self) -> int:
        """Input side in pixels."""
        return int(round(self.tile_mm / self.tile_pixel_mm))


class BoneTiles:
    """Tiles of the cached slices of one slice root (per-patient arrays kept in memory once read)."""

    def __init__(self, store: SliceStore, settings: TileSettings):
        self.store, self.settings = store, settings
        self._images: dict[str, np.ndarray] = {}

    def image(self, patient_id: str) -> np.ndarray:
        """The cached slices (float32), blanked outside the bone neighbourhood when asked."""
        if patient_id not in self._images:
            image = np.asarray(self.store.array(patient_id, "image"), np.float32)
            if self.settings.bone_only_mm is not None:
                image = image * bone_neighbourhood(self.store.array(patient_id, "bone"),
                                                   self.store.spacing(patient_id), self.settings.bone_only_mm)
            self._images[patient_id] = image
        return self._images[patient_id]

    def side_px(self, patient_id: str) -> int:
        """Tile side in cached pixels of this patient."""
        return max(2, int(round(self.settings.tile_mm / min(self.store.spacing(patient_id)))))

    def tile(self, patient_id: str, k: int, cy: int, cx: int) -> np.ndarray:
        """(channels, size, size) tile centred on (cy, cx) of slice ``k``."""
        image = self.image(patient_id)
        ks = context_indices(k, image.shape[0], self.settings.context)
        return resize_square(extract(image, ks, cy, cx, self.side_px(patient_id)), self.settings.size)

    def tile_mask(self, patient_id: str, k: int, cy: int, cx: int) -> np.ndarray:
        """The lesion mask under a tile, on the tile's grid (for labels, overlays and Grad-CAM distances)."""
        mask = extract(np.asarray(self.store.array(patient_id, "mask")), np.array([k]), cy, cx, self.side_px(patient_id))
        return resize_square(mask, self.settings.size, binary=True)[0] > 0.5

    def has_lesion(self, patient_id: str, k: int, cy: int, cx: int) -> bool:
        """Whether the tile holds a lesion voxel of slice ``k`` (on the cached grid, so no voxel is lost to resizing)."""
        mask = np.asarray(self.store.array(patient_id, "mask"))
        return bool(extract(mask, np.array([k]), cy, cx, self.side_px(patient_id)).any())

    def centres(self, patient_id: str, k: int) -> list[tuple[int, int]]:
        """Tile centres covering the bone of slice ``k`` (stride half a tile); the slice centre when it has none."""
        bone = np.asarray(self.store.array(patient_id, "bone")[k]) > 0
        side = self.side_px(patient_id)
        h, w = bone.shape
        ys, xs = np.flatnonzero(bone.any(axis=1)), np.flatnonzero(bone.any(axis=0))
        if ys.size == 0:
            return [(h // 2, w // 2)]
        out = []
        step = max(1, side // 2)
        for cy in _positions(int(ys[0]), int(ys[-1]) + 1, side, step):
            for cx in _positions(int(xs[0]), int(xs[-1]) + 1, side, step):
                y0, x0 = max(cy - side // 2, 0), max(cx - side // 2, 0)
                if bone[y0:cy - side // 2 + side, x0:cx - side // 2 + side].any():
                    out.append((cy, cx))
        return out or [(h // 2, w // 2)]

    def slice_tiles(self, patient_id: str, k: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """All tiles of one slice (T, channels, size, size) and their centres."""
        centres = self.centres(patient_id, k)
        return np.stack([self.tile(patient_id, k, cy, cx) for cy, cx in centres]), centres

    def pixel_mm(self) -> float:
        return self.settings.tile_pixel_mm


def _positions(lo: int, hi: int, side: int, step: int) -> list[int]:
    """Centres of tiles of ``side`` pixels at ``step`` that cover [lo, hi)."""
    if hi - lo <= side:
        return [(lo + hi) // 2]
    first = lo + side // 2
    out = list(range(first, hi - side // 2, step))
    if out[-1] + side - side // 2 < hi:
        out.append(hi - (side - side // 2))
    return out


class TileSampler:
    """Training tiles: lesion-centred with probability ``positive_fraction``; else a mined hard negative, a tile
    centred on random bone (``bone_centred_fraction`` of the rest) or a random tile of the inference grid."""

    def __init__(self, tiles: BoneTiles, patient_ids: list[str], positive_fraction: float,
                 bone_centred_fraction: float = 0.0):
        self.tiles, self.ids, self.positive_fraction = tiles, list(patient_ids), positive_fraction
        self.bone_centred_fraction = bone_centred_fraction
        store = tiles.store
        self.lesion_voxels = {p: np.argwhere(np.asarray(store.array(p, "mask")) > 0) for p in self.ids}
        self._bone: dict[str, np.ndarray] = {}
        self.with_lesion = [p for p in self.ids if len(self.lesion_voxels[p])]
        if not self.with_lesion:
            raise InputError("no training patient has a lesion voxel in the slice cache; detection needs some")
        self.hard: HardNegatives[tuple[str, int, int, int]] = HardNegatives()

    def grid_tile(self, rng: np.random.Generator) -> tuple[str, int, int, int]:
        """A random tile of the inference grid: random patient, slice and tile over its bone."""
        pid = self.ids[rng.integers(len(self.ids))]
        k = int(rng.integers(self.tiles.store.array(pid, "image").shape[0]))
        centres = self.tiles.centres(pid, k)
        cy, cx = centres[rng.integers(len(centres))]
        return pid, k, int(cy), int(cx)

    def mine_hard_negatives(self, score, rng: np.random.Generator, pool: int, keep: int) -> None:
        """Keep the ``keep`` lesion-free grid tiles, out of ``pool`` random ones, that ``score`` ranks highest.

        Why: a slice's score is its highest tile, so one normal structure that looks sclerotic
        (a rib crossing, the sternum, a femoral head) makes a false-positive slice; random
        tiles rarely show the network those, the mined ones do in every batch.
        """
        candidates = [c for c in (self.grid_tile(rng) for _ in range(pool)) if not self.tiles.has_lesion(*c)]
        self.hard.mine(candidates, lambda chosen: score(np.stack([self.tiles.tile(*c) for c in chosen])), keep)

    def bone_voxels(self, patient_id: str) -> np.ndarray:
        """Flat indices of a training patient's bone voxels (kept once computed)."""
        if patient_id not in self._bone:
            self._bone[patient_id] = np.flatnonzero(np.asarray(self.tiles.store.array(patient_id, "bone")) > 0)
        return self._bone[patient_id]

    def _jittered(self, rng: np.random.Generator, pid: str, k: int, cy: int, cx: int) -> tuple[str, int, int, int]:
        quarter = self.tiles.side_px(pid) // 4
        jitter = rng.integers(-quarter, quarter + 1, size=2)
        return pid, int(k), int(cy + jitter[0]), int(cx + jitter[1])

    def bone_centred_tile(self, rng: np.random.Generator) -> tuple[str, int, int, int]:
        """A tile centred (with the lesion tiles' jitter) on a random bone voxel of a random training patient.

        Why: lesion tiles have their bone near the centre, grid tiles rarely do; a classifier
        trained on those two alone scored normal vertebral bodies as high as lesions (measured,
        20 synthetic CTs: a tenth of the lesion-free test slices above 0.83, 0.32 with these
        tiles). Centred bone without a lesion breaks that shortcut.
        """
        pid = self.ids[rng.integers(len(self.ids))]
        voxels = self.bone_voxels(pid)
        if not len(voxels):
            return self.grid_tile(rng)
        shape = self.tiles.store.array(pid, "bone").shape
        k, cy, cx = np.unravel_index(int(voxels[rng.integers(len(voxels))]), shape)
        return self._jittered(rng, pid, int(k), int(cy), int(cx))

    def _centre(self, rng: np.random.Generator) -> tuple[str, int, int, int]:
        if rng.random() < self.positive_fraction:
            pid = self.with_lesion[rng.integers(len(self.with_lesion))]
            voxels = self.lesion_voxels[pid]
            k, cy, cx = voxels[rng.integers(len(voxels))]
            return self._jittered(rng, pid, int(k), int(cy), int(cx))
        # the other tiles are drawn exactly as inference cuts them (a tile of the grid over a random
        # slice's bone), so the classifier learns the tiles it will be asked about, bone edges included;
        # half of them, once mined, are the hardest lesion-free tiles of the current network
        hard = self.hard.draw(rng)
        if hard is not None:
            return hard
        if self.bone_centred_fraction and rng.random() < self.bone_centred_fraction:
            return self.bone_centred_tile(rng)
        return self.grid_tile(rng)

    def draw(self, n: int, rng: np.random.Generator, flip_prob: float) -> tuple[np.ndarray, np.ndarray]:
        """``n`` tiles (n, channels, size, size) and their labels (n,): 1 when the tile holds lesion on its slice."""
        images, labels = [], []
        for _ in range(n):
            pid, k, cy, cx = self._centre(rng)
            image = self.tiles.tile(pid, k, cy, cx)
            if rng.random() < flip_prob:
                image = image[..., ::-1]
            images.append(image)
            labels.append(float(self.tiles.has_lesion(pid, k, cy, cx)))
        return np.ascontiguousarray(np.stack(images), np.float32), np.asarray(labels, np.float32)
