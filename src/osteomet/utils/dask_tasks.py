"""Independent tasks here, on a local Dask cluster, or on an existing one: the stages that scale out.

Radiomics extraction and the deep grid share this loop, so "runs on a laptop" and "runs on a
cluster given a scheduler address" are the same code. ``jobs == 1`` without a scheduler runs
in this process (easy to debug, nothing serialised). ``jobs > 1`` starts a
``dask.distributed.LocalCluster`` of single-threaded worker processes on 127.0.0.1, each with one
BLAS/OpenMP thread, so results do not depend on ``jobs``. ``scheduler`` sends the same tasks to
an existing cluster, whose workers must see the same paths.

Results are yielded as tasks finish. Closing the generator (or Ctrl-C while iterating) closes
the client and the local cluster. Local workers ignore SIGINT (they inherit an ignored signal
at start-up), so a Ctrl-C in a terminal, which reaches the whole process group, is handled by
this process alone, and the heartbeat errors of workers stopped mid-task are silenced, as is the
``NameError`` traceback that ``distributed.utils.sync`` logs when Ctrl-C lands before its coroutine
has started (its ``cancel`` callback reads a variable not yet assigned; distributed 2026.8).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

Task = TypeVar("Task")
Result = TypeVar("Result")

# Dask's default MALLOC_TRIM_THRESHOLD_=65536 returns every large numpy temporary to the kernel;
# pyradiomics allocates many, and the page faults cost as much as the features (measured: sys time
# 29 s of 79 s on 8 cases). One BLAS thread per single-threaded worker.
WORKER_ENVIRON = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def dask_map(func: Callable[[Task], Result], tasks: Sequence[Task], *, jobs: int = 1,
             scheduler: str | None = None) -> Iterator[Result]:
    """Yield ``func(task)`` for every task as it finishes (in task order when run here)."""
    if not tasks:
        return
    if jobs <= 1 and scheduler is None:
        for task in tasks:
            yield func(task)
        return
    import dask
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": WORKER_ENVIRON}), _workers_ignore_sigint():
            cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None, silence_logs=logging.ERROR)
    client = Client(scheduler if scheduler is not None else cluster)
    stopped = False
    # removed only after closing: the close's sync calls run after any cancel callback a Ctrl-C queued
    with _log_filter("tornado.application", _DistributedCancelBug()):
        try:
            futures = client.map(func, list(tasks), pure=False)
            for future in as_completed(futures):
                yield future.result()
        except (KeyboardInterrupt, GeneratorExit):
            stopped = True
            raise
        finally:
            with _quiet_shutdown(client if stopped and cluster is not None else None):
                client.close()
                if cluster is not None:
                    cluster.close()


@contextlib.contextmanager
def _log_filter(logger: str, log_filter: logging.Filter) -> Iterator[None]:
    """``log_filter`` on ``logger`` while the block runs."""
    target = logging.getLogger(logger)
    target.addFilter(log_filter)
    try:
        yield
    finally:
        target.removeFilter(log_filter)


class _DistributedCancelBug(logging.Filter):
    """Drop the one traceback distributed logs for its own bug, not any other error in a callback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, NameError) or exc.__traceback__ is None:
            return True
        tb = exc.__traceback__
        while tb.tb_next is not None:
            tb = tb.tb_next
        code = tb.tb_frame.f_code
        where = code.co_filename.replace("\\", "/")
        return not (code.co_name == "cancel" and where.endswith("distributed/utils.py"))


@contextlib.contextmanager
def _workers_ignore_sigint() -> Iterator[None]:
    """Ignore SIGINT while worker processes start: they inherit it, so only this process sees Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be changed from the main thread
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _silence_distributed() -> None:
    logging.getLogger("distributed").setLevel(logging.CRITICAL)


@contextlib.contextmanager
def _quiet_shutdown(client: Any) -> Iterator[None]:
    """Closing a local cluster mid-task makes its workers log heartbeat errors: silence them (and ours)."""
    if client is None:
        yield
        return
    logger = logging.getLogger("distributed")
    level = logger.level
    _silence_distributed()
    with contextlib.suppress(Exception):
        client.run(_silence_distributed)  # in the workers' event loops, which answer while a task runs
    try:
        yield
    finally:
        logger.setLevel(level)
