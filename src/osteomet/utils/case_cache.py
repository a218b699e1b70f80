"""Per-patient array cache keyed by content: ``ROOT/cases/<patient_id>/*.npy`` plus a JSON record.

Preprocessing stages (MRI channels and ROI, CT slices) are expensive and their outputs are
read many times by training, so each patient's arrays are stored as ``.npy`` (no pickle) and
the record, which holds the cache key (a hash of the input files and the settings), is
written last: a case whose record is missing or has another key is simply recomputed, so a
killed run never leaves a half-written case that looks complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from osteomet.errors import MissingInputError
from osteomet.utils.files import atomic_path, read_json, write_json_atomic

CASES = "cases"


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
