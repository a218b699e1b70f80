"""``osteomet ct lesions`` and ``osteomet ct icc``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the per-lesion analysis and ICC commands to the ``ct`` group."""
