"""The stage API: every stage writes into its own folder the same way, and is skipped when nothing changed.

A stage is named (``radiomics-extract``), has settings (a pydantic model or a plain mapping)
and inputs (files or folders). Its **fingerprint** is a hash of the name, the settings, the
osteomet version and the inputs: a file by size and modification time (cheap even for
DICOM cohorts; the per-case caches below a stage still compare contents), a folder by the
same over its files, and an earlier stage's folder by that stage's own fingerprint, so a
change anywhere upstream reaches every later stage.

:meth:`Stage.run` checks the output folder (never a folder of the user's, never an output
that is one of the inputs), writes ``settings.yaml``, runs the work, and writes
``stage.json`` last with the fingerprint, timings and versions. A rerun with the same
fingerprint and a finished ``stage.json`` returns the recorded summary without running. When
the work stops on an input error, a folder the stage created is removed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from osteomet import __version__
from osteomet.config import write_settings
from osteomet.errors import OsteometError, OutputExistsError
from osteomet.layout import SETTINGS, STAGE_RECORD, is_osteomet_dir
from osteomet.utils.files import read_json, write_json_atomic

PathLike = str | os.PathLike[str]
Inputs = Mapping[str, PathLike | Sequence[PathLike] | None]

#: Packages whose versions every stage record carries.
VERSIONED_PACKAGES = ("numpy", "pandas", "torch", "monai", "SimpleITK", "pyradiomics", "xgboost", "scikit-learn",
                     "shap", "inmoose")
#: Packages whose distribution may carry another name (the CPU-only XGBoost wheel is ``xgboost-cpu``).
DISTRIBUTIONS = {"xgboost": ("xgboost", "xgboost-cpu")}


def settings_dict(settings: Any) -> dict[str, Any]:
    """Plain JSON-able settings from a pydantic model, a dataclass-like mapping or None."""
    if settings is None:
        return {}
    if hasattr(settings, "model_dump"):
        return settings.model_dump(mode="json")
    return json.loads(json.dumps(dict(settings), default=str))


def _file_stamp(path: Path) -> list[Any]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def path_stamp(path: PathLike) -> Any:
    """What decides whether an input changed: an earlier stage's fingerprint, else sizes and times."""
    path = Path(path)
    if not path.exists():
        return None
    if path.is_file():
        return _file_stamp(path)
    record = read_json(path / STAGE_RECORD)
    if record and record.get("status") == "complete":
        return {"stage": record.get("fingerprint")}
    return sorted([str(p.relative_to(path)), *_file_stamp(p)] for p in path.rglob("*")
                  if p.is_file() and not p.name.startswith("."))


