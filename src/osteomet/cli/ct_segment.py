"""``osteomet ct segment``."""

from __future__ import annotations

import typer

app = typer.Typer(help="CT segment (not yet implemented).", no_args_is_help=True)
