"""The generative model of the synthetic patients, checked on many patients without images:
the study's clinical marginals, and a BM label learnable but not perfectly."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

from osteomet.data.synth.clinical import sample_patients


@pytest.fixture(scope="module")
def population() -> pd.DataFrame:
    frame = sample_patients(4000, seed=5)
    frame["log_psa"] = np.log(frame["psa"])
    frame["log_volume"] = np.log(frame["tumour_volume_ml"])
    return frame


def _cv_auc(frame: pd.DataFrame, columns: list[str]) -> float:
    model = LogisticRegression(max_iter=2000)
    scores = cross_val_predict(model, frame[columns], frame["label"], cv=5, method="predict_proba")[:, 1]
    return roc_auc_score(frame["label"], scores)


def test_clinical_marginals_follow_the_study(population: pd.DataFrame):
    by_label = population.groupby("label")
    gleason8 = by_label["gleason"].apply(lambda g: (g >= 8).mean())
    assert gleason8[1] == pytest.approx(0.779, abs=0.04) and gleason8[0] == pytest.approx(0.460, abs=0.04)
    psa100 = by_label["psa"].apply(lambda p: (p > 100).mean())
    assert psa100[1] == pytest.approx(0.441, abs=0.04) and psa100[0] == pytest.approx(0.133, abs=0.03)
    assert by_label["psa"].mean()[1] > 2.5 * by_label["psa"].mean()[0]
    assert abs(by_label["age"].mean()[1] - by_label["age"].mean()[0]) < 1.5
    # ISUP derives from Gleason as the grade groups are defined
    allowed = {6: {1}, 7: {2, 3}, 8: {4}, 9: {5}, 10: {5}}
    assert all(isup in allowed[g] for g, isup in zip(population.gleason, population.isup))


def test_bm_is_learnable_but_not_perfectly(population: pd.DataFrame):
    clinical = ["age", "log_psa", "gleason", "isup", "hematuria", "leukocyturia"]
    imaging = ["log_volume", "tumour_adc", "heterogeneity", "epe"]
    auc_clinical = _cv_auc(population, clinical)
    auc_imaging = _cv_auc(population, imaging)
    auc_both = _cv_auc(population, clinical + imaging)
    assert 0.65 < auc_clinical < 0.85  # moderate, like the study's clinical model (0.71-0.76)
    assert auc_imaging > auc_clinical + 0.05  # imaging carries more signal
    assert auc_clinical < auc_both < 0.97  # fusion helps, nothing is perfect
    # age, hematuria and leukocyturia alone carry almost nothing
    assert _cv_auc(population, ["age", "hematuria", "leukocyturia"]) < 0.6
