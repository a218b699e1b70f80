"""HTML building blocks of the study report: escaped text, whitelisted tables, embedded PNGs, the page.

The page is one self-contained file: no JavaScript, no external URL, figures as base64
``data:`` URIs, so it opens offline and can be attached to a submission as it is. Every
piece of text from a run directory goes through :func:`html.escape`; tables show only the
columns a section names (an identifier that slipped into a CSV is never printed).
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

#: Marks a file as written by ``osteomet report`` (a later report may replace it, nothing else).
GENERATOR = "osteomet report"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0 auto;max-width:1180px;
padding:1.5rem;color:#1d232a;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:2px solid #d0d7de;padding-bottom:.2rem;margin-top:2.2rem}
h3{font-size:1.05rem;margin-top:1.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.82rem}
th,td{border:1px solid #d0d7de;padding:.2rem .45rem;text-align:right;vertical-align:top}
th{background:#f2f4f7}td.text,th.text{text-align:left}
figure{display:inline-block;margin:.4rem .8rem .8rem 0;vertical-align:top}
figure img{max-width:100%;height:auto;border:1px solid #e3e6ea}
figcaption{font-size:.8rem;color:#57606a}
.note{color:#57606a;font-size:.88rem}.absent li{margin:.15rem 0}
.wide{overflow-x:auto;max-width:100%}nav ul{columns:2;font-size:.9rem}details{margin:.3rem 0}summary{cursor:pointer}
"""


def esc(value: Any) -> str:
    """Text for HTML (quotes too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """A cell: numbers rounded, missing values blank, booleans as yes/no."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer() and abs(value) < 1e12:
            return str(int(value))
        return f"{value:.{digits}g}" if abs(value) < 1e-3 or abs(value) >= 1e5 else f"{value:.{digits}f}"
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    return str(value)


#: Column labels of a 95% confidence interval, for :func:`table`'s ``labels``.
CI_LABELS = {"ci_low": "95% CI low", "ci_high": "95% CI high"}


def table(frame: pd.DataFrame, columns: Sequence[str], *, labels: Mapping[str, str] | None = None,
          max_rows: int | None = None, digits: int = 3) -> str:
    """An HTML table of ``columns`` (those present, in this order) of ``frame``; nothing else is shown."""
    labels = labels or {}
    shown = [c for c in columns if c in frame.columns]
    if not shown or frame.empty:
        return '<p class="note">(no rows)</p>'
    rows = frame if max_rows is None else frame.head(max_rows)
    numeric = {c: pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in shown}
    head = "".join(f'<th class="{"num" if numeric[c] else "text"}">{esc(labels.get(c, c))}</th>' for c in shown)
    body = []
    for record in rows[shown].itertuples(index=False, name=None):
        cells = "".join(f'<td class="{"num" if numeric[c] else "text"}">{esc(fmt(v, digits))}</td>'
                        for c, v in zip(shown, record))
        body.append(f"<tr>{cells}</tr>")
    more = ""
    if max_rows is not None and len(frame) > max_rows:
        more = f'<p class="note">First {max_rows} of {len(frame)} rows.</p>'
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>{more}'


def key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of already-safe keys and values (escaped here)."""
    rows = "".join(f'<tr><th class="text">{esc(k)}</th><td class="text">{esc(fmt(v))}</td></tr>' for k, v in pairs)
    return f"<table><tbody>{rows}</tbody></table>" if rows else '<p class="note">(none)</p>'


def png_uri(data: bytes) -> str:
    """A ``data:`` URI of PNG bytes (refused when the bytes are not a PNG: a broken image is never shown)."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure(data: bytes, caption: str, *, width: int | None = None) -> str:
    """An embedded PNG with its caption (the caption is the alt text too)."""
    style = f' style="max-width:{int(width)}px"' if width else ""
    return (f'<figure><img src="{png_uri(data)}" alt="{esc(caption)}"{style}>'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


@dataclass
class Section:
    """One part of the report: its HTML, or None and the note saying why it is left out."""

    id: str
    title: str
    body: str | None = None
    note: str = ""

    @property
    def present(self) -> bool:
        return self.body is not None


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole document: contents, the sections a run produced, then what it did not produce."""
    present = [s for s in sections if s.present]
    absent = [s for s in sections if not s.present]
    nav = "".join(f'<li><a href="#{esc(s.id)}">{esc(s.title)}</a></li>' for s in present)
    parts = [f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in present]
    if absent:
        items = "".join(f'<li id="absent-{esc(s.id)}"><b>{esc(s.title)}</b>: {esc(s.note)}</li>' for s in absent)
        parts.append(f'<section id="not-in-this-run" class="absent"><h2>Not in this run</h2><ul>{items}</ul></section>')
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="generator" content="{esc(GENERATOR)}">'
            # a page that loads nothing from anywhere: no scripts, no remote images or styles
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f'<header><h1>{esc(title)}</h1><p class="note">{esc(subtitle)}</p></header>'
            f"<nav><ul>{nav}</ul></nav>{''.join(parts)}</body></html>\n")
