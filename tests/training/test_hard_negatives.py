"""Hard-negative mining picks the top-scoring candidates; sampled epochs mine first, from the second epoch on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from osteomet.training.hard_negatives import HardNegatives
from osteomet.training.sampling import sampled_epoch
from osteomet.training.seeds import epoch_rng


@pytest.mark.parametrize("seed", range(5))
def test_mining_keeps_the_highest_scored_candidates(seed: int) -> None:
    rng = np.random.default_rng(seed)
    candidates = [("P", int(k), int(y), int(x)) for k, y, x in rng.integers(0, 50, size=(40, 3))]
    scores = np.round(rng.random(40), 1) * (rng.random(40) > 0.3)  # ties and zeros
    hard: HardNegatives[tuple[str, int, int, int]] = HardNegatives()
    hard.mine(candidates, lambda chosen: scores[[candidates.index(c) for c in chosen]], keep=10)
    # reference by brute force: sort by score (descending), ties in drawing order, keep 10, drop zeros
    ranked = sorted(range(40), key=lambda i: (-scores[i], i))[:10]
    assert list(hard) == [candidates[i] for i in ranked if scores[i] > 0]
    assert len(hard) == sum(scores[i] > 0 for i in ranked)


def test_nothing_to_mine_leaves_none_and_draws_fall_back() -> None:
    hard: HardNegatives[str] = HardNegatives()
    hard.mine(["a", "b"], lambda chosen: np.ones(len(chosen)), keep=2)
    assert list(hard) == ["a", "b"]
    hard.mine([], lambda chosen: pytest.fail("no candidate is scored"), keep=2)
    assert list(hard) == [] and hard.draw(np.random.default_rng(0)) is None


def test_half_of_the_draws_are_mined_ones_once_mined() -> None:
    hard: HardNegatives[str] = HardNegatives()
    hard.mine(["a", "b", "c"], lambda chosen: np.array([0.9, 0.2, 0.5]), keep=2)
    draws = [hard.draw(np.random.default_rng(i)) for i in range(400)]
    assert {d for d in draws if d is not None} == {"a", "c"}
    assert 0.4 < np.mean([d is not None for d in draws]) < 0.6


class _Sampler:
    """Records what it is asked for."""

    def __init__(self) -> None:
        self.draws: list[int] = []
        self.mined: list[tuple[int, int, float]] = []

    def draw(self, n: int, rng: np.random.Generator, flip_prob: float) -> tuple[np.ndarray, np.ndarray]:
        self.draws.append(n)
        return rng.random((n, 2)).astype(np.float32), np.zeros(n, np.float32)

    def mine_hard_negatives(self, score, rng: np.random.Generator, pool: int, keep: int) -> None:
        self.mined.append((pool, keep, float(rng.random())))


def test_a_sampled_epoch_mines_from_the_second_epoch_with_its_own_stream() -> None:
    model = torch.nn.Linear(2, 1)
    for epoch in (0, 1):
        sampler = _Sampler()
        batches = list(sampled_epoch(sampler, model, lambda x: x, seed=4, epoch=epoch, samples=70, batch_size=32,
                                     flip_prob=0.5, hard_negatives=5))
        assert sampler.draws == [32, 32, 6] and model.training
        # the batches come from the epoch's generator, the mining from its own stream 3
        expected = epoch_rng(4, epoch).random((32, 2)).astype(np.float32)
        assert np.array_equal(batches[0][0], expected)
        assert sampler.mined == ([] if epoch == 0 else [(20, 5, float(epoch_rng(4, epoch, 3).random()))])
    sampler = _Sampler()
    list(sampled_epoch(sampler, model, lambda x: x, seed=4, epoch=3, samples=8, batch_size=8, flip_prob=0.0))
    assert sampler.mined == []  # no hard negatives asked for
