"""YAML configuration: ``yaml.safe_load`` (never arbitrary objects) validated by pydantic."""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from osteomet.errors import InputError, MissingInputError
from osteomet.layout import LEGACY_SETTINGS, SETTINGS
from osteomet.utils.files import write_text_atomic

Model = TypeVar("Model", bound=BaseModel)

#: Presets shipped in each model package's ``configs/`` folder.
PRESETS = ("default", "tiny")


class ConfigError(InputError):
    """A config file is missing, not YAML, or fails validation; the message names the file."""


def load_config(path: str | os.PathLike[str], model: type[Model]) -> Model:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:  # empty or comments only: running on every default would hide a wrong or unsaved file
        raise ConfigError(f"{path}: is empty: give the settings to change (or '{{}}' to keep every default), "
                          "or name a preset instead of the file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        raise ConfigError(f"{path}: invalid {model.__name__}: {problems}") from None


def _problem(error: Any) -> str:
    """``key.path: pydantic's message (got 'value')``; the value only when it is a scalar the user wrote."""
    where = ".".join(str(p) for p in error["loc"])
    given = error.get("input")
    got = f" (got {given!r})" if isinstance(given, (str, int, float, bool)) and error["type"] != "missing" else ""
    return f"{where}: {error['msg']}{got}"


def dump_config(config: BaseModel | Mapping[str, Any]) -> str:
    """YAML text of a config, so a run directory records exactly what it ran with."""
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else dict(config)
    return yaml.safe_dump(data, sort_keys=False)


def write_settings(folder: str | os.PathLike[str], config: BaseModel | Mapping[str, Any]) -> Path:
    """Record the settings a folder's outputs were made with (``settings.yaml``, re-usable as ``--config``).

    Every stage and training run records its settings through here, so there is one file name
    and one YAML form to read back.
    """
    return write_text_atomic(Path(folder) / SETTINGS, dump_config(config))


def settings_path(folder: str | os.PathLike[str]) -> Path:
    """``settings.yaml``, or ``config.yaml`` in a folder written before settings were recorded one way."""
    folder = Path(folder)
    current, legacy = folder / SETTINGS, folder / LEGACY_SETTINGS
    return legacy if not current.is_file() and legacy.is_file() else current


def read_settings(folder: str | os.PathLike[str], model: type[Model], *, what: str = "run") -> Model:
    """The validated settings a folder was made with; a clear error when it has none."""
    path = settings_path(folder)
    if not path.is_file():
        raise MissingInputError(f"{folder}: not a {what} folder (no {SETTINGS})")
    return load_config(path, model)


def recorded_settings(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A folder's recorded settings as a mapping; None when missing or unreadable (reports describe what exists)."""
    path = settings_path(folder)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def load_training_config(loader: Callable[[Any], Model], source: str | os.PathLike[str] | None,
                         max_epochs: int | None) -> Model:
    """A training config from its preset or YAML file, with ``--max-epochs`` applied."""
    settings = loader(source)
    return settings.model_copy(update={"max_epochs": max_epochs}) if max_epochs is not None else settings


def load_preset_or_file(source: str | os.PathLike[str] | None, model: type[Model], *, package: str,
                        filename: str) -> Model:
    """A preset name (None = ``default``) from ``<package>/configs/<filename with {} = name>``, else a YAML file.

    Presets are read through :mod:`importlib.resources`, so they also work from a wheel or zip.
    """
    if source is None or str(source) in PRESETS:
        ref = resources.files(package).joinpath("configs", filename.format(source or "default"))
        with resources.as_file(ref) as path:
            return load_config(path, model)
    return load_config(source, model)
