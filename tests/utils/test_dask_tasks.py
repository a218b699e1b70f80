"""dask_map's Ctrl-C handling: distributed's own cancel bug is silenced, other callback errors are not."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time

import pytest

from osteomet.utils.dask_tasks import _DistributedCancelBug, dask_map


class _Interrupt(KeyboardInterrupt):
    pass


def _interrupt_sync_before_its_coroutine_starts() -> None:
    """Ctrl-C while ``distributed.utils.sync`` waits and its loop is still busy (what a CLI run hit)."""
    from distributed.utils import LoopRunner, sync

    def raise_interrupt(*_: object) -> None:
        raise _Interrupt

    runner = LoopRunner(asynchronous=False)
    runner.start()
    previous = signal.signal(signal.SIGINT, raise_interrupt)
    try:
        async def work() -> int:
            await asyncio.sleep(0.05)
            return 1

        runner.loop.add_callback(lambda: time.sleep(0.5))  # the loop is busy: sync's coroutine waits
        timer = threading.Timer(0.1, lambda: signal.pthread_kill(threading.main_thread().ident, signal.SIGINT))
        timer.start()
        with pytest.raises(_Interrupt):
            sync(runner.loop, work)
        timer.join()
        time.sleep(0.8)  # the queued cancel callback runs on the loop thread
    finally:
        signal.signal(signal.SIGINT, previous)
        runner.stop()


def _name_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], NameError)]


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_distributed_cancel_bug_is_silenced_and_nothing_else(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="tornado.application")
    _interrupt_sync_before_its_coroutine_starts()
    if not _name_errors(caplog):
        pytest.skip("this distributed no longer logs a NameError from sync's cancel callback")
    caplog.clear()

    log = logging.getLogger("tornado.application")
    bug = _DistributedCancelBug()
    log.addFilter(bug)
    try:
        _interrupt_sync_before_its_coroutine_starts()
        assert not _name_errors(caplog)
        try:
            undefined_name  # type: ignore[name-defined]  # noqa: F821,B018
        except NameError:
            log.error("Exception in callback", exc_info=True)  # any other NameError still reaches the user
    finally:
        log.removeFilter(bug)
    assert len(_name_errors(caplog)) == 1


def _double(x: int) -> int:
    return 2 * x


def test_local_cluster_results_match_in_process_and_leave_no_filter() -> None:
    here = list(dask_map(_double, [1, 2, 3], jobs=1))
    there = sorted(dask_map(_double, [1, 2, 3], jobs=2))
    assert here == there == [2, 4, 6]
    assert not any(isinstance(f, _DistributedCancelBug) for f in logging.getLogger("tornado.application").filters)
