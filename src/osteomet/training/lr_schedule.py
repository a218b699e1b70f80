"""The learning rate of an epoch, a pure function of the epoch (and, on a plateau, of the scores before it).

Why a function and not torch's scheduler objects: a resumed run must continue on exactly the
curve of an uninterrupted one, and a function of (epoch, earlier scores) needs no scheduler
state in a checkpoint. Schedules: ``cosine`` (from the base rate towards 0 over
``max_epochs``), ``plateau`` (halved after more than 3 epochs without a better score, as
torch's ``ReduceLROnPlateau(mode="max", factor=0.5, patience=3)``) and ``none`` (constant).

The cosine comes in two forms that differ only in the last bits: the closed form and torch's
``CosineAnnealingLR``, which updates the previous rate by a ratio of cosines (``chained``).
The CT trainers have always used the first, the MRI trainers the second; each keeps its own,
so that models trained before this module keep their weights to the bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from osteomet.errors import InputError

SCHEDULES = ("cosine", "plateau", "none")


def epoch_learning_rate(schedule: str, base_lr: float, epoch: int, max_epochs: int, scores: Sequence[float] = (),
                        *, chained: bool = False) -> float:
    """Learning rate of ``epoch`` (0-based); ``scores``: the validation scores of the epochs before it (plateau)."""
    if schedule == "none":
        return base_lr
    if schedule == "cosine":
        t_max = max(max_epochs, 1)
        if not chained:
            return 0.5 * base_lr * (1.0 + math.cos(math.pi * epoch / t_max))
        lr = base_lr
        for t in range(1, epoch + 1):  # CosineAnnealingLR.get_lr, step by step (eta_min 0)
            lr = (1 + math.cos(math.pi * t / t_max)) / (1 + math.cos(math.pi * (t - 1) / t_max)) * lr
        return lr
    if schedule == "plateau":
        return _plateau(base_lr, scores[:epoch])
    raise InputError(f"unknown learning-rate schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


def _plateau(base_lr: float, scores: Sequence[float], *, factor: float = 0.5, patience: int = 3,
             threshold: float = 1e-4, eps: float = 1e-8) -> float:
    """ReduceLROnPlateau (mode max, relative threshold, no cooldown) replayed over the scores so far."""
    lr, best, bad = base_lr, -math.inf, 0
    for score in scores:
        if float(score) > best * (threshold + 1.0):
            best, bad = float(score), 0
        else:
            bad += 1
        if bad > patience:
            reduced = max(lr * factor, 0)
            if lr - reduced > eps:
                lr = reduced
            bad = 0
    return lr


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> float:
    """Give every parameter group of ``optimizer`` the rate ``lr``; returns it."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
