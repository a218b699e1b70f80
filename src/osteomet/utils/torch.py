"""PyTorch plumbing shared by every trainer: device, seeds, pickle-free checkpoints, early stopping.

The MRI UNETR and the CT slice models keep the same run-folder contract
(``checkpoints/best.pt``, ``checkpoints/last.pt``, ``history.csv``) and the same rules
(tensors only, loaded with ``weights_only=True``; never train over an existing run), so
they are written once here. This module imports torch at the top: import it only inside
the functions that train or predict, never from the CLI's module level (``osteomet --help``
must stay free of torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch

from osteomet.errors import MissingInputError, OutputExistsError
from osteomet.layout import BEST_CHECKPOINT, CHECKPOINTS, HISTORY, LAST_CHECKPOINT
from osteomet.utils.files import atomic_path, write_text_atomic


def pick_device(device: str | None = None) -> torch.device:
    """The device asked for, else CUDA when present, else the CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def set_prior_bias(bias: torch.Tensor, prior: float) -> None:
    """Start a 2-class (background, foreground) output at the foreground ``prior``, as for focal loss.

    Otherwise the first epochs are spent unlearning foreground everywhere.
    """
    with torch.no_grad():
        bias.copy_(torch.tensor([math.log(1 - prior), math.log(prior)], dtype=bias.dtype))


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn, x: torch.Tensor, y: torch.Tensor,
               *, scaler: torch.amp.GradScaler | None = None) -> float:
    """One optimisation step on a batch; returns its loss.

    With a ``scaler`` the forward pass runs under float16 autocast exactly when the scaler is
    enabled (mixed precision on CUDA); without one it is a plain float32 step.
    """
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    else:
        with torch.autocast(device_type=x.device.type, dtype=torch.float16, enabled=scaler.is_enabled()):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return float(loss.detach())


# --------------------------------------------------------------------------------------------
# Seeds: every random draw is a pure function of (seed, epoch, ...), so reruns and resumed
# runs draw the same numbers.
# --------------------------------------------------------------------------------------------


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


def set_epoch_lr(optimizer: torch.optim.Optimizer, base_lr: float, epoch: int, max_epochs: int,
                 schedule: str) -> float:
    """Set (and return) the learning rate of ``epoch``: constant, or cosine from ``base_lr`` towards 0.

    A pure function of the epoch (CosineAnnealingLR's curve without its state), so a resumed run
    continues on exactly the curve of an uninterrupted one.
    """
    lr = base_lr if schedule == "none" else 0.5 * base_lr * (1.0 + math.cos(math.pi * epoch / max(max_epochs, 1)))
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


# --------------------------------------------------------------------------------------------
# Checkpoints: plain tensors and Python values, never pickled objects.
# --------------------------------------------------------------------------------------------


def best_checkpoint(run_dir: str | Path) -> Path:
    """Weights of the best validation epoch of a run folder."""
    return Path(run_dir) / CHECKPOINTS / BEST_CHECKPOINT


def last_checkpoint(run_dir: str | Path) -> Path:
    """The state written after the latest epoch of a run folder."""
    return Path(run_dir) / CHECKPOINTS / LAST_CHECKPOINT


def save_state(state: dict[str, Any], path: str | Path) -> Path:
    """torch.save of tensors and plain Python values only (loadable with weights_only=True), atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_state(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint read with ``weights_only=True``: a file that holds code is refused, not run."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: checkpoint does not exist")
    return torch.load(path, map_location=device, weights_only=True)


def load_weights(model: torch.nn.Module, path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load the checkpoint's ``model`` weights into ``model``; return the whole checkpoint (epoch, threshold...)."""
    state = load_state(path, device)
    model.load_state_dict(state["model"])
    return state


def refuse_existing_run(run_dir: str | Path, holds: str, hint: str = "use a new run folder", *,
                        checkpoint: str = BEST_CHECKPOINT) -> None:
    """Never train over a folder that already holds a run (its ``checkpoints/<checkpoint>`` exists)."""
    if (Path(run_dir) / CHECKPOINTS / checkpoint).exists():
        raise OutputExistsError(f"{run_dir}: holds {holds} already; {hint}")


def write_history(run_dir: str | Path, history: list[dict]) -> Path:
    """``history.csv``: one row per finished epoch, rewritten atomically after each."""
    return write_text_atomic(Path(run_dir) / HISTORY, pd.DataFrame(history).to_csv(index=False))


# --------------------------------------------------------------------------------------------
# Early stopping on a validation score that should rise (AUC, Dice).
# --------------------------------------------------------------------------------------------


@dataclass
class EarlyStopping:
    """Best score, its epoch and the epochs since, restorable from a checkpoint for an exact resume.

    A score counts as better only when strictly higher, so the first of tied epochs is kept
    (and a NaN score is never the best).
    """

    patience: int
    best: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
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
        if score > self.best:
            self.best, self.best_epoch, self.bad_epochs = score, epoch, 0
            return True
        self.bad_epochs += 1
        return False
