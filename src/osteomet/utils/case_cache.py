"""Per-patient array cache keyed by content: ``ROOT/cases/<patient_id>/*.npy`` plus a JSON record.

Preprocessing stages (MRI channels and ROI, CT slices) are expensive and their outputs are
read many times by training, so each patient's arrays are stored as ``.npy`` (no pickle) and
the record, which holds the cache key (:func:`cache_key`), is written last: a case whose record
is missing or has another key is simply recomputed, so a killed run never leaves a half-written
case that looks complete.

:func:`cache_key` is the one cache key of the project (MRI preprocessing, the CT slice cache and
the radiomics feature cache): the content of every input file (a DICOM folder: every file in it),
the DICOM series chosen in each input (a folder can hold several series, and the file contents
alone do not say which one was read), the settings and a version string.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from osteomet.errors import MissingInputError
from osteomet.utils.files import atomic_path, read_json, sha256_path, write_json_atomic

CASES = "cases"

#: One input of a cached computation: its role (e.g. ``t2``), its path (None: absent) and the DICOM
#: series UID chosen in it (None: the folder's only series, or not DICOM).
CacheInput = tuple[str, str | os.PathLike[str] | None, str | None]


def cache_key(inputs: Iterable[CacheInput], settings: str, version: str) -> str:
    """SHA-256 of every input's content and chosen series UID, then the settings text and the version.

    Inputs are hashed in the order given, so a caller lists them in a fixed order. Changing a
    file's content, the series UID read from a folder, a setting or the version gives another key.
    """
    digest = hashlib.sha256()
    for name, path, series_uid in inputs:
        digest.update(f"{name}:{sha256_path(path) if path is not None else '-'};".encode())
        digest.update(f"{name}_series_uid:{series_uid};".encode())  # a folder can hold several series
    digest.update(settings.encode())
    digest.update(version.encode())
    return digest.hexdigest()


class CaseCache:
    """The cases of one cache folder; ``record_name`` is the JSON file that marks a case complete."""

    def __init__(self, root: str | Path, record_name: str):
        self.root = Path(root)
        self.record_name = record_name

    def folder(self, patient_id: str) -> Path:
        return self.root / CASES / patient_id

    def record(self, patient_id: str) -> dict[str, Any] | None:
        return read_json(self.folder(patient_id) / self.record_name)

    def is_current(self, patient_id: str, key: str) -> bool:
        """True when the case was written completely with this cache key."""
        record = self.record(patient_id)
        return bool(record) and record.get("cache_key") == key

    def write(self, patient_id: str, arrays: dict[str, np.ndarray], record: dict[str, Any], key: str) -> Path:
        """Store the arrays (atomically), drop arrays of an older version of the case, then the record."""
        folder = self.folder(patient_id)
        folder.mkdir(parents=True, exist_ok=True)
        for name, array in arrays.items():
            with atomic_path(folder / f"{name}.npy") as tmp:
                np.save(tmp, array, allow_pickle=False)
        for old in folder.glob("*.npy"):
            if old.stem not in arrays:
                old.unlink()
        return write_json_atomic(folder / self.record_name, {**record, "cache_key": key})

    def has_array(self, patient_id: str, name: str) -> bool:
        return (self.folder(patient_id) / f"{name}.npy").is_file()

    def load(self, patient_id: str, *, mmap: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays (memory-mapped by default: training reads only what it uses) and the record."""
        folder = self.folder(patient_id)
        record = self.record(patient_id)
        if record is None:
            raise MissingInputError(f"{folder}: patient {patient_id!r} is not in the cache (no {self.record_name}); "
                                    f"run the stage that writes {self.root} first")
        arrays = {p.stem: np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False) for p in folder.glob("*.npy")}
        return arrays, record
