"""Atomic file writing and content hashing.

Every stage writes into a run directory that a later stage or a rerun picks up, so a
crash must never leave a half-written file under the final name: write to a hidden
temporary name in the same directory, then ``os.replace`` (atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import uuid
from pathlib import Path
from typing import Any, Iterator, Mapping

_COMPOUND_SUFFIXES = (".nii.gz", ".seg.nrrd", ".tar.gz")


def full_suffix(path: str | os.PathLike[str]) -> str:
    """Suffix that decides the file format (``.nii.gz`` rather than ``.gz``)."""
    name = Path(path).name.lower()
    for suffix in _COMPOUND_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return Path(path).suffix.lower()


def temporary_sibling(path: str | os.PathLike[str]) -> Path:
    """A hidden name next to ``path`` that keeps its format suffix (writers pick the format from it)."""
    path = Path(path)
    suffix = full_suffix(path)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f".{stem}.tmp-{uuid.uuid4().hex[:8]}{suffix}")


#: The names :func:`temporary_sibling` gives: ``.<stem>.tmp-<8 hex><suffix>``.
_TEMPORARY_NAME = re.compile(r"\.(?P<stem>.+)\.tmp-[0-9a-f]{8}(?P<suffix>(\.[A-Za-z0-9]+)*)")


def temporary_original(name: str) -> str | None:
    """The file name a :func:`temporary_sibling` name stands in for; None for any other name.

    Lets a cleanup tell an interrupted write of its own files from somebody else's file.
    """
    match = _TEMPORARY_NAME.fullmatch(name)
    return f"{match['stem']}{match['suffix']}" if match else None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write to; on success rename it onto ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def json_ready(value: Any) -> Any:
    """A copy JSON can hold as numbers: numpy scalars as Python ones, NaN and infinities as None (JSON has
    neither), mapping keys as strings, tuples as lists."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_path(path: str | os.PathLike[str]) -> str:
    """Content hash of a file, or of every file in a directory (a DICOM series), order-independent of listing."""
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(child.relative_to(path)).encode())
            digest.update(sha256_file(child).encode())
        return digest.hexdigest()
    return sha256_file(path)


def read_json(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when the file is missing, unreadable or not an object.

    Used for the records a stage writes last (cache keys, stage records): a missing or
    half-written record simply means "not done", never an error.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_json_record(path: str | os.PathLike[str], what: str, *, remedy: str,
                     error: type[Exception] | None = None) -> dict[str, Any]:
    """A JSON object a command saved for later (a calibration, a domain), read for use.

    Unlike :func:`read_json`, a problem is an error the user must see: a missing file raises
    MissingInputError ("no <what>"), a file that is not a JSON object raises ``error`` (default
    InputError) saying it was damaged or edited and ``remedy``.
    """
    from osteomet.errors import InputError, MissingInputError

    error = error or InputError
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: no {what}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: damaged or edited {what} (not JSON: {exc}); {remedy}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: damaged or edited {what} (not a JSON object); {remedy}")
    return data
