"""Shared torch plumbing: safe checkpoints, early stopping, seeds, the run-folder refusal."""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from osteomet.utils.torch import (
    EarlyStopping,
    best_checkpoint,
    epoch_generator,
    epoch_rng,
    last_checkpoint,
    load_state,
    load_weights,
    pick_device,
    refuse_existing_run,
    save_state,
    seed_weights,
    set_epoch_lr,
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


def test_early_stopping_keeps_the_first_best_and_stops_after_patience() -> None:
    scores = [0.5, 0.7, 0.7, 0.6, 0.8, 0.9]
    stopper, run, new_best = EarlyStopping(patience=2), [], []
    for epoch in stopper.epochs(0, len(scores)):
        run.append(epoch)
        new_best.append(stopper.update(scores[epoch], epoch))
    # by hand: best 0.7 at epoch 1 (the tie at 2 does not replace it), epochs 2 and 3 not better -> stop before 4
    assert run == [0, 1, 2, 3] and new_best == [True, True, False, False]
    assert (stopper.best, stopper.best_epoch, stopper.bad_epochs) == (0.7, 1, 2)
    assert stopper.exhausted and stopper.stopped_early


def test_patience_used_up_on_the_last_epoch_is_exhausted_but_not_stopped_early() -> None:
    stopper = EarlyStopping(patience=1)
    for epoch in stopper.epochs(0, 2):
        stopper.update([0.4, float("nan")][epoch], epoch)  # NaN is never a better score
    assert stopper.exhausted and not stopper.stopped_early
    assert stopper.best == 0.4 and stopper.best_epoch == 0


def test_resumed_stopper_continues_where_it_was() -> None:
    stopper = EarlyStopping(patience=3, best=0.6, best_epoch=2, bad_epochs=2)
    assert list(stopper.epochs(5, 10))[:1] == [5]
    fresh = EarlyStopping(patience=3, best=0.6, best_epoch=2, bad_epochs=3)
    assert list(fresh.epochs(5, 10)) == [] and fresh.stopped_early
    assert EarlyStopping(patience=1).best == -math.inf


def test_epoch_seeds_are_numpy_and_torch_seeding_by_seed_and_epoch() -> None:
    assert np.array_equal(epoch_rng(3, 7).random(5), np.random.default_rng([3, 7]).random(5))
    assert np.array_equal(epoch_rng(3, 7, 1).random(5), np.random.default_rng([3, 7, 1]).random(5))
    assert not np.array_equal(epoch_rng(3, 7).random(5), epoch_rng(3, 8).random(5))
    assert epoch_generator(3, 7).initial_seed() == 3 * 100_003 + 7
    seed_weights(11)
    first = torch.nn.Linear(4, 4).weight.detach().clone()
    seed_weights(11)
    assert torch.equal(first, torch.nn.Linear(4, 4).weight)


def test_device_choice() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_existing_run_is_refused_with_the_folder_named(tmp_path: Path) -> None:
    refuse_existing_run(tmp_path, "a trained unet")  # empty folder: fine
    save_state({"epoch": 0}, best_checkpoint(tmp_path))
    with pytest.raises(FileExistsError, match=re.escape(f"{tmp_path}: holds a trained unet already; use a new run folder")):
        refuse_existing_run(tmp_path, "a trained unet")
    refuse_existing_run(tmp_path, "a run", checkpoint="last.pt")  # only the named checkpoint counts


def test_epoch_learning_rate_follows_torch_cosine_annealing_and_constant_stays():
    model = torch.nn.Linear(2, 1)
    ours = torch.optim.SGD(model.parameters(), lr=0.1)
    reference = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(reference, T_max=7)
    for epoch in range(7):
        assert set_epoch_lr(ours, 0.1, epoch, 7, "cosine") == pytest.approx(reference.param_groups[0]["lr"], abs=1e-12)
        assert ours.param_groups[0]["lr"] == pytest.approx(reference.param_groups[0]["lr"], abs=1e-12)
        reference.step()
        scheduler.step()
    assert set_epoch_lr(ours, 0.1, 5, 7, "none") == 0.1 and ours.param_groups[0]["lr"] == 0.1
