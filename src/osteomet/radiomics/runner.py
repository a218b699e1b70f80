"""Cohort extraction: cache first, then the remaining cases in parallel.

One code path for every scale: ``jobs == 1`` runs in this process; ``jobs > 1`` starts a
``dask.distributed.LocalCluster`` of single-threaded worker processes on 127.0.0.1; a
scheduler address sends the same tasks to an existing Dask cluster (whose workers must
see the same file paths). Results come back to this process, which alone writes the
cache and the tables.

The loop is :func:`osteomet.utils.dask_tasks.dask_map` (shared with the deep grid). Every
finished case is cached as it arrives, so an interrupted run loses only the cases in flight.
Ctrl-C raises :class:`ExtractionInterrupted` (a ``KeyboardInterrupt``) once the Dask client and
local cluster are closed. Temporary files a killed run left in the cache are removed at the
start of the next run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from osteomet.data.manifest import Manifest
from osteomet.radiomics.cache import FeatureCache, cache_key
from osteomet.radiomics.extract import extract_task, record_files
from osteomet.radiomics.features import write_feature_table
from osteomet.radiomics.params import params_fingerprint
from osteomet.utils.dask_tasks import dask_map


class ExtractionInterrupted(KeyboardInterrupt):
    """Ctrl-C during extraction; the cases finished before it are cached, so a rerun resumes."""

    def __init__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        super().__init__(f"interrupted: {done} of {total} patients extracted and cached; "
                         "rerun the same command to resume")


@dataclass
class ExtractionResult:
    table: pd.DataFrame  # one row per patient: patient_id, error, features...
    log: pd.DataFrame  # patient_id, status (cached/extracted/failed), seconds, error
    seconds: float
    failures: list[tuple[str, str]] = field(default_factory=list)
    stale_removed: list[Path] = field(default_factory=list)  # temporary files of killed runs, deleted

    @property
    def n_extracted(self) -> int:
        return int((self.log["status"] == "extracted").sum())

    @property
    def n_cached(self) -> int:
        return int((self.log["status"] == "cached").sum())

    def failure_report(self) -> str:
        if not self.failures:
            return ""
        lines = [f"{len(self.failures)} of {len(self.log)} case(s) failed:"]
        lines += [f"  - {pid}: {error}" for pid, error in self.failures]
        return "\n".join(lines)


def extract_cohort(manifest: Manifest, params: dict[str, Any], *, cache_dir: str | Path, jobs: int = 1,
                   scheduler: str | None = None, mask_field: str | None = None,
                   progress: Callable[[], None] | None = None) -> ExtractionResult:
    """Features of every patient in ``manifest`` (cached cases are not extracted again)."""
    start = time.perf_counter()
    cache = FeatureCache(cache_dir)
    stale = cache.remove_stale_temporaries(started=time.time())
    text = params_fingerprint(params)
    rows: dict[str, dict[str, Any]] = {}
    pending: list[tuple[str, Any]] = []
    keys: dict[str, str] = {}
    for record in manifest:
        # roles are the record's image columns (t2, dwi, adc / ct), so each names its chosen series; masks have none
        inputs = [(role, path, record.series_uid(role)) for role, path in record_files(record, mask_field)]
        try:
            key = cache_key(inputs, text)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            rows[record.patient_id] = {"status": "failed", "features": {}, "seconds": 0.0,
                                       "error": f"{type(exc).__name__}: {exc}"}
            if progress:
                progress()
            continue
        keys[record.patient_id] = key
        cached = cache.get(key)
        if cached is not None:
            rows[record.patient_id] = {"status": "cached", "features": cached, "seconds": 0.0, "error": None}
            if progress:
                progress()
        else:
            pending.append((record.patient_id, record))

    if jobs > 1 or scheduler is not None:
        # Largest masks first (longest-processing-time order): a big tumour left for last
        # would keep one worker busy while the others idle.
        pending.sort(key=lambda item: -_mask_voxels(record_files(item[1], mask_field)[-1][1]))
    tasks = [(record, params, mask_field, jobs > 1 or scheduler is not None) for _, record in pending]
    results = dask_map(extract_task, tasks, jobs=jobs, scheduler=scheduler)
    try:
        for result in results:
            pid = result["patient_id"]
            if result["error"] is None:
                cache.put(keys[pid], result["features"], meta={"patient_id": pid, "seconds": result["seconds"]})
                rows[pid] = {"status": "extracted", **{k: result[k] for k in ("features", "seconds", "error")}}
            else:
                rows[pid] = {"status": "failed", **{k: result[k] for k in ("features", "seconds", "error")}}
            if progress:
                progress()
    except KeyboardInterrupt:
        results.close()  # closes the Dask client and the local cluster (the generator's finally)
        # counted in the cache, not in ``rows``: an interrupt between writing an entry and recording it
        # would otherwise undercount what a rerun will find
        done = sum(cache.path(key).exists() for key in keys.values())
        raise ExtractionInterrupted(done, len(manifest.patient_ids)) from None

    order = manifest.patient_ids
    table = pd.DataFrame([{"patient_id": pid, "error": rows[pid]["error"], **rows[pid]["features"]} for pid in order])
    log = pd.DataFrame([{"patient_id": pid, "status": rows[pid]["status"], "seconds": round(rows[pid]["seconds"], 3),
                         "error": rows[pid]["error"]} for pid in order])
    failures = [(pid, rows[pid]["error"]) for pid in order if rows[pid]["status"] == "failed"]
    return ExtractionResult(table, log, time.perf_counter() - start, failures, stale)


def _mask_voxels(path: Any) -> int:
    """Foreground voxels of a mask file (a cost estimate; 0 when unreadable, the task will report it)."""
    try:
        import numpy as np
        import SimpleITK as sitk

        image = sitk.ReadImage(str(path))  # held: a view of a temporary image reads freed memory (or crashes)
        return int(np.count_nonzero(sitk.GetArrayViewFromImage(image)))
    except Exception:
        return 0


def write_features(result: ExtractionResult, out: str | Path) -> dict[str, Path]:
    """The cohort's feature table and extraction log (:func:`osteomet.radiomics.features.write_feature_table`)."""
    return write_feature_table(result.table, result.log, out)