def fingerprint(name: str, settings: Mapping[str, Any], inputs: Inputs) -> str:
    stamps: dict[str, Any] = {}
    for key, value in sorted(inputs.items()):
        if value is None:
            stamps[key] = None
        elif isinstance(value, (str, os.PathLike)):
            stamps[key] = [str(value), path_stamp(value)]
        else:
            stamps[key] = [[str(v), path_stamp(v)] for v in value]
    text = json.dumps({"stage": name, "settings": settings, "inputs": stamps, "osteomet": __version__},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _flat(inputs: Inputs) -> list[Path]:
    paths: list[Path] = []
    for value in inputs.values():
        if value is None:
            continue
        paths.extend([Path(value)] if isinstance(value, (str, os.PathLike)) else [Path(v) for v in value])
    return paths


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_overwriting_inputs(outputs: Iterable[PathLike], inputs: Iterable[PathLike]) -> None:
    """An output that is one of the inputs (same path or same file) is refused, naming both."""
    inputs = [Path(p) for p in inputs]
    for output in map(Path, outputs):
        for source in inputs:
            if output.resolve() == source.resolve() or _same(output, source):
                raise OutputExistsError(f"{output}: this output would overwrite an input of the same command "
                                        f"({source}); choose another output path")


def check_output_folder(out: Path, name: str) -> None:
    """The stage folder must be new, empty, or osteomet's own (a run directory or the same stage's folder)."""
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not is_osteomet_dir(out):
        raise OutputExistsError(f"{out}: folder is not empty and was not written by osteomet; "
                                f"choose a new --out (osteomet never writes into or over your files)")
    record = read_json(out / STAGE_RECORD)
    if record and record.get("stage") not in (None, name):
        raise OutputExistsError(f"{out}: holds the output of `{record['stage']}`, not `{name}`; choose another --out")


def package_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"osteomet": __version__}
    for package in VERSIONED_PACKAGES:
        for distribution in DISTRIBUTIONS.get(package, (package,)):
            try:
                versions[package] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Stage:
    """One stage's folder, settings and inputs; ``outputs`` are files in it that must not be inputs."""

    name: str
    out: Path
    settings: Any = None
    inputs: Inputs = field(default_factory=dict)
    outputs: Sequence[str] = ()

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self._settings = settings_dict(self.settings)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.name, self._settings, self.inputs)

    def record(self) -> dict[str, Any] | None:
        return read_json(self.out / STAGE_RECORD)

    def up_to_date(self) -> bool:
        record = self.record()
        return bool(record) and record.get("status") == "complete" and record.get("fingerprint") == self.fingerprint

    def check(self) -> None:
        """Guards only (no writing): the folder is usable and no output is an input."""
        check_output_folder(self.out, self.name)
        refuse_overwriting_inputs([self.out / o for o in self.outputs] + [self.out / SETTINGS, self.out / STAGE_RECORD],
                                  _flat(self.inputs))

    def begin(self) -> str:
        """Check, create the folder, record the settings and mark the stage running; returns the fingerprint."""
        self.check()
        self.out.mkdir(parents=True, exist_ok=True)
        write_settings(self.out, self._settings)
        key = self.fingerprint
        write_json_atomic(self.out / STAGE_RECORD, {"stage": self.name, "status": "running", "fingerprint": key,
                                                    "started": _now(), "osteomet": __version__})
        self._started = time.perf_counter()
        self._key = key
        return key

    def finish(self, summary: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Write ``stage.json`` as complete, with timings, versions and the stage's own summary."""
        previous = self.record() or {}
        record = {"stage": self.name, "status": "complete", "fingerprint": self._key,
                  "started": previous.get("started", _now()), "finished": _now(),
                  "seconds": round(time.perf_counter() - self._started, 3),
                  "inputs": {k: (str(v) if isinstance(v, (str, os.PathLike)) else
                                 (None if v is None else [str(x) for x in v][:20]))
                             for k, v in self.inputs.items()},
                  "versions": package_versions(), "summary": dict(summary or {})}
        write_json_atomic(self.out / STAGE_RECORD, record)
        return record

    def run(self, work: Callable[[], Mapping[str, Any] | None], *, force: bool = False) -> "StageOutcome":
        """Run ``work`` unless the stage is up to date; ``work`` returns a JSON-able summary."""
        if not force and self.up_to_date():
            self.check()
            return StageOutcome(self.out, skipped=True, record=self.record() or {})
        new = not self.out.exists() or not any(self.out.iterdir())
        self.begin()
        try:
            summary = work()
        except OsteometError:
            if new:  # an input problem found on the way: leave no half-made folder behind
                shutil.rmtree(self.out, ignore_errors=True)
            raise
        return StageOutcome(self.out, skipped=False, record=self.finish(summary))


@dataclass
class StageOutcome:
    out: Path
    skipped: bool
    record: dict[str, Any]

    @property
    def summary(self) -> dict[str, Any]:
        return self.record.get("summary", {})

    @property
    def seconds(self) -> float:
        return float(self.record.get("seconds", 0.0))


__all__ = ["Stage", "StageOutcome", "check_output_folder", "fingerprint", "refuse_overwriting_inputs"]
