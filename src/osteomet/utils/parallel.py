"""Independent tasks in this process or on a local process pool: one loop for every stage.

``jobs == 1`` runs in order here (easy to debug, no pickling of arguments); ``jobs > 1``
uses a ``ProcessPoolExecutor``. Results come back in task order either way, so what a
stage writes does not depend on ``jobs``. Stages that should also run on a cluster
(radiomics extraction, the deep grid) use Dask instead (:mod:`osteomet.radiomics.runner`).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Sequence, TypeVar

Task = TypeVar("Task")
Result = TypeVar("Result")


def map_tasks(func: Callable[[Task], Result], tasks: Sequence[Task], *, jobs: int = 1,
              progress: Callable[[], None] | None = None) -> list[Result]:
    """``[func(t) for t in tasks]``, on ``jobs`` worker processes; ``progress()`` after each finished task."""
    results: list = [None] * len(tasks)
    if jobs <= 1 or len(tasks) <= 1:
        for i, task in enumerate(tasks):
            results[i] = func(task)
            if progress:
                progress()
        return results
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks))) as pool:
        futures = {pool.submit(func, task): i for i, task in enumerate(tasks)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if progress:
                progress()
    return results
