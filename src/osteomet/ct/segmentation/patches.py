"""Training patches for the 2D segmenters: lesion-centred with probability p, else random in bone or anywhere.

Why patches: at the scanner's pixel size a whole slice is mostly lesion-free; a patch around a
lesion puts enough lesion pixels in every batch for Dice to have a gradient, and the random
patches in bone teach the network the sclerotic-looking normal bone (cortex, endplates) that it
must leave empty. A share (``anywhere_fraction``) of the non-lesion patches is centred anywhere
in the bone crop: sliding-window inference also shows the network windows of air, fat and
organs with little or no bone, and a network never trained on them (its instance norm
stretching their noise to unit variance) painted lesions there on every slice (measured:
18,000-28,000 false-positive voxels per whole-body CT at 2 mm pixels). The lesion centre is jittered by up to a quarter patch so the network does not
learn that lesions sit in the middle. Draws are a pure function of (seed, epoch), so reruns and
resumed runs see the same patches.
"""

from __future__ import annotations

import numpy as np

from osteomet.ct.slices.cache import SliceStore
from osteomet.ct.slices.inputs import context_indices, extract
from osteomet.errors import InputError
from osteomet.training.hard_negatives import HardNegatives


class PatchSampler:
    """Draws (image, label) patch batches from the training patients of a slice cache."""

    def __init__(self, store: SliceStore, patient_ids: list[str], *, size: int, context: int, lesion_fraction: float,
                 anywhere_fraction: float = 0.0):
        self.store, self.ids, self.size, self.context = store, list(patient_ids), size, context
        self.lesion_fraction, self.anywhere_fraction = lesion_fraction, anywhere_fraction
        self.lesion_voxels = {p: np.argwhere(np.asarray(store.array(p, "mask")) > 0) for p in self.ids}
        self.bone_voxels = {p: np.flatnonzero(np.asarray(store.array(p, "bone")).ravel()) for p in self.ids}
        self.with_lesion = [p for p in self.ids if len(self.lesion_voxels[p])]
        if not self.with_lesion:
            raise InputError("no training patient has a lesion voxel in the slice cache; segmentation needs some")
        self.hard: HardNegatives[tuple[str, int, int, int]] = HardNegatives()

    def _other(self, rng: np.random.Generator) -> tuple[str, int, int, int]:
        """A patch centre not chosen for a lesion: on bone, or anywhere in the crop (``anywhere_fraction``)."""
        pid = self.ids[rng.integers(len(self.ids))]
        shape = self.store.array(pid, "image").shape
        bone = self.bone_voxels[pid]
        anywhere = rng.random() < self.anywhere_fraction
        flat = int(bone[rng.integers(len(bone))]) if len(bone) and not anywhere else int(rng.integers(np.prod(shape)))
        k, cy, cx = np.unravel_index(flat, shape)
        return pid, int(k), int(cy), int(cx)

    def patch(self, pid: str, k: int, cy: int, cx: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (channels, size, size) and label (1, size, size) of one patch."""
        volume = self.store.array(pid, "image")
        image = extract(volume, context_indices(k, volume.shape[0], self.context), cy, cx, self.size)
        return image, extract(self.store.array(pid, "mask"), np.array([k]), cy, cx, self.size)

    def mine_hard_negatives(self, score, rng: np.random.Generator, pool: int, keep: int) -> None:
        """Keep the ``keep`` patches, out of ``pool`` non-lesion draws, with the most predicted lesion outside lesions.

        Why: a whole-body CT holds thousands of normal structures that look sclerotic (skull tables,
        endplates, femoral heads, rib crossings); random patches show each rarely, and every one
        the network still marks costs false-positive voxels on every patient. ``score`` maps
        images (n, channels, size, size) to lesion probabilities (n, size, size).
        """
        def false_positive(centres: list[tuple[str, int, int, int]]) -> np.ndarray:
            images, labels = zip(*(self.patch(*c) for c in centres))
            return (score(np.stack(images)) * (np.stack(labels)[:, 0] == 0)).sum(axis=(1, 2))

        self.hard.mine([self._other(rng) for _ in range(pool)], false_positive, keep)

    def _centre(self, rng: np.random.Generator) -> tuple[str, int, int, int]:
        if rng.random() < self.lesion_fraction:
            pid = self.with_lesion[rng.integers(len(self.with_lesion))]
            voxels = self.lesion_voxels[pid]
            k, cy, cx = voxels[rng.integers(len(voxels))]
            jitter = rng.integers(-(self.size // 4), self.size // 4 + 1, size=2)
            return pid, int(k), int(cy + jitter[0]), int(cx + jitter[1])
        hard = self.hard.draw(rng)  # half of the others, once mined, are the current hardest
        return hard if hard is not None else self._other(rng)

    def draw(self, n: int, rng: np.random.Generator, flip_prob: float) -> tuple[np.ndarray, np.ndarray]:
        """``n`` patches: images (n, channels, size, size) float32 and labels (n, 1, size, size) int64."""
        images, labels = [], []
        for _ in range(n):
            image, label = self.patch(*self._centre(rng))
            if rng.random() < flip_prob:
                image, label = image[..., ::-1], label[..., ::-1]
            images.append(image)
            labels.append(label)
        return np.ascontiguousarray(np.stack(images)), np.ascontiguousarray(np.stack(labels)).astype(np.int64)
