"""The epoch loop: exact resume, kept weights (best or final), sparse validation, early stop, history rows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from osteomet.errors import MissingInputError, OutputExistsError
from osteomet.training.checkpoint import best_checkpoint, last_checkpoint, load_state
from osteomet.training.loop import EpochResult, Plan, TrainingRun
from osteomet.training.lr_schedule import epoch_learning_rate
from osteomet.training.seeds import epoch_rng, seed_weights
from osteomet.training.step import train_step

COLUMNS = ("epoch", "lr", "train_loss", "val_score", "val_score_smoothed", "seconds")
_X = torch.from_numpy(np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32))
_Y = _X @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]]) + 0.1
_XV, _YV = _X[:16] + 0.05, _Y[:16]


def _fit(run_dir: Path, plan: Plan, *, resume: bool = False, interrupt_after: int | None = None) -> TrainingRun:
    """A small network with dropout fitted to a linear target; validation score = minus the validation MSE."""
    seed_weights(plan.seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=plan.learning_rate, momentum=0.9)
    run = TrainingRun(run_dir, model, optimizer, plan, score="val_score", columns=COLUMNS, what="a test run",
                      resume=resume)

    def epoch(index: int, validate: bool) -> EpochResult:
        rng = epoch_rng(plan.seed, index)
        model.train()
        losses = [train_step(model, optimizer, torch.nn.functional.mse_loss, _X[rows], _Y[rows])
                  for rows in (rng.integers(0, len(_X), 16) for _ in range(4))]
        if not validate:
            return EpochResult(float(np.mean(losses)))
        model.eval()
        with torch.no_grad():
            score = -float(torch.nn.functional.mse_loss(model(_XV), _YV))
        return EpochResult(float(np.mean(losses)), score, kept=lambda: {"kept_at": index})

    def interrupt(index: int, _row: dict) -> None:
        if index == interrupt_after:
            raise KeyboardInterrupt

    run.train(epoch, interrupt)
    return run


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_state(path)["model"]


@pytest.mark.parametrize("schedule", ["cosine", "plateau"])
def test_a_resumed_run_ends_as_an_uninterrupted_one(tmp_path: Path, schedule: str) -> None:
    plan = Plan(max_epochs=7, learning_rate=0.05, schedule=schedule, chained_cosine=True, patience=7, smoothing=0.5,
                min_epochs=1, seed=3)
    straight = _fit(tmp_path / "straight", plan)
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "cut", plan, interrupt_after=2)
    with pytest.raises(OutputExistsError, match="pass --resume"):
        _fit(tmp_path / "cut", plan)
    resumed = _fit(tmp_path / "cut", plan, resume=True)
    assert resumed.start == 3 and len(resumed.history) == 7
    drop = ["seconds"]
    pd.testing.assert_frame_equal(pd.DataFrame(resumed.history).drop(columns=drop),
                                  pd.DataFrame(straight.history).drop(columns=drop))
    for checkpoint in (best_checkpoint, last_checkpoint):
        a, b = _weights(checkpoint(tmp_path / "straight")), _weights(checkpoint(tmp_path / "cut"))
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.stopper.state() == straight.stopper.state()


def test_resume_without_a_last_checkpoint_is_an_error_naming_the_folder(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match=f"{tmp_path / 'none'}: nothing to resume"):
        _fit(tmp_path / "none", Plan(max_epochs=2, learning_rate=0.01), resume=True)


def test_history_and_best_checkpoint_follow_the_smoothed_rule(tmp_path: Path) -> None:
    plan = Plan(max_epochs=6, learning_rate=0.05, patience=6, smoothing=0.6, min_epochs=2, seed=1)
    run = _fit(tmp_path, plan)
    assert tuple(pd.read_csv(tmp_path / "history.csv").columns) == COLUMNS
    history = pd.DataFrame(run.history)
    assert history["lr"].tolist() == [epoch_learning_rate("cosine", 0.05, e, 6) for e in range(6)]
    expected = [history["val_score"][0]]
    for value in history["val_score"][1:]:
        expected.append(0.6 * expected[-1] + 0.4 * value)
    assert history["val_score_smoothed"].tolist() == pytest.approx(expected)
    late = history[history["epoch"] >= 2]
    best = int(late.loc[late["val_score_smoothed"].idxmax(), "epoch"])
    state = load_state(best_checkpoint(tmp_path))
    assert state["epoch"] == best == run.stopper.best_epoch == state["kept_at"]
    assert state["val_score"] == pytest.approx(history["val_score"][best])  # the epoch's own score, not the smoothed
    assert run.kept_score() == (run.stopper.best, best)
    last = load_state(last_checkpoint(tmp_path))
    assert last["epoch"] == 5 and last["stopper"] == run.stopper.state() and len(last["history"]) == 6


def test_final_weights_validate_every_few_epochs_and_at_the_last(tmp_path: Path) -> None:
    plan = Plan(max_epochs=7, learning_rate=0.05, patience=1, weights="final", validate_every=3)
    run = _fit(tmp_path, plan)
    history = pd.DataFrame(run.history)
    assert history["val_score"].notna().tolist() == [False, False, True, False, False, True, True]
    assert len(history) == 7 and not run.stopped_early  # patience 1 does not stop the whole schedule
    state = load_state(best_checkpoint(tmp_path))
    assert state["epoch"] == 6 and all(torch.equal(state["model"][k], v) for k, v in
                                       load_state(last_checkpoint(tmp_path))["model"].items())
    assert run.kept_score() == (history["val_score"].iloc[-1], 6)


def test_patience_ends_the_loop_and_the_plateau_rate_follows_the_scores(tmp_path: Path) -> None:
    scores = [0.5, 0.6, 0.6, 0.55, 0.59, 0.58, 0.9]
    model = torch.nn.Linear(2, 1)
    plan = Plan(max_epochs=len(scores), learning_rate=0.1, schedule="plateau", patience=4, reseed_epochs=False)
    run = TrainingRun(tmp_path, model, torch.optim.SGD(model.parameters(), lr=0.1), plan, score="val_score",
                      columns=COLUMNS, what="a run", resume=False)
    run.train(lambda index, _validate: EpochResult(1.0, scores[index]))
    # by hand: best 0.6 at epoch 1; epochs 2-5 not better -> patience 4 used up after epoch 5, epoch 6 never runs;
    # torch's plateau (patience 3) halves the rate after the 4th epoch without a better score: from epoch 6 on
    assert [row["epoch"] for row in run.history] == [0, 1, 2, 3, 4, 5]
    assert run.stopped_early and run.stopper.stopped_early and run.kept_score() == (0.6, 1)
    assert [row["lr"] for row in run.history] == [0.1] * 6
    assert epoch_learning_rate("plateau", 0.1, 6, 7, scores) == 0.05
    assert math.isnan(EpochResult(0.0).score)
