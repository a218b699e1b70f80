"""XGBoost settings and JSON persistence shared by the radiomics, clinical and fusion models.

Models are saved in XGBoost's own JSON format (never pickled), so a model bundle can be
shared and loaded without trusting code.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from osteomet.errors import InputError, MissingInputError, OsteometError
from osteomet.layout import MODEL_DIR, XGBOOST_MODEL
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


def damaged_model_file(path: str | Path, detail: str) -> InputError:
    """A saved model file that cannot be used, named with how to get a good one back (never a traceback)."""
    path = Path(path)
    stage = path.parent.parent if path.parent.name == MODEL_DIR else path.parent
    return InputError(f"{path}: damaged or edited model file ({detail}); restore it from a copy of the run, or "
                      f"delete the folder {stage} and rerun the command that trained the model (for a study: the "
                      f"same `osteomet run mri` command) to train it again")


def _xgboost_detail(exc: Exception) -> str:
    """XGBoost's own first line, without its timestamp, source location and C++ stack trace."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^\[[^\]]*\]\s*\S+:\d+:\s*", "", first)


def load_classifier(folder: str | Path) -> Any:
    from xgboost import XGBClassifier

    path = Path(folder) / XGBOOST_MODEL
    if not path.is_file():
        raise MissingInputError(f"{path}: no saved XGBoost model")
    classifier = XGBClassifier()
    try:
        classifier.load_model(str(path))
    except (ValueError, UnicodeDecodeError) as exc:  # XGBoostError is a ValueError
        raise damaged_model_file(path, f"XGBoost cannot read it: {_xgboost_detail(exc)}") from None
    return classifier


def n_model_features(classifier: Any) -> int:
    """How many input columns the fitted XGBoost model was trained on."""
    return int(classifier.get_booster().num_features())


def save_bundle(folder: str | Path, classifier: Any, meta_name: str, meta: dict[str, Any]) -> Path:
    """A saved model: ``xgboost.json`` and ``<meta_name>`` (format, features, settings), both JSON."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_classifier(classifier, folder)
    write_json_atomic(folder / meta_name, meta)
    return folder


def load_bundle(folder: str | Path, meta_name: str, fmt: str, what: str) -> tuple[dict[str, Any], Any]:
    """The metadata (checked to be ``fmt``) and classifier of a :func:`save_bundle` folder.

    A truncated or edited file is an :class:`InputError` naming it, so a damaged study bundle
    is refused when it is opened, not with a parser's traceback in the middle of a prediction.
    """
    meta_path = Path(folder) / meta_name
    if not meta_path.is_file():
        raise MissingInputError(f"{folder}: not a saved {what} (no {meta_name})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise damaged_model_file(meta_path, f"not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise damaged_model_file(meta_path, f"a JSON {type(meta).__name__}, not the {what}'s record")
    if meta.get("format") != fmt:
        raise InputError(f"{meta_path}: unknown model format {meta.get('format')!r} (this osteomet reads {fmt!r})")
    return meta, load_classifier(folder)


@contextmanager
def reading_meta(meta_path: str | Path) -> Iterator[None]:
    """Turn a missing or mistyped entry of a model's JSON record into an :class:`InputError` naming the file."""
    try:
        yield
    except OsteometError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        detail = f"no entry {exc}" if isinstance(exc, KeyError) else f"malformed entry: {exc}"
        raise damaged_model_file(meta_path, detail) from None


def check_feature_count(meta_path: str | Path, features: Sequence[str], classifier: Any) -> None:
    """The feature list of a model's JSON and its XGBoost file must describe the same columns."""
    fitted = n_model_features(classifier)
    if len(features) != fitted:
        raise damaged_model_file(meta_path, f"it lists {len(features)} feature(s), but {Path(meta_path).parent / XGBOOST_MODEL} "
                                            f"was fitted on {fitted}: the two files do not belong together")


def feature_mismatch(source: str | Path | None, missing: Sequence[str], available: Sequence[str],
                     table: str = "the feature table") -> InputError:
    """Features a saved model expects but the table lacks, each with the table's closest name (a rename)."""
    import difflib

    unexpected = [str(c) for c in available]
    shown = []
    for name in list(missing)[:5]:
        close = difflib.get_close_matches(str(name), unexpected, n=1, cutoff=0.75)
        shown.append(f"{name!r}" + (f" (closest name in the table: {close[0]!r})" if close else ""))
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    listing = ", ".join(shown) + more
    if source is None:
        return InputError(f"{table} lacks {len(missing)} selected feature(s) the model was fitted on: {listing}")
    return InputError(f"{source}: the model's feature list names {len(missing)} selected feature(s) missing from {table}: "
                      f"{listing}. The list must name the features the model was trained on: restore {source} "
                      f"from a copy of the run, or rerun the stage that trained it; if the table is the one that "
                      f"was renamed, give the table as the study's extraction wrote it")
