"""pyradiomics parameter files: packaged defaults, loading and validation."""

from __future__ import annotations

import copy
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from osteomet.errors import InputError

PathLike = str | os.PathLike[str]
BUILTIN = ("mri", "ct", "tiny")
#: Image types known to fail in this environment (pyradiomics 3.0.1 with scipy >= 1.17).
BROKEN_IMAGE_TYPES = {"LBP3D": "fails with scipy >= 1.17 in pyradiomics 3.0.1; leave it off"}


class RadiomicsParamsError(InputError):
    """A parameter file is missing, not YAML, or rejected by pyradiomics' schema."""


def load_params(source: PathLike | None = None, *, modality: str = "mri") -> dict[str, Any]:
    """Parameters as a dict: a YAML file, a built-in name ('mri', 'ct', 'tiny'), or the modality default."""
    if source is None or str(source) in BUILTIN:
        name = str(source) if source is not None else modality
        text = resources.files("osteomet.radiomics").joinpath("params", f"{name}.yaml").read_text(encoding='utf-8')
        origin = f"built-in {name}.yaml"
    else:
        path = Path(source)
        if not path.is_file():
            raise RadiomicsParamsError(f"{path}: parameter file does not exist")
        text, origin = path.read_text(encoding="utf-8"), str(path)
    try:
        params = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RadiomicsParamsError(f"{origin}: not valid YAML ({exc})") from None
    validate_params(params, origin)
    return params


def validate_params(params: dict[str, Any], origin: str = "parameters") -> None:
    """Check with pyradiomics' own schema (the same one its extractor uses) plus known-broken types."""
    import logging

    import pykwalify.core

    from radiomics import (
        featureextractor,  # noqa: F401  (registers the schema extensions)
        getParameterValidationFiles,
    )

    if not isinstance(params, dict):
        raise RadiomicsParamsError(f"{origin}: expected a mapping with setting/imageType/featureClass")
    for name, why in BROKEN_IMAGE_TYPES.items():
        if name in (params.get("imageType") or {}):
            raise RadiomicsParamsError(f"{origin}: image type {name} {why}")
    schema, extensions = getParameterValidationFiles()
    logging.getLogger("pykwalify").setLevel(logging.CRITICAL)
    core = pykwalify.core.Core(source_data=copy.deepcopy(params), schema_files=[schema], extensions=[extensions])
    try:
        core.validate(raise_exception=True)
    except Exception as exc:  # pykwalify.errors.SchemaError
        raise RadiomicsParamsError(f"{origin}: rejected by pyradiomics: {getattr(exc, 'msg', exc)}") from None


def params_fingerprint(params: dict[str, Any]) -> str:
    """Canonical text of the parameters (for cache keys)."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))
