"""XGBoost settings and JSON persistence shared by the radiomics, clinical and fusion models.

Models are saved in XGBoost's own JSON format (never pickled), so a model bundle can be
shared and loaded without trusting code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from osteomet.errors import MissingInputError
from osteomet.utils.files import atomic_path

XGBOOST_FILE = "xgboost.json"


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
    path = Path(folder) / XGBOOST_FILE
    with atomic_path(path) as tmp:
        classifier.save_model(str(tmp))
    return path


def load_classifier(folder: str | Path) -> Any:
    from xgboost import XGBClassifier

    path = Path(folder) / XGBOOST_FILE
    if not path.is_file():
        raise MissingInputError(f"{path}: no saved XGBoost model")
    classifier = XGBClassifier()
    classifier.load_model(str(path))
    return classifier
