"""Hard-negative mining: the lesion-free samples the current network scores highest.

Why: a CT slice holds many normal structures that look sclerotic (rib crossings, the sternum,
endplates, femoral heads); random samples show the network each of them rarely, and every one
it still marks is a false positive on every patient. Mined once an epoch, they make half of a
sampler's lesion-free draws. Used by the detection tiles and the segmentation patches alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

import numpy as np

Candidate = TypeVar("Candidate")


class HardNegatives(Generic[Candidate]):
    """The mined hard negatives of a sampler (where to cut them, e.g. (patient, slice, y, x))."""

    def __init__(self) -> None:
        self.chosen: list[Candidate] = []

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self.chosen)

    def __len__(self) -> int:
        return len(self.chosen)

    def mine(self, candidates: list[Candidate], false_positive: Callable[[list[Candidate]], np.ndarray],
             keep: int) -> None:
        """Keep the ``keep`` candidates with the highest ``false_positive`` score (the earlier drawn on ties).

        ``false_positive`` maps the candidates to how much lesion the network predicts where there is
        none (a tile's probability, a patch's summed probability outside lesions); a candidate scored 0
        is not hard and is left out.
        """
        if not candidates:
            self.chosen = []
            return
        scores = np.asarray(false_positive(candidates))
        order = np.argsort(-scores, kind="stable")[:keep]
        self.chosen = [candidates[i] for i in order if scores[i] > 0]

    def draw(self, rng: np.random.Generator) -> Candidate | None:
        """Half of the lesion-free draws once some are mined: one of them; else None (draw as before mining)."""
        if self.chosen and rng.random() < 0.5:
            return self.chosen[rng.integers(len(self.chosen))]
        return None
