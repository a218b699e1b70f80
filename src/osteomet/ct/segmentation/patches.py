"""Training patches for the 2D segmenters: lesion-centred with probability p, random in bone otherwise.

Why patches: at the scanner's pixel size a whole slice is mostly lesion-free; a patch around a
lesion puts enough lesion pixels in every batch for Dice to have a gradient, and the random
patches in bone teach the network the sclerotic-looking normal bone (cortex, endplates) that it
must leave empty. The lesion centre is jittered by up to a quarter patch so the network does not
learn that lesions sit in the middle. Draws are a pure function of (seed, epoch), so reruns and
resumed runs see the same patches.
"""

from __future__ import annotations

import numpy as np

from osteomet.ct.slice_cache import SliceStore
from osteomet.ct.slice_inputs import context_indices, extract
from osteomet.errors import InputError


class PatchSampler:
    """Draws (image, label) patch batches from the training patients of a slice cache."""

    def __init__(self, store: SliceStore, patient_ids: list[str], *, size: int, context: int, lesion_fraction: float):
        self.store, self.ids, self.size, self.context = store, list(patient_ids), size, context
        self.lesion_fraction = lesion_fraction
        self.lesion_voxels = {p: np.argwhere(np.asarray(store.array(p, "mask")) > 0) for p in self.ids}
        self.bone_voxels = {p: np.flatnonzero(np.asarray(store.array(p, "bone")).ravel()) for p in self.ids}
        self.with_lesion = [p for p in self.ids if len(self.lesion_voxels[p])]
        if not self.with_lesion:
            raise InputError("no training patient has a lesion voxel in the slice cache; segmentation needs some")

    def _centre(self, rng: np.random.Generator) -> tuple[str, int, int, int]:
        if rng.random() < self.lesion_fraction:
            pid = self.with_lesion[rng.integers(len(self.with_lesion))]
            voxels = self.lesion_voxels[pid]
            k, cy, cx = voxels[rng.integers(len(voxels))]
            jitter = rng.integers(-(self.size // 4), self.size // 4 + 1, size=2)
            return pid, int(k), int(cy + jitter[0]), int(cx + jitter[1])
        pid = self.ids[rng.integers(len(self.ids))]
        shape = self.store.array(pid, "image").shape
        bone = self.bone_voxels[pid]
        flat = int(bone[rng.integers(len(bone))]) if len(bone) else int(rng.integers(np.prod(shape)))
        k, cy, cx = np.unravel_index(flat, shape)
        return pid, int(k), int(cy), int(cx)

    def draw(self, n: int, rng: np.random.Generator, flip_prob: float) -> tuple[np.ndarray, np.ndarray]:
        """``n`` patches: images (n, channels, size, size) float32 and labels (n, 1, size, size) int64."""
        images, labels = [], []
        for _ in range(n):
            pid, k, cy, cx = self._centre(rng)
            volume = self.store.array(pid, "image")
            image = extract(volume, context_indices(k, volume.shape[0], self.context), cy, cx, self.size)
            label = extract(self.store.array(pid, "mask"), np.array([k]), cy, cx, self.size)
            if rng.random() < flip_prob:
                image, label = image[..., ::-1], label[..., ::-1]
            images.append(image)
            labels.append(label)
        return np.ascontiguousarray(np.stack(images)), np.ascontiguousarray(np.stack(labels)).astype(np.int64)
