"""Seeds: each epoch's draws are a function of (seed, epoch, stream)."""

from __future__ import annotations

import numpy as np
import torch

from osteomet.training.seeds import epoch_generator, epoch_rng, seed_epoch, seed_weights


def test_epoch_seeds_are_numpy_and_torch_seeding_by_seed_and_epoch() -> None:
    assert np.array_equal(epoch_rng(3, 7).random(5), np.random.default_rng([3, 7]).random(5))
    assert np.array_equal(epoch_rng(3, 7, 1).random(5), np.random.default_rng([3, 7, 1]).random(5))
    assert not np.array_equal(epoch_rng(3, 7).random(5), epoch_rng(3, 8).random(5))
    assert epoch_generator(3, 7).initial_seed() == 3 * 100_003 + 7
    seed_weights(11)
    first = torch.nn.Linear(4, 4).weight.detach().clone()
    seed_weights(11)
    assert torch.equal(first, torch.nn.Linear(4, 4).weight)


def test_epoch_reseeding_makes_dropout_a_function_of_the_epoch() -> None:
    seed_epoch(2, 5)
    a = torch.nn.functional.dropout(torch.ones(64), 0.5)
    torch.rand(10)  # whatever ran before
    seed_epoch(2, 5)
    assert torch.equal(a, torch.nn.functional.dropout(torch.ones(64), 0.5))
    seed_epoch(2, 6)
    assert not torch.equal(a, torch.nn.functional.dropout(torch.ones(64), 0.5))
