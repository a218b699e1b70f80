"""``osteomet ct detect``."""

from __future__ import annotations

import typer

app = typer.Typer(help="CT detect (not yet implemented).", no_args_is_help=True)
