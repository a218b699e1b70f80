"""Epochs drawn from a sampler: the batches of a CT slice trainer, with the epoch's hard negatives mined first.

Both CT trainers draw a fixed number of samples per epoch (tiles, patches) instead of passing
over a dataset; the draws are a function of (seed, epoch) only, so a rerun or a resumed run
sees the same batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np
import torch

from osteomet.training.seeds import epoch_rng


class Sampler(Protocol):
    def draw(self, n: int, rng: np.random.Generator, flip_prob: float) -> tuple[np.ndarray, np.ndarray]: ...

    def mine_hard_negatives(self, score: Callable[[np.ndarray], np.ndarray], rng: np.random.Generator, pool: int,
                            keep: int) -> None: ...


def sampled_epoch(sampler: Sampler, model: torch.nn.Module, score: Callable[[np.ndarray], np.ndarray], *, seed: int,
                  epoch: int, samples: int, batch_size: int, flip_prob: float,
                  hard_negatives: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray, np.random.Generator]]:
    """(inputs, labels, the epoch's generator) per batch of an epoch of ``samples`` draws; the model left in training mode.

    From the second epoch on, ``hard_negatives`` of ``4 * hard_negatives`` lesion-free draws are mined first,
    scored by ``score`` with the weights the epoch starts from (so a resumed run mines the same ones). The
    generator also drives the trainer's augmentation.
    """
    rng = epoch_rng(seed, epoch)
    if hard_negatives and epoch > 0:
        model.eval()
        sampler.mine_hard_negatives(score, epoch_rng(seed, epoch, 3), pool=4 * hard_negatives, keep=hard_negatives)
    model.train()
    for first in range(0, samples, batch_size):
        x, y = sampler.draw(min(batch_size, samples - first), rng, flip_prob)
        yield x, y, rng
