"""Consoles and progress bars, shared by the library's long loops and the command line.

Long work (a cohort, an epoch loop, a grid) shows a bar on stderr wherever it is started
from: a command, ``osteomet run``, the demo or a notebook. Only ``rich`` is imported here,
so ``osteomet --help`` stays instant.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console()
err_console = Console(stderr=True)


@contextlib.contextmanager
def progress_bar(description: str, total: int, *, transient: bool = False) -> Iterator[Callable[[], None]]:
    """A rich progress bar; yields a no-argument ``advance`` callback for the workers' loop.

    ``transient`` bars vanish when done (for steps that may turn out to have nothing to do).
    """
    with progress_bars((description, total), transient=transient) as (advance,):
        yield advance


@contextlib.contextmanager
def progress_bars(*steps: tuple[str, int], transient: bool = False) -> Iterator[tuple[Callable[[], None], ...]]:
    """One bar per ``(description, total)`` step of a single call, in one display; yields their ``advance`` callbacks.

    For a library call with two loops (cache the cohort, then predict it): rich shows one live
    display at a time, so the caller cannot open a second bar inside the first.
    """
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=transient) as progress:
        tasks = [progress.add_task(description, total=total) for description, total in steps]
        yield tuple(functools.partial(progress.advance, task) for task in tasks)
