"""PyTorch helpers that are not about training state: the device, and an output bias at a class prior.

Checkpoints, seeds, early stopping and the epoch loop are in :mod:`osteomet.training`. This
module imports torch at the top: import it only inside the functions that train or predict,
never from the CLI's module level (``osteomet --help`` must stay free of torch).
"""

from __future__ import annotations

import math

import torch


def pick_device(device: str | None = None) -> torch.device:
    """The device asked for, else CUDA when present, else the CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def set_prior_bias(bias: torch.Tensor, prior: float) -> None:
    """Start a 2-class (background, foreground) output at the foreground ``prior``, as for focal loss.

    Otherwise the first epochs are spent unlearning foreground everywhere.
    """
    with torch.no_grad():
        bias.copy_(torch.tensor([math.log(1 - prior), math.log(prior)], dtype=bias.dtype))


class torch_threads:
    """Set torch's CPU threads for a block and restore them after.

    A network's float results depend on how many threads split its reductions, so a study fixes
    the count (and records it) instead of inheriting whatever the calling process last set: the
    same command gives the same outputs from a shell, a notebook or a test.
    """

    def __init__(self, threads: int):
        self.threads = threads

    def __enter__(self) -> int:
        self.previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        return self.threads

    def __exit__(self, *_exc: object) -> None:
        torch.set_num_threads(self.previous)
