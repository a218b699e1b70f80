"""YAML configuration: ``yaml.safe_load`` (never arbitrary objects) validated by pydantic."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from osteomet.errors import InputError

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
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: invalid {model.__name__}: {problems}") from None


def dump_config(config: BaseModel) -> str:
    """YAML text of a config, so a run directory records exactly what it ran with."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


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
