"""Run-folder checkpoints: pickle-free files, the refusal to train over a run, and resume.

Every trainer keeps the same run-folder contract: ``checkpoints/best.pt`` (the weights kept
for inference), ``checkpoints/last.pt`` (everything a resume needs, rewritten after each
epoch) and ``history.csv``. Checkpoints hold tensors and plain Python values only and are
read with ``weights_only=True``, so a file that holds code is refused, not run.

One rule for ``--resume``: it continues the run whose ``last.pt`` is there and is an error
naming the folder when there is none. A command that trains several runs into one folder
(the classifier grid, the CT architectures) resumes those it had started
(:func:`run_started`) and starts the others.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from osteomet.errors import MissingInputError, OutputExistsError
from osteomet.layout import BEST_CHECKPOINT, CHECKPOINTS, LAST_CHECKPOINT
from osteomet.utils.files import atomic_path

#: The hint of the refusal to train over a run.
RESUME_HINT = "pass --resume to continue it or use a new folder"


def best_checkpoint(run_dir: str | Path) -> Path:
    """Weights kept for inference: of the best validation epoch, or of the final one (``weights: final``)."""
    return Path(run_dir) / CHECKPOINTS / BEST_CHECKPOINT


def last_checkpoint(run_dir: str | Path) -> Path:
    """The state written after the latest epoch of a run folder."""
    return Path(run_dir) / CHECKPOINTS / LAST_CHECKPOINT


def run_started(run_dir: str | Path) -> bool:
    """Whether a run folder holds a run to continue: at least one finished epoch (its ``last.pt``)."""
    return last_checkpoint(run_dir).is_file()


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


def resume_state(run_dir: str | Path, what: str, *, resume: bool,
                 device: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The ``last.pt`` state to continue from with ``resume``; None for a fresh start in a folder without a run.

    ``what`` names the run in the refusal ("a UNETR training run").
    """
    if not resume:
        refuse_existing_run(run_dir, what, RESUME_HINT, checkpoint=LAST_CHECKPOINT)
        return None
    if not run_started(run_dir):
        raise MissingInputError(f"{run_dir}: nothing to resume (no {CHECKPOINTS}/{LAST_CHECKPOINT} from an earlier "
                                f"run); train without --resume")
    return load_state(last_checkpoint(run_dir), device)


def stopper_state(state: dict[str, Any]) -> dict[str, float]:
    """The early-stopping state of a ``last.pt``, also of one written before the training core.

    Those kept the best score as ``best`` (CT), ``best_dice`` (UNETR) or ``best_auc`` (3D ResNet)
    beside ``best_epoch`` and ``bad_epochs``, and the classifier's smoothed AUC as ``smoothed_auc``.
    """
    if "stopper" in state:
        return dict(state["stopper"])
    best = next(state[key] for key in ("best", "best_dice", "best_auc") if key in state)
    return {"best_score": float(best), "best_epoch": int(state["best_epoch"]), "bad_epochs": int(state["bad_epochs"]),
            "smoothed": float(state.get("smoothed_auc", math.nan))}
