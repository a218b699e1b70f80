"""What every synthetic cohort writer does around its patients: claim the folder, run, record.

Each patient is an independent task with its own ``SeedSequence`` child, so a cohort is the
same whether its tasks run in order or on a process pool.

A cohort folder is osteomet's only while it holds nothing but the files its ``synth.json``
names (the record is written first, with ``status: started``, so an interrupted cohort is
recognised too). Every file of a cohort follows from the record alone (kind, n, image format),
so the rule is the one ``Stage`` applies to run folders, made exact: a folder that is missing,
empty or holds only a recorded cohort's files may be written; anything else in it (a user's
notes, images, a manifest) makes the whole command refuse before a byte is written, and
``--overwrite`` replaces only the recorded cohort's own files.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from osteomet import __version__
from osteomet.errors import InputError, OutputExistsError
from osteomet.layout import CT_TRUTH, MANIFEST, MRI_TRUTH, SYNTH_RECORD
from osteomet.utils.files import read_json, temporary_original, write_json_atomic

_TRUTH = {"mri": MRI_TRUTH, "ct": CT_TRUTH}


def patient_files(kind: str, index: int, image_format: str = "nii.gz") -> tuple[str, dict[str, str]]:
    """Patient id and the cohort-relative paths of its files (the one place that names them)."""
    if kind == "mri":
        pid = f"MRI{index + 1:03d}"
        return pid, {"t2": f"images/{pid}_t2.{image_format}", "dwi": f"images/{pid}_dwi.{image_format}",
                     "adc": f"images/{pid}_adc.{image_format}", "mask": f"labels/{pid}_tumour.{image_format}",
                     "prostate": f"labels/{pid}_prostate.{image_format}"}
    pid = f"CT{index + 1:03d}"
    return pid, {"ct": f"images/{pid}_ct.nii.gz", "lesion_mask": f"labels/{pid}_lesions.nii.gz",
                 "bone_map": f"labels/{pid}_bones.nii.gz"}


def recorded_files(record: dict[str, Any] | None) -> set[str] | None:
    """Every file the cohort described by a ``synth.json`` record writes; None when it is not such a record."""
    if not record or record.get("kind") not in _TRUTH or not isinstance(record.get("n"), int) or record["n"] < 0:
        return None
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    image_format = str(config.get("image_format", "nii.gz"))
    files = {MANIFEST, _TRUTH[record["kind"]], SYNTH_RECORD}
    for index in range(record["n"]):
        files.update(patient_files(record["kind"], index, image_format)[1].values())
    return files


def _is_own(relative: str, own: set[str]) -> bool:
    """A recorded file, or the temporary sibling an interrupted atomic write of one left behind."""
    if relative in own:
        return True
    folder, _, name = relative.rpartition("/")
    original = temporary_original(name)
    return original is not None and (f"{folder}/{original}" if folder else original) in own


def claim_cohort_folder(out: Path, *, overwrite: bool) -> list[Path]:
    """Refuse ``out`` unless it is missing, empty, or holds only a recorded cohort's files; return those files.

    A finished cohort is refused without ``overwrite``; an interrupted one (``status: started``)
    is the same command's unfinished work and is replaced.
    """
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder; choose another --out")
    if not out.exists() or not any(out.iterdir()):
        return []
    record = read_json(out / SYNTH_RECORD)
    own = recorded_files(record)
    if own is None:
        raise OutputExistsError(
            f"{out}: the folder is not empty and holds no cohort written by `osteomet synth` (no valid {SYNTH_RECORD}); "
            f"osteomet never writes into or over your files: choose a new or empty folder for --out")
    own_dirs = {f.rpartition("/")[0] for f in own} - {""}
    present: list[Path] = []
    foreign: list[str] = []
    for folder, dirs, files in os.walk(out):
        base = Path(folder).relative_to(out).as_posix()
        prefix = "" if base == "." else f"{base}/"
        for name in sorted(dirs):
            if Path(folder, name).is_symlink() or f"{prefix}{name}" not in own_dirs:
                foreign.append(f"{prefix}{name}/")
        dirs[:] = sorted(d for d in dirs if f"{prefix}{d}/" not in foreign)
        for name in sorted(files):
            path = Path(folder, name)
            if _is_own(f"{prefix}{name}", own) and not path.is_symlink() and path.is_file():
                present.append(path)
            else:
                foreign.append(f"{prefix}{name}")
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputExistsError(
            f"{out}: holds {len(foreign)} file(s) or folder(s) that `osteomet synth` did not write ({shown}); "
            f"osteomet never writes into or over your files, --overwrite included: choose a new or empty folder "
            f"for --out, or move those out of it")
    assert record is not None
    if record.get("status", "complete") != "started" and not overwrite:
        raise OutputExistsError(f"{out / MANIFEST}: a cohort already exists here; choose another --out or pass "
                                f"--overwrite to replace it")
    return present


def start_cohort(out: str | Path, n: int, kind: str, *, seed: int, config: BaseModel,
                 overwrite: bool) -> tuple[Path, Path]:
    """Check ``n``, claim ``out`` (:func:`claim_cohort_folder`), remove the old cohort's files, record the new one.

    Returns (out, manifest path). The record is written before any patient, as ``started``.
    """
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    out = Path(out)
    previous = claim_cohort_folder(out, overwrite=overwrite)
    for path in previous:  # only the recorded cohort's own files; its record goes last (replaced below)
        if path.name != SYNTH_RECORD:
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / SYNTH_RECORD, _record(kind, n, seed, config) | {"status": "started"})
    return out, out / MANIFEST


def _record(kind: str, n: int, seed: int, config: BaseModel) -> dict[str, Any]:
    return {"kind": kind, "n": n, "seed": seed, "config": config.model_dump(), "osteomet": __version__}


def write_synth_record(out: Path, kind: str, *, n: int, seed: int, config: BaseModel, started: float) -> Path:
    """``synth.json``: what made the cohort (kind, n, seed, config, version) and how long it took since ``started``."""
    record = _record(kind, n, seed, config) | {"status": "complete",
                                                "seconds": round(time.perf_counter() - started, 3)}
    return write_json_atomic(out / SYNTH_RECORD, record)
