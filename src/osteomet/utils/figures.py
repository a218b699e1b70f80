"""Figures written the same way everywhere: matplotlib without a screen, atomic files, always closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from osteomet.utils.files import atomic_path


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed; imported only when a figure is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, *, svg: bool = False, tight_bbox: bool = False) -> Path:
    """Write ``fig`` as PNG at ``path`` (and as ``.svg`` beside it with ``svg``), atomically; the figure is closed.

    ``tight_bbox`` crops to the drawn content (image panels); otherwise the layout is tightened.
    """
    path = Path(path)
    try:
        if not tight_bbox:
            fig.tight_layout()
        targets = [(path, "png")] + ([(path.with_suffix(".svg"), "svg")] if svg else [])
        for target, fmt in targets:
            with atomic_path(target) as tmp:
                fig.savefig(tmp, format=fmt, **({"bbox_inches": "tight"} if tight_bbox else {}))
    finally:
        pyplot().close(fig)
    return path


def png_bytes(fig: Any) -> bytes:
    """``fig`` as PNG bytes (for embedding in a page without a file); the figure is closed."""
    import io

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return buffer.getvalue()
