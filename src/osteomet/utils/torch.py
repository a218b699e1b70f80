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
