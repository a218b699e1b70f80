"""The learning-rate schedule: torch's schedulers reproduced as pure functions of the epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from osteomet.training.lr_schedule import epoch_learning_rate, set_learning_rate


def _optimizer(lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_epoch_learning_rate_follows_torch_cosine_annealing_and_constant_stays() -> None:
    ours, reference = _optimizer(0.1), _optimizer(0.1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(reference, T_max=7)
    for epoch in range(7):
        lr = set_learning_rate(ours, epoch_learning_rate("cosine", 0.1, epoch, 7))
        assert lr == pytest.approx(reference.param_groups[0]["lr"], abs=1e-12)
        assert ours.param_groups[0]["lr"] == lr
        reference.step()
        scheduler.step()
    assert set_learning_rate(ours, epoch_learning_rate("none", 0.1, 5, 7)) == 0.1 and ours.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize("base_lr", [1e-2, 1e-3, 1e-4, 3e-4])
@pytest.mark.parametrize("max_epochs", [1, 3, 7, 24, 100])
def test_chained_cosine_is_torch_cosine_annealing_to_the_bit(base_lr: float, max_epochs: int) -> None:
    reference = _optimizer(base_lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(reference, T_max=max_epochs)
    for epoch in range(max_epochs):
        assert epoch_learning_rate("cosine", base_lr, epoch, max_epochs, chained=True) == reference.param_groups[0]["lr"]
        reference.step()
        scheduler.step()


def test_the_two_cosine_forms_differ_only_in_rounding() -> None:
    closed = [epoch_learning_rate("cosine", 1e-3, e, 100) for e in range(100)]
    chained = [epoch_learning_rate("cosine", 1e-3, e, 100, chained=True) for e in range(100)]
    assert closed != chained  # why both are kept: models trained with each keep their weights
    np.testing.assert_allclose(closed, chained, rtol=1e-9, atol=1e-18)


@pytest.mark.parametrize("seed", range(6))
def test_plateau_is_torch_reduce_on_plateau_replayed_over_the_scores(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random(40), 1).tolist()  # coarse scores: long plateaus and ties
    scores[7] = float("nan")
    base_lr = [1e-2, 1e-3, 3e-8][seed % 3]  # the last stops halving at torch's eps
    reference = _optimizer(base_lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(reference, mode="max", factor=0.5, patience=3)
    seen = set()
    for epoch in range(len(scores)):
        assert epoch_learning_rate("plateau", base_lr, epoch, len(scores), scores) == reference.param_groups[0]["lr"]
        seen.add(reference.param_groups[0]["lr"])
        scheduler.step(scores[epoch])
    assert len(seen) > 1 or base_lr < 1e-7  # the rate did drop


def test_an_unknown_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'step'"):
        epoch_learning_rate("step", 0.1, 0, 10)
