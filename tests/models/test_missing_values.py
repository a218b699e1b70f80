"""Missing clinical values: the training cohort's pattern, and a missing value whose plausible values move the
clinical model's probability is stated with the range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osteomet.models.clinical import ClinicalModel
from osteomet.models.missing_values import MissingnessRecord, missing_value_effects
from osteomet.models.xgb import XGBConfig

COLUMNS = ("age", "psa", "gleason", "isup", "hematuria", "leukocyturia")
ISUP = {6: 1, 7: 2, 8: 4, 9: 5, 10: 5}


def _cohort(n: int, seed: int) -> pd.DataFrame:
    """Hematuria carries the signal; among training patients it is missing only for patients with BM (a record
    that was left blank when the answer was known from elsewhere), so 'missing' itself predicts BM."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    hematuria = np.where(rng.random(n) < 0.85, label, 1 - label).astype(float)
    hematuria[(label == 1) & (rng.random(n) < 0.4)] = np.nan
    gleason = rng.choice([6, 7, 8, 9], n)
    frame = pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)], "label": label,
                          "split": np.where(np.arange(n) < int(0.7 * n), "train", "test"),
                          "age": rng.normal(68, 7, n).round(), "psa": np.exp(rng.normal(2.5, 0.8, n)).round(1),
                          "gleason": gleason, "isup": [ISUP[g] for g in gleason], "hematuria": hematuria,
                          "leukocyturia": rng.integers(0, 2, n).astype(float)})
    frame.loc[rng.random(n) < 0.1, "psa"] = np.nan
    return frame


@pytest.fixture(scope="module")
def fitted() -> tuple[ClinicalModel, MissingnessRecord, pd.DataFrame]:
    frame = _cohort(400, seed=1)
    train = frame[frame["split"] == "train"]
    model = ClinicalModel(XGBConfig(n_estimators=60, max_depth=2, learning_rate=0.3)).fit(train, train["label"])
    return model, MissingnessRecord.fit(frame, COLUMNS), frame


def test_the_training_cohorts_missingness_is_recorded_per_split_with_its_patterns(fitted, tmp_path: Path):
    _, record, frame = fitted
    train = frame[frame["split"] == "train"]
    assert record.n_train == len(train)
    assert record.training["hematuria"]["missing"] == int(train["hematuria"].isna().sum()) > 0
    assert record.training["gleason"] == {"missing": 0, "share": 0.0}
    test = frame[frame["split"] == "test"]
    assert record.splits["test"]["share"]["psa"] == pytest.approx(test["psa"].isna().mean())
    patterns = {tuple(p["missing"]): p["n"] for p in record.patterns}
    assert sum(patterns.values()) == len(train)
    assert patterns[("psa", "hematuria")] == int((train["psa"].isna() & train["hematuria"].isna()).sum())
    # plausible values: the categories the training patients had; quantiles of a continuous variable, never a row
    assert record.plausible["hematuria"]["values"] == [0.0, 1.0]
    assert record.plausible["gleason"]["values"] == [6.0, 7.0, 8.0, 9.0]
    assert record.plausible["age"]["values"] == pytest.approx(list(np.quantile(train["age"], [0.1, 0.5, 0.9])))
    loaded = MissingnessRecord.load(record.save(tmp_path / "missingness.json"))
    assert loaded.to_dict() == record.to_dict()


def test_a_missing_value_that_moves_the_prediction_is_stated_with_its_range(fitted):
    model, record, _ = fitted
    patient = {"age": 70.0, "psa": 12.0, "gleason": 7.0, "isup": 2.0, "leukocyturia": 0.0}  # hematuria missing

    def clinical(rows: pd.DataFrame) -> np.ndarray:
        return model.predict_proba(rows)[:, 1]

    effects = missing_value_effects(record, patient, {"clinical": clinical}, shift=0.1)
    as_missing = float(clinical(pd.DataFrame([{**patient, "hematuria": np.nan}]))[0])
    by_value = [float(clinical(pd.DataFrame([{**patient, "hematuria": v}]))[0]) for v in (0.0, 1.0)]
    entry = effects["variables"]["hematuria"]["models"]["clinical"]
    assert entry["missing"] == pytest.approx(as_missing) and entry["probabilities"] == pytest.approx(by_value)
    assert as_missing > by_value[0] + 0.1  # the default direction learned from the BM-only blanks
    assert entry["moves"] and entry["shift"] == pytest.approx(max(abs(p - as_missing) for p in by_value))
    assert effects["models"]["clinical"]["low"] == pytest.approx(min(by_value))
    assert effects["models"]["clinical"]["high"] == pytest.approx(max(by_value))
    statement = next(s for s in effects["statements"] if s.startswith("hematuria is missing"))
    assert f"{as_missing:.3f} as missing" in statement and "more than 0.1" in statement
    assert f"{min(by_value):.3f}–{max(by_value):.3f}" in statement
    # a shift threshold above the effect states nothing for it (only the joint range remains)
    quiet = missing_value_effects(record, patient, {"clinical": clinical}, shift=0.99)
    assert not any(s.startswith("hematuria") for s in quiet["statements"])


def test_a_value_never_missing_in_training_is_said_so_and_gleason_and_isup_stay_consistent(fitted):
    model, record, _ = fitted
    patient = {"age": 70.0, "psa": 12.0, "gleason": 8.0, "hematuria": 0.0, "leukocyturia": 0.0}  # isup missing
    effects = missing_value_effects(record, patient, {"clinical": lambda rows: model.predict_proba(rows)[:, 1]})
    assert effects["variables"]["isup"]["values"] == [4.0]  # Gleason 8 allows ISUP 4 only
    assert any(s.startswith("Never missing among the 280 training patients") and s.count("isup") == 1
               for s in effects["statements"])
    both = {"age": 70.0, "psa": 12.0, "hematuria": 0.0, "leukocyturia": 0.0}
    joint = missing_value_effects(record, both, {"clinical": lambda rows: model.predict_proba(rows)[:, 1]})
    assert joint["models"]["clinical"]["n_combinations"] == 4  # (6, 1), (7, 2), (8, 4), (9, 5) of the 4 x 4 grid
    assert missing_value_effects(record, {**both, "gleason": 7.0, "isup": 2.0},
                                 {"clinical": lambda rows: model.predict_proba(rows)[:, 1]})["statements"] == []
