"""What every trainer reports when a run ends: the kept weights' validation score, its epoch and the history.

One result type for the UNETR and the CT slice models, so commands, pipeline stages and
benchmarks print and record a run the same way whichever network it trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass
class TrainingResult:
    """``score`` names the validation metric (``AUC``, ``Dice``); ``threshold`` only for classifiers."""

    run_dir: Path
    name: str
    score: str
    best_score: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    history: pd.DataFrame
    seconds: float
    threshold: float | None = None

    def describe(self, weights: str = "best") -> str:
        """One line: '<weights> validation <score> 0.812 at epoch 14, threshold 0.31 (20 epochs, stopped early)'."""
        threshold = f", threshold {self.threshold:.3g}" if self.threshold is not None else ""
        stopped = ", stopped early" if self.stopped_early else ""
        return (f"{weights} validation {self.score} {self.best_score:.3f} at epoch {self.best_epoch}{threshold} "
                f"({self.epochs_run} epochs{stopped})")
