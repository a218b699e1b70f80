"""What every synthetic cohort writer does around its patients: refuse to overwrite, run, record.

Each patient is an independent task with its own ``SeedSequence`` child, so a cohort is the
same whether its tasks run in order or on a process pool.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel

from osteomet import __version__
from osteomet.errors import InputError, OutputExistsError
from osteomet.utils.files import write_json_atomic


def start_cohort(out: str | Path, n: int, *, overwrite: bool) -> tuple[Path, Path]:
    """Check ``n`` and create ``out``; returns (out, manifest path). An existing cohort is kept unless ``overwrite``."""
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    out = Path(out)
    manifest_path = out / "manifest.csv"
    if manifest_path.exists() and not overwrite:
        raise OutputExistsError(f"{manifest_path}: a cohort already exists here; choose another --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    return out, manifest_path


def run_tasks(func: Callable, tasks: list, jobs: int, progress: Callable[[], None] | None) -> list:
    """Run tasks in order (jobs=1) or on a process pool, calling ``progress`` per finished task; results in task order."""
    results: list = [None] * len(tasks)
    if jobs <= 1 or len(tasks) <= 1:
        for i, task in enumerate(tasks):
            results[i] = func(task)
            if progress:
                progress()
        return results
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(func, task): i for i, task in enumerate(tasks)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if progress:
                progress()
    return results


def write_synth_record(out: Path, kind: str, *, n: int, seed: int, config: BaseModel, started: float) -> Path:
    """``synth.json``: what made the cohort (kind, n, seed, config, version) and how long it took since ``started``."""
    record: dict[str, Any] = {
        "kind": kind, "n": n, "seed": seed, "config": config.model_dump(), "osteomet": __version__,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return write_json_atomic(out / "synth.json", record)
