"""Checkpoints: exact, pickle-free round trips; the refusal to train over a run; one rule for --resume."""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path

import pytest
import torch

from osteomet.errors import MissingInputError, OutputExistsError
from osteomet.training.checkpoint import (
    best_checkpoint,
    last_checkpoint,
    load_state,
    load_weights,
    refuse_existing_run,
    resume_state,
    run_started,
    save_state,
    stopper_state,
)


class _Payload:
    """Not a tensor or plain value: a weights_only load must refuse it."""


def test_state_round_trip_is_exact_and_leaves_no_temporary(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    path = save_state({"model": model.state_dict(), "epoch": 4, "history": [{"loss": 0.5}]}, best_checkpoint(tmp_path))
    assert path == tmp_path / "checkpoints" / "best.pt"
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]
    other = torch.nn.Linear(3, 2)
    state = load_weights(other, path)
    assert state["epoch"] == 4 and state["history"] == [{"loss": 0.5}]
    for name, tensor in model.state_dict().items():
        assert torch.equal(other.state_dict()[name], tensor)


def test_pickled_objects_and_missing_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model": _Payload()}, path)  # what an untrusted checkpoint could hold
    with pytest.raises(pickle.UnpicklingError):
        load_state(path)
    with pytest.raises(FileNotFoundError, match="last.pt: checkpoint does not exist"):
        load_state(last_checkpoint(tmp_path))


def test_existing_run_is_refused_with_the_folder_named(tmp_path: Path) -> None:
    refuse_existing_run(tmp_path, "a trained unet")  # empty folder: fine
    save_state({"epoch": 0}, best_checkpoint(tmp_path))
    with pytest.raises(FileExistsError, match=re.escape(f"{tmp_path}: holds a trained unet already; use a new run folder")):
        refuse_existing_run(tmp_path, "a trained unet")
    refuse_existing_run(tmp_path, "a run", checkpoint="last.pt")  # only the named checkpoint counts


def test_resume_continues_a_started_run_and_names_the_folder_without_one(tmp_path: Path) -> None:
    assert resume_state(tmp_path, "a run", resume=False) is None and not run_started(tmp_path)  # fresh start
    with pytest.raises(MissingInputError, match=re.escape(f"{tmp_path}: nothing to resume (no checkpoints/last.pt")):
        resume_state(tmp_path, "a run", resume=True)
    save_state({"epoch": 3}, last_checkpoint(tmp_path))
    assert run_started(tmp_path)
    assert resume_state(tmp_path, "a run", resume=True) == {"epoch": 3}
    with pytest.raises(OutputExistsError, match="holds a run already; pass --resume"):
        resume_state(tmp_path, "a run", resume=False)


@pytest.mark.parametrize("key", ["best", "best_dice", "best_auc"])
def test_a_last_checkpoint_from_before_the_core_still_resumes(key: str) -> None:
    old = {key: 0.7, "best_epoch": 2, "bad_epochs": 1}
    state = stopper_state(old)
    assert (state["best_score"], state["best_epoch"], state["bad_epochs"]) == (0.7, 2, 1) and math.isnan(state["smoothed"])
    assert stopper_state({**old, "smoothed_auc": 0.65})["smoothed"] == 0.65
    new = {"best_score": 0.5, "best_epoch": 0, "bad_epochs": 0, "smoothed": 0.5}
    assert stopper_state({"stopper": new, key: 0.9}) == new  # the core's own key wins
