"""One process at a time in a run directory.

Why: two `osteomet run` commands on the same folder (a second terminal, a job scheduler that
retries, a shell line started twice) would each see the other's stages as interrupted, train over
each other's checkpoints and interleave their outputs; the run would look finished and be neither
run's. An advisory ``flock`` on ``RUN/.osteomet.lock`` is released by the kernel when its holder
ends however it ends (Ctrl-C, SIGKILL, a crash), so an interrupted run never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from osteomet.errors import OutputExistsError

LOCK = ".osteomet.lock"


@contextmanager
def run_lock(run: str | Path) -> Iterator[Path]:
    """Hold ``run``'s lock for the block; refuse (naming the holder's pid) when another process holds it."""
    path = Path(run) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise OutputExistsError(f"{run}: another osteomet process (pid {holder}) is working in this run directory; "
                                    f"wait for it to end (or stop it), then rerun the same command") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield path
    finally:
        handle.close()  # closing releases the lock
