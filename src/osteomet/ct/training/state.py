"""Fresh start or exact resume of a CT slice trainer (``--resume``), as the MRI trainer does.

``checkpoints/last.pt`` holds, after every epoch, the weights, the optimiser state, the
early-stopping counters and the history; every random draw of an epoch is a function of
(seed, epoch) only, so a run interrupted and resumed draws the same patches and slices as an
uninterrupted one and (on CPU) ends with the same weights.

Which weights inference uses (``weights: best|final`` in both CT configs) is decided here once:
the epoch of the best validation score with early stopping, or the last epoch of the whole
schedule (validation then only monitors, and may run every few epochs: :func:`validates`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from osteomet.utils.torch import EarlyStopping, last_checkpoint, load_state, refuse_existing_run, save_state


def stopping_patience(config: Any) -> int:
    """Early-stopping patience: the config's, or the whole schedule with ``weights: final``."""
    return config.max_epochs if config.weights == "final" else config.patience


def validates(epoch: int, config: Any) -> bool:
    """Whether an epoch ends with a validation pass: every epoch, or with ``weights: final`` every
    ``validate_every`` epochs and always the last (whose score is reported for the kept weights)."""
    every = getattr(config, "validate_every", 1)
    return config.weights != "final" or every <= 1 or (epoch + 1) % every == 0 or epoch == config.max_epochs - 1


def keeps_epoch(stopper: EarlyStopping, score: float, epoch: int, weights: str) -> bool:
    """Record an epoch's validation score; True when its weights become the kept ones (``best.pt``)."""
    return stopper.update(score, epoch) or weights == "final"


def kept_score(stopper: EarlyStopping, history: list[dict[str, Any]], key: str, weights: str) -> tuple[float, int]:
    """(validation score, epoch) of the kept weights."""
    if weights == "final" and history:
        return history[-1][key], history[-1]["epoch"]
    return stopper.best, stopper.best_epoch


def start_or_resume(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, patience: int, *,
                    resume: bool, what: str, device: torch.device) -> tuple[int, EarlyStopping, list[dict]]:
    """(first epoch, early stopping state, history so far); a fresh start refuses a folder that holds a run.

    With ``resume`` and no ``last.pt`` (an architecture the interrupted run had not reached)
    training starts afresh; the CLI checks that the run folder itself exists.
    """
    path = last_checkpoint(run_dir)
    if not resume:
        refuse_existing_run(run_dir, what, "pass --resume to continue it or use a new run folder", checkpoint="last.pt")
        return 0, EarlyStopping(patience), []
    if not path.is_file():
        # an architecture the interrupted run had not reached yet starts afresh (never over a finished one)
        refuse_existing_run(run_dir, what, "its last.pt is missing, so it cannot be resumed; use a new run folder")
        return 0, EarlyStopping(patience), []
    state = load_state(path, device)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    stopper = EarlyStopping(patience, float(state["best"]), int(state["best_epoch"]), int(state["bad_epochs"]))
    return int(state["epoch"]) + 1, stopper, list(state["history"])


def save_last(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
              stopper: EarlyStopping, history: list[dict[str, Any]]) -> None:
    """Everything a resume needs, after each epoch (tensors and plain values only)."""
    save_state({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                "best": stopper.best, "best_epoch": stopper.best_epoch, "bad_epochs": stopper.bad_epochs,
                "history": history}, last_checkpoint(run_dir))
