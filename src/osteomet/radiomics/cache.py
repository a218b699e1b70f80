"""Per-case feature cache: one Parquet file per content hash of image(s) + mask, chosen series + parameters.

Keys come from file contents, not names or dates, so moving a cohort keeps its cache and
editing a mask, or choosing another DICOM series of a folder that holds several, invalidates
exactly that case.

Entries are written atomically (hidden temporary name, then rename), so a crash never leaves a
half-written entry under a real key; but a run killed outright (SIGKILL, power loss) leaves the
temporary file itself behind. :meth:`FeatureCache.remove_stale_temporaries`, called at the start
of every run, deletes those that were last written well before the run started.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from osteomet.utils.case_cache import CacheInput
from osteomet.utils.case_cache import cache_key as case_cache_key
from osteomet.utils.files import atomic_path, temporary_original

#: Bump when the way osteomet calls pyradiomics changes, so old caches are not reused.
EXTRACTION_VERSION = "1"

#: A temporary file untouched this long before the run started is not a write in progress
#: (an entry is written in milliseconds), even if another run shares the cache folder.
STALE_AFTER_S = 60.0


def cache_key(inputs: Iterable[CacheInput], params_text: str) -> str:
    """The case's key (:func:`osteomet.utils.case_cache.cache_key`): (role, file, chosen series UID) of every
    input, the parameters, and the pyradiomics and extraction versions."""
    import radiomics

    return case_cache_key(inputs, params_text,
                          f"pyradiomics={radiomics.__version__};osteomet-extraction={EXTRACTION_VERSION}")


class FeatureCache:
    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)

    def remove_stale_temporaries(self, started: float, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
        """Delete temporary files left by a killed run (last written ``stale_after_s`` before ``started``)."""
        if not self.folder.is_dir():
            return []
        removed = []
        for path in self.folder.iterdir():
            if temporary_original(path.name) is None or not path.is_file():
                continue
            try:
                if path.stat().st_mtime < started - stale_after_s:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:  # renamed or removed meanwhile by whoever wrote it
                continue
        return removed

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.parquet"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            frame = pd.read_parquet(path)
        except Exception:  # a corrupt entry is a miss, never a crash
            return None
        return dict(zip(frame["feature"].tolist(), frame["value"].astype(float).tolist()))

    def put(self, key: str, features: dict[str, Any], meta: dict[str, Any] | None = None) -> Path:
        """One case in long form (feature, value): thousands of rows read far faster than thousands of columns."""
        path = self.path(key)
        frame = pd.DataFrame({"feature": list(features), "value": [float(v) for v in features.values()]})
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
        if meta is not None:
            with atomic_path(path.with_suffix(".json")) as tmp:
                tmp.write_text(json.dumps(meta, default=str), encoding="utf-8")
        return path
