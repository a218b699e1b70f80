"""XGBoost settings and JSON persistence shared by the radiomics, clinical and fusion models.

Models are saved in XGBoost's own JSON format (never pickled), so a model bundle can be
shared and loaded without trusting code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from osteomet.errors import InputError, MissingInputError
from osteomet.layout import XGBOOST_MODEL
from osteomet.utils.files import atomic_path, write_json_atomic


@dataclass
class XGBConfig:
    n_estimators: int = 300
    max_depth: int = 3
    learning_rate: float = 0.05
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    min_child_weight: float = 1.0
    reg_lambda: float = 1.0
    seed: int = 0

    def classifier(self):
        """A single-threaded ``XGBClassifier`` (missing values are routed natively, never imputed)."""
        from xgboost import XGBClassifier

        params = asdict(self)
        seed = params.pop("seed")
        return XGBClassifier(**params, random_state=seed, n_jobs=1, eval_metric="logloss", tree_method="hist")


def save_classifier(classifier: Any, folder: str | Path) -> Path:
    path = Path(folder) / XGBOOST_MODEL
    with atomic_path(path) as tmp:
        classifier.save_model(str(tmp))
    return path


def load_classifier(folder: str | Path) -> Any:
    from xgboost import XGBClassifier

    path = Path(folder) / XGBOOST_MODEL
    if not path.is_file():
        raise MissingInputError(f"{path}: no saved XGBoost model")
    classifier = XGBClassifier()
    classifier.load_model(str(path))
    return classifier


def save_bundle(folder: str | Path, classifier: Any, meta_name: str, meta: dict[str, Any]) -> Path:
    """A saved model: ``xgboost.json`` and ``<meta_name>`` (format, features, settings), both JSON."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_classifier(classifier, folder)
    write_json_atomic(folder / meta_name, meta)
    return folder


def load_bundle(folder: str | Path, meta_name: str, fmt: str, what: str) -> tuple[dict[str, Any], Any]:
    """The metadata (checked to be ``fmt``) and classifier of a :func:`save_bundle` folder."""
    meta_path = Path(folder) / meta_name
    if not meta_path.is_file():
        raise MissingInputError(f"{folder}: not a saved {what} (no {meta_name})")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != fmt:
        raise InputError(f"{meta_path}: unknown model format {meta.get('format')!r} (this osteomet reads {fmt!r})")
    return meta, load_classifier(folder)
