"""The torch helpers that are not about training state: device choice and the output bias at a prior."""

from __future__ import annotations

import math

import pytest
import torch

from osteomet.utils.torch import pick_device, set_prior_bias


def test_device_choice() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_prior_bias_gives_the_prior_as_softmax_foreground() -> None:
    bias = torch.zeros(2)
    set_prior_bias(bias, 0.01)
    assert torch.softmax(bias, 0)[1].item() == pytest.approx(0.01)
    assert bias[0].item() == pytest.approx(math.log(0.99))
