"""What every synthetic cohort writer does around its patients: refuse to overwrite, run, record.

Each patient is an independent task with its own ``SeedSequence`` child, so a cohort is the
same whether its tasks run in order or on a process pool.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from osteomet import __version__
from osteomet.errors import InputError, OutputExistsError
from osteomet.layout import MANIFEST, SYNTH_RECORD
from osteomet.utils.files import write_json_atomic


def start_cohort(out: str | Path, n: int, *, overwrite: bool) -> tuple[Path, Path]:
    """Check ``n`` and create ``out``; returns (out, manifest path). An existing cohort is kept unless ``overwrite``."""
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    out = Path(out)
    manifest_path = out / MANIFEST
    if manifest_path.exists() and not overwrite:
        raise OutputExistsError(f"{manifest_path}: a cohort already exists here; choose another --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    return out, manifest_path


def write_synth_record(out: Path, kind: str, *, n: int, seed: int, config: BaseModel, started: float) -> Path:
    """``synth.json``: what made the cohort (kind, n, seed, config, version) and how long it took since ``started``."""
    record: dict[str, Any] = {
        "kind": kind, "n": n, "seed": seed, "config": config.model_dump(), "osteomet": __version__,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return write_json_atomic(out / SYNTH_RECORD, record)
