"""How much of the machine a command uses: every core it may run on, unless told otherwise.

``--jobs`` and a study's ``jobs`` default to :func:`default_jobs`; torch's threads per worker are
the cores shared out among the workers that actually run (:func:`worker_threads`), so one stage
with one task still uses every core, and a stage of N side-by-side tasks gives each its share.
No torch import here: the CLI reads these defaults before any command runs.
"""

from __future__ import annotations

import os

from osteomet.errors import InputError

#: Set this to cap the default (a shared login node, a CI runner, a test worker); ``--jobs`` still wins.
JOBS_ENV = "OSTEOMET_JOBS"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, as taskset, SLURM and containers restrict it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def count_from_env(name: str, what: str) -> int | None:
    """A positive whole number from environment variable ``name`` (None when unset or blank); anything else is
    refused naming the variable and its value."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise InputError(f"{name}={value!r}: give a whole number of {what}, at least 1")
    return count


def default_jobs() -> int:
    """Worker processes when none are given: ``$OSTEOMET_JOBS``, else every available core."""
    return count_from_env(JOBS_ENV, "worker processes") or available_cores()


def resolve_jobs(jobs: int | None) -> int:
    """``jobs`` as given, or the default when None."""
    return default_jobs() if jobs is None else jobs


def worker_threads(jobs: int, tasks: int | None = None) -> int:
    """Torch threads per worker: the cores shared by the workers that run (``jobs``, or fewer when there are fewer
    ``tasks``)."""
    workers = max(1, min(jobs, tasks) if tasks is not None else jobs)
    return max(1, available_cores() // workers)
