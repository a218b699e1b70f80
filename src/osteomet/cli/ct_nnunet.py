"""``osteomet ct nnunet``."""

from __future__ import annotations

import typer

app = typer.Typer(help="CT nnunet (not yet implemented).", no_args_is_help=True)
