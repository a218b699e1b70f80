"""``osteomet report RUN``: the study's self-contained HTML report from a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from osteomet.cli._common import console, user_errors


def report(
    run: Path = typer.Argument(..., help="Run directory (the --out of `osteomet run mri` or `osteomet demo`)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report file (default RUN/report.html)."),
) -> None:
    """Self-contained HTML report (figures embedded, opens offline): every section the run produced."""
    with user_errors():
        from osteomet.report.build import write_report

        path, sections = write_report(run, out)
        absent = [s.title for s in sections if not s.present]
    console.print(f"report -> [bold]{path}[/]")
    if absent:
        console.print(f"[dim]not in this run: {', '.join(absent)}[/]")
