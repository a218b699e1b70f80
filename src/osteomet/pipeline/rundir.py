"""Run directories: the one place a run's stages read from and write to.

A marker file tells an osteomet run directory from a folder the user owns, so a run
never writes into (or over) someone's data by accident.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from osteomet import __version__
from osteomet.errors import OutputExistsError
from osteomet.utils.files import write_json_atomic

MARKER = "osteomet-run.json"


def open_run_dir(path: str | Path, kind: str) -> Path:
    """Create ``path`` as a run directory, or reopen one; refuse a non-empty folder that is not ours."""
    path = Path(path)
    marker = path / MARKER
    if path.exists():
        if not path.is_dir():
            raise OutputExistsError(f"{path}: exists and is not a directory")
        if any(path.iterdir()) and not marker.exists():
            raise OutputExistsError(
                f"{path}: folder is not empty and is not an osteomet run directory; choose a new --out"
            )
    path.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        write_json_atomic(marker, {"kind": kind, "osteomet": __version__})
    return path


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
