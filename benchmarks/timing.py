"""Timing helpers the benchmark scripts share (scripts run as ``python benchmarks/<script>.py``, so this
module is importable as ``timing``)."""

from __future__ import annotations

import time
from typing import Any, Callable


def best_of(repeat: int, fn: Callable[[], Any]) -> float:
    """The fastest of ``repeat`` calls, in seconds (the least disturbed by other work on the host)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def samples_per_second(step: Callable[..., Any], args: tuple, batch: int, steps: int, *, warmup: int = 3) -> float:
    """Training samples per second of ``step(*args)`` on one GPU batch, after ``warmup`` untimed steps."""
    import torch

    for _ in range(warmup):
        step(*args)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step(*args)
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)
