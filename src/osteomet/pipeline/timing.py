"""Per-stage wall time of one `run` invocation, and whether each stage was up to date (``run.json``'s ``stages``)."""

from __future__ import annotations

import time
from typing import Any, Callable


class StageTimer:
    """Call as ``timer(name, step)``: runs ``step`` (a stage returning a StageOutcome, or a tuple starting with one),
    logs "name: how (seconds)" and records ``{"seconds", "skipped"}`` under ``name`` in :attr:`stages`."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.stages: dict[str, dict[str, Any]] = {}

    def __call__(self, name: str, step: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = step()
        outcome = result[0] if isinstance(result, tuple) else result
        skipped = bool(getattr(outcome, "skipped", False))
        seconds = round(time.perf_counter() - start, 2)
        self.stages[name] = {"seconds": seconds, "skipped": skipped}
        self.log(f"{name}: {getattr(outcome, 'how', 'up to date' if skipped else 'done')} ({seconds:.1f} s)")
        return result


__all__ = ["StageTimer"]
