"""map_tasks gives the same results in the same order in-process and on a process pool."""

from __future__ import annotations

from osteomet.utils.parallel import map_tasks


def _square(x: int) -> int:
    return x * x


def test_same_results_in_order_with_progress() -> None:
    ticks: list[int] = []
    serial = map_tasks(_square, list(range(7)), jobs=1, progress=lambda: ticks.append(1))
    pooled = map_tasks(_square, list(range(7)), jobs=2, progress=lambda: ticks.append(2))
    assert serial == pooled == [x * x for x in range(7)]
    assert ticks.count(1) == 7 and ticks.count(2) == 7
