"""Reading a written report back (its sections, images, links and cells), and partial copies of a run."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path


class Page(HTMLParser):
    """Section ids, list-item ids, image sources and table cells of a report."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.items: list[str] = []
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.cells: list[str] = []
        self._cell = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id", ""))
        elif tag == "li" and "id" in attrs:
            self.items.append(attrs["id"])
        elif tag == "img":
            self.images.append(attrs)
        elif tag in ("a", "link", "script", "iframe"):
            self.links.append(attrs.get("href") or attrs.get("src") or tag)
        self._cell = tag == "td"

    def handle_data(self, data: str) -> None:
        if self._cell:
            self.cells.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._cell = False


def copy_results(run: Path, dest: Path, parts: list[str]) -> Path:
    shutil.copy(run / "osteomet-run.json", dest / "osteomet-run.json")
    for part in parts:
        shutil.copytree(run / part, dest / part)
    return dest
