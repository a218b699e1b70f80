"""The stage API: every stage writes into its own folder the same way, and is skipped when nothing changed.

A stage is named (``radiomics-extract``), has settings (a pydantic model or a plain mapping)
and inputs (files or folders). Its **fingerprint** is a hash of the name, the settings, the
osteomet version and the inputs: an earlier stage's folder by that stage's own fingerprint, so
a change anywhere upstream reaches every later stage; a file of the user's by size and
modification time (cheap even for DICOM cohorts; the per-case caches below a stage still
compare contents), a folder by the same over its files. The fingerprint does not depend on
where the run directory lies: paths inside it (in inputs and settings) count relative to it,
and files inside it by their contents, so a run directory that was moved or copied (which
changes modification times) is still up to date.

A stage is *new*, *complete* (same fingerprint, finished), *interrupted* (same fingerprint,
started and never finished: Ctrl-C, SIGKILL, a full disk) or *changed* (recorded with another
fingerprint). Training stages continue an interrupted run from its ``last.pt`` and discard the
partial work of a changed one (``Stage.run(..., partial=...)``), so rerunning the same command
after any interruption continues, and a changed input or setting starts over what depends on it.

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
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

from osteomet import __version__
from osteomet.config import write_settings
from osteomet.errors import OsteometError, OutputExistsError
from osteomet.layout import MARKER, SETTINGS, STAGE_RECORD, is_osteomet_dir
from osteomet.utils.files import read_json, write_json_atomic

PathLike = str | os.PathLike[str]
StageState = Literal["new", "complete", "interrupted", "changed"]
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


def _file_stamp(path: Path, inside_run: bool) -> list[Any]:
    """A file of the user's by size and time; one of the run's by contents (a copy changes its time)."""
    if inside_run:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return [path.stat().st_size, digest.hexdigest()]
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def run_root(folder: PathLike) -> Path | None:
    """The run directory a stage folder lies in (the nearest folder with the run marker), else None."""
    folder = Path(folder).resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / MARKER).is_file():
            return candidate
    return None


def _inside(path: Path, root: Path | None) -> bool:
    return root is not None and path.is_relative_to(root)


def path_stamp(path: PathLike, root: Path | None = None) -> Any:
    """What decides whether an input changed: an earlier stage's fingerprint, else sizes and times
    (contents for files inside the run directory ``root``)."""
    path = Path(path)
    if not path.exists():
        return None
    inside = _inside(path.resolve(), root)
    if path.is_file():
        return _file_stamp(path, inside)
    record = read_json(path / STAGE_RECORD)
    if record and record.get("status") == "complete":
        return {"stage": record.get("fingerprint")}
    return sorted([str(p.relative_to(path)), *_file_stamp(p, inside)] for p in path.rglob("*")
                  if p.is_file() and not p.name.startswith("."))


def portable(value: Any, root: Path | None) -> Any:
    """``value`` with every path inside the run directory ``root`` written relative to it (``run:…``)."""
    if root is None:
        return value
    if isinstance(value, Mapping):
        return {k: portable(v, root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v, root) for v in value]
    if isinstance(value, (str, os.PathLike)):
        text = str(value)
        if not text or "\n" in text or len(text) > 4096:
            return text
        path = Path(text)
        try:
            resolved = path.resolve() if (path.is_absolute() or path.exists()) else None
        except (OSError, RuntimeError):
            resolved = None
        if resolved is None:
            return text
        if resolved.is_relative_to(root):
            return "run:" + resolved.relative_to(root).as_posix()
        return str(resolved)
    return value


def fingerprint(name: str, settings: Mapping[str, Any], inputs: Inputs, root: Path | None = None) -> str:
    """The hash that decides whether a stage is up to date; ``root``: the run directory it lies in."""
    stamps: dict[str, Any] = {}
    for key, value in sorted(inputs.items()):
        if value is None:
            stamps[key] = None
        elif isinstance(value, (str, os.PathLike)):
            stamps[key] = [portable(value, root), path_stamp(value, root)]
        else:
            stamps[key] = [[portable(v, root), path_stamp(v, root)] for v in value]
    text = json.dumps({"stage": name, "settings": portable(settings, root), "inputs": stamps,
                       "osteomet": __version__}, sort_keys=True, default=str)
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


def refuse_output_inside(out: PathLike, folder: PathLike, what: str, *, option: str = "--out") -> None:
    """Nothing is ever written inside (or above) a user's input ``folder`` (``what`` names it in the message)."""
    target, source = Path(out).absolute().resolve(), Path(folder).absolute().resolve()
    if target == source or target.is_relative_to(source):
        raise OutputExistsError(f"{out}: lies inside {what} {folder}; osteomet never writes into its inputs: "
                                f"choose an {option} outside it")
    if source.is_relative_to(target):
        raise OutputExistsError(f"{out}: holds {what} {folder}; choose an {option} beside it, not above it")


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
        return fingerprint(self.name, self._settings, self.inputs, run_root(self.out))

    def record(self) -> dict[str, Any] | None:
        return read_json(self.out / STAGE_RECORD)

    def state(self) -> StageState:
        """``new``, ``complete`` (up to date), ``interrupted`` (same inputs and settings, never finished) or
        ``changed`` (recorded with other inputs, settings or osteomet version)."""
        record = self.record()
        if not record or "fingerprint" not in record:
            return "new"
        if record.get("fingerprint") != self.fingerprint:
            return "changed"
        return "complete" if record.get("status") == "complete" else "interrupted"

    def up_to_date(self) -> bool:
        return self.state() == "complete"

    def discard(self, partial: Iterable[str]) -> None:
        """Remove this stage's partial work (names inside its folder): work of other inputs or settings."""
        self.check()
        for name in partial:
            target = self.out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()

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

    def run(self, work: Callable[[], Mapping[str, Any] | None], *, force: bool = False,
            partial: Iterable[str] = ()) -> "StageOutcome":
        """Run ``work`` unless the stage is up to date; ``work`` returns a JSON-able summary.

        ``partial``: names in the stage folder that hold work an interrupted run continues (training
        runs); they are removed first when the stage's inputs or settings changed.
        """
        state = self.state()
        if not force and state == "complete":
            self.check()
            return StageOutcome(self.out, skipped=True, record=self.record() or {}, previous=state)
        if state == "changed":
            self.discard(partial)
        new = not self.out.exists() or not any(self.out.iterdir())
        self.begin()
        try:
            summary = work()
        except OsteometError:
            if new:  # an input problem found on the way: leave no half-made folder behind
                shutil.rmtree(self.out, ignore_errors=True)
            raise
        return StageOutcome(self.out, skipped=False, record=self.finish(summary), previous=state)


@dataclass
class StageOutcome:
    """What a stage's run did; ``previous``: the stage's state before it (``interrupted`` work was continued,
    ``changed`` work redone)."""

    out: Path
    skipped: bool
    record: dict[str, Any]
    previous: str = "new"

    @property
    def how(self) -> str:
        """How a pipeline reports the stage: up to date, done, continued, or redone and why."""
        if self.skipped:
            return "up to date"
        return {"interrupted": "done (continued after an interruption)",
                "changed": "done (rerun: its inputs or settings changed)"}.get(self.previous, "done")

    @property
    def summary(self) -> dict[str, Any]:
        return self.record.get("summary", {})

    @property
    def seconds(self) -> float:
        return float(self.record.get("seconds", 0.0))


__all__ = ["Stage", "StageOutcome", "StageState", "check_output_folder", "fingerprint", "refuse_overwriting_inputs",
           "run_root"]
