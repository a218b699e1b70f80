"""The epoch loop every trainer runs: learning rate, seeding, validation, kept weights, history, ``last.pt``.

A trainer gives the loop one function, ``epoch(epoch, validate) -> EpochResult``, that trains
one epoch on its own data and, when ``validate`` is True, scores its validation patients;
everything around it is here once:

- the learning rate of the epoch (:mod:`.lr_schedule`), set before it trains;
- torch's global generators re-seeded from (seed, epoch) (dropout), unless the plan says not to;
- early stopping on the (smoothed) validation score, and ``best.pt``: the weights of the best
  epoch, or of every validated epoch up to the last with ``weights: final`` (validation then
  only monitors and may run every ``validate_every`` epochs and at the last);
- ``history.csv`` and ``last.pt`` rewritten after every epoch, so ``--resume`` continues a run
  to the same end as an uninterrupted one (on CPU, to the bit).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch

from osteomet.layout import HISTORY
from osteomet.training.checkpoint import best_checkpoint, last_checkpoint, resume_state, save_state, stopper_state
from osteomet.training.early_stopping import EarlyStopping
from osteomet.training.lr_schedule import epoch_learning_rate, set_learning_rate
from osteomet.training.seeds import seed_epoch
from osteomet.utils.files import write_text_atomic

#: The config fields a plan reads (plan field -> config field), where a config has them.
_CONFIG_FIELDS = {"max_epochs": "max_epochs", "learning_rate": "learning_rate", "schedule": "scheduler",
                  "patience": "patience", "weights": "weights", "validate_every": "validate_every",
                  "min_epochs": "min_epochs", "smoothing": "selection_smoothing", "seed": "seed"}


@dataclass(frozen=True)
class Plan:
    """How a run trains: how long, how fast, which weights it keeps, when it validates, how it is seeded.

    ``weights``: ``best`` keeps the epoch of the best validation score and stops after ``patience``
    epochs without a better one; ``final`` runs the whole schedule and keeps the last epoch
    (nnU-Net's choice: with a few validation patients the best epoch is picked by noise).
    ``chained_cosine``: torch's step-by-step cosine (:mod:`.lr_schedule`). ``reseed_epochs``:
    re-seed torch's global generators every epoch (:func:`~osteomet.training.seeds.seed_epoch`).
    """

    max_epochs: int
    learning_rate: float
    schedule: str = "cosine"
    chained_cosine: bool = False
    patience: int = 10
    weights: Literal["best", "final"] = "best"
    validate_every: int = 1
    min_epochs: int = 0
    smoothing: float = 0.0
    seed: int = 0
    reseed_epochs: bool = True

    @classmethod
    def of(cls, config: Any, **fixed: Any) -> "Plan":
        """The plan of a trainer's config (``scheduler``, ``selection_smoothing`` and the fields of the plan's
        names, those it has), with ``fixed`` applied."""
        found = {name: getattr(config, key) for name, key in _CONFIG_FIELDS.items() if hasattr(config, key)}
        return cls(**{**found, **fixed})

    def stopper(self) -> EarlyStopping:
        """A fresh early stopping; with ``weights: final`` its patience is the whole schedule."""
        return EarlyStopping(self.max_epochs if self.weights == "final" else self.patience, smoothing=self.smoothing,
                             min_epochs=min(self.min_epochs, self.max_epochs - 1))

    def validates(self, epoch: int) -> bool:
        """Whether an epoch ends with a validation pass: every epoch, or with ``weights: final`` every
        ``validate_every`` epochs and always the last (whose score is reported for the kept weights)."""
        return (self.weights != "final" or self.validate_every <= 1 or (epoch + 1) % self.validate_every == 0
                or epoch == self.max_epochs - 1)

    def learning_rate_at(self, epoch: int, scores: Sequence[float]) -> float:
        """The learning rate of ``epoch``; ``scores``: the validation scores of the epochs before it."""
        return epoch_learning_rate(self.schedule, self.learning_rate, epoch, self.max_epochs, scores,
                                   chained=self.chained_cosine)


@dataclass
class EpochResult:
    """What a trainer's epoch reports: its mean training loss, its validation score (NaN when it did not
    validate), its own history columns, and what ``best.pt`` keeps beside the weights when they are kept
    (called only then)."""

    loss: float
    score: float = math.nan
    columns: dict[str, Any] = field(default_factory=dict)
    kept: Callable[[], dict[str, Any]] = dict


class TrainingRun:
    """A run folder in training: network, optimiser, early stopping and history, fresh or resumed from ``last.pt``.

    ``score`` names the validation score (``val_auc``, ``val_dice``): its history column and its key in
    ``best.pt``. ``columns``: the history columns in their order, from ``epoch``, ``lr``, ``train_loss``,
    the score, ``<score>_smoothed``, ``seconds`` and the trainer's own. ``what`` names the run in the
    refusal to train over it; ``scaler`` (mixed precision) is kept in ``last.pt`` when enabled.
    """

    def __init__(self, run_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, plan: Plan, *,
                 score: str, columns: Sequence[str], what: str, resume: bool, device: str | torch.device = "cpu",
                 scaler: torch.amp.GradScaler | None = None):
        self.run_dir, self.model, self.optimizer, self.plan = Path(run_dir), model, optimizer, plan
        self.score, self.columns, self.scaler = score, tuple(columns), scaler
        self.stopper = plan.stopper()
        self.history: list[dict[str, Any]] = []
        self.start = 0
        state = resume_state(self.run_dir, what, resume=resume, device=device)
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            self.stopper.restore(stopper_state(state))
            self.start, self.history = int(state["epoch"]) + 1, list(state["history"])
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def train(self, epoch: Callable[[int, bool], EpochResult],
              on_epoch: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        """Run the epochs left (until ``max_epochs`` or exhausted patience); ``on_epoch(epoch, history row)`` after each."""
        plan = self.plan
        for index in self.stopper.epochs(self.start, plan.max_epochs):
            tick = time.perf_counter()
            lr = set_learning_rate(self.optimizer, plan.learning_rate_at(index, [h[self.score] for h in self.history]))
            if plan.reseed_epochs:
                seed_epoch(plan.seed, index)
            validate = plan.validates(index)
            result = epoch(index, validate)
            new_best = self.stopper.update(result.score, index)
            if validate and (new_best or plan.weights == "final"):
                save_state({"model": self.model.state_dict(), "epoch": index, self.score: result.score,
                            **result.kept()}, best_checkpoint(self.run_dir))
            values = {"epoch": index, "lr": lr, "train_loss": result.loss, self.score: result.score,
                      f"{self.score}_smoothed": self.stopper.smoothed, **result.columns,
                      "seconds": round(time.perf_counter() - tick, 3)}
            row = {name: values[name] for name in self.columns}
            self.history.append(row)
            self._save_last(index)
            write_text_atomic(self.run_dir / HISTORY, pd.DataFrame(self.history).to_csv(index=False))
            if on_epoch:
                on_epoch(index, row)

    def _save_last(self, epoch: int) -> None:
        """Everything a resume needs (tensors and plain values only)."""
        save_state({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": epoch,
                    "stopper": self.stopper.state(), "history": self.history,
                    "scaler": self.scaler.state_dict() if self.scaler is not None and self.scaler.is_enabled() else {}},
                   last_checkpoint(self.run_dir))

    def kept_score(self) -> tuple[float, int]:
        """(validation score, epoch) of the kept weights: the best epoch's, or the last one's with ``weights: final``."""
        if self.plan.weights == "final" and self.history:
            return self.history[-1][self.score], self.history[-1]["epoch"]
        return self.stopper.best, self.stopper.best_epoch

    @property
    def stopped_early(self) -> bool:
        """Patience used up, also when that happened on the last allowed epoch."""
        return self.stopper.exhausted
