"""Reading a run directory's files for the report: tables and figures, first match of a name.

A file that is missing, empty, unreadable or not what its name says (a damaged PNG) comes back
as None, so a section leaves it out instead of showing it broken.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from osteomet.report.html import figure


def read_csv(path: Path) -> pd.DataFrame | None:
    """A CSV written by a stage, patient ids as text; None when missing, empty or unreadable."""
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path, dtype={"patient_id": str})
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    return frame if len(frame.columns) else None


def read_png(path: Path) -> bytes | None:
    """PNG bytes of a figure a stage wrote; None when missing, not a PNG or damaged (never a broken image)."""
    import io

    from PIL import Image

    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                return None
            image.load()  # decodes every row: a truncated file fails here
    except (OSError, SyntaxError, ValueError):
        return None
    return data


def png_figures(paths: list[tuple[Path, str]], width: int | None = None) -> str:
    parts = [figure(data, caption, width=width) for path, caption in paths if (data := read_png(path)) is not None]
    return "".join(parts)


def safe_id(patient_id: str) -> bool:
    return bool(patient_id) and Path(patient_id).name == patient_id and patient_id not in (".", "..")


def first_file(folder: Path, name: str) -> Path | None:
    """The first ``name`` file below ``folder`` (path order); stage folders may nest (``deep/grid/grid.csv``)."""
    if not folder.is_dir():
        return None
    found = sorted(p for p in folder.rglob(name) if p.is_file())
    return found[0] if found else None


def first_table(folder: Path, name: str) -> tuple[Path | None, pd.DataFrame | None]:
    """:func:`first_file` and its table (None when absent or unreadable): what most sections start from."""
    path = first_file(folder, name)
    return path, read_csv(path) if path else None
