"""Seeds: every random draw of training is a pure function of (seed, epoch, ...).

Why: a rerun and a run resumed from ``last.pt`` must draw the same numbers as an
uninterrupted run, and no generator state is kept in a checkpoint; each epoch re-seeds
from (seed, epoch) instead.
"""

from __future__ import annotations

import numpy as np
import torch


def seed_weights(seed: int) -> None:
    """Seed torch's global generators right before a network is built: its initial weights depend on ``seed`` only."""
    torch.manual_seed(seed)


def epoch_rng(seed: int, epoch: int, *stream: int) -> np.random.Generator:
    """NumPy generator for one epoch's draws (order, flips); ``stream`` separates independent draws of an epoch."""
    return np.random.default_rng([seed, epoch, *stream])


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """torch generator for one epoch's DataLoader shuffle (re-seeded each epoch, so a resume shuffles the same)."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def seed_epoch(seed: int, epoch: int) -> None:
    """Re-seed torch's global generators for one epoch's dropout, so a resumed run draws what an
    uninterrupted one draws (the global state is not in the checkpoint)."""
    torch.manual_seed(seed * 100_003 + epoch + 7_919)
