"""When to stop, and which epoch counts as the best, on a validation score that should rise (AUC, Dice).

The selection rule can smooth the score first (an exponential moving average,
``smoothing``) and ignore the first ``min_epochs`` epochs: with ten validation patients one
epoch's AUC moves by 0.1 between neighbouring epochs, and an unsmoothed rule keeps whichever
early epoch happened to spike. With ``smoothing=0`` and ``min_epochs=0`` it is plain early
stopping on the epoch's own score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator


def smooth(previous: float, score: float, weight: float) -> float:
    """Exponential moving average of the validation score (``weight``: of the past); starts at the first score."""
    if weight == 0 or not math.isfinite(previous):
        return score
    return weight * previous + (1 - weight) * score


@dataclass
class EarlyStopping:
    """Best (smoothed) score, its epoch and the epochs since, restorable from a checkpoint for an exact resume.

    A score counts as better only when strictly higher, so the first of tied epochs is kept
    (and a NaN score is never the best). Before ``min_epochs`` an epoch is smoothed in but can
    neither be the best nor count against the patience.
    """

    patience: int
    best: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    smoothing: float = 0.0
    min_epochs: int = 0
    smoothed: float = math.nan
    stopped_early: bool = False

    @property
    def exhausted(self) -> bool:
        """``patience`` epochs in a row without a better score."""
        return self.bad_epochs >= self.patience

    def epochs(self, start: int, stop: int) -> Iterator[int]:
        """Epochs ``start`` .. ``stop - 1``, ending before the next one once patience is exhausted.

        ``stopped_early`` is set when the loop ends that way (before ``stop``).
        """
        for epoch in range(start, stop):
            if self.exhausted:
                self.stopped_early = True
                return
            yield epoch

    def update(self, score: float, epoch: int) -> bool:
        """Record an epoch's validation score; True when it is the new best (save the weights then)."""
        self.smoothed = smooth(self.smoothed, score, self.smoothing)
        if epoch < self.min_epochs:
            return False
        if self.smoothed > self.best:
            self.best, self.best_epoch, self.bad_epochs = self.smoothed, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps (``last.pt``'s ``stopper``)."""
        return {"best_score": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                "smoothed": self.smoothed}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's :meth:`state`."""
        self.best, self.best_epoch = float(state["best_score"]), int(state["best_epoch"])
        self.bad_epochs, self.smoothed = int(state["bad_epochs"]), float(state["smoothed"])
