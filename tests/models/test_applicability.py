"""The applicability domain: Ledoit-Wolf Mahalanobis against a hand computation, the cross-validated threshold,
planted intensity shifts and swapped inputs flagged in words, the reference population not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osteomet.models.applicability import (
    ApplicabilityDomain,
    ApplicabilityError,
    FeatureDistance,
    Quantity,
    cross_validated_distances,
    cross_validated_findings,
)

#: The quantities of a small synthetic intensity table: median gland intensity per channel, the tumour contrast.
SPEC = {"t2_gland_p50": Quantity("T2 50th percentile in the gland region", tolerance=0.2),
        "dwi_gland_p50": Quantity("DWI 50th percentile in the gland region", tolerance=0.2),
        "adc_gland_p50": Quantity("ADC 50th percentile in the gland region", tolerance=0.2),
        "dwi_contrast": Quantity("DWI tumour-to-gland median ratio", tolerance=0.2),
        "t2_spacing_mm": Quantity("T2 in-plane spacing", tolerance=0.1, unit="mm"),
        "t2_orientation": Quantity("T2 orientation", scale="category"),
        "mask_components": Quantity("mask connected components", "mask", "count", "upper")}


def _patients(n: int, seed: int) -> pd.DataFrame:
    """One centre's patients: vendor-scale T2 and DWI, ADC in 10^-6 mm2/s, each with its biological spread."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "t2_gland_p50": 800 * np.exp(rng.normal(0, 0.08, n)),
        "dwi_gland_p50": 60 * np.exp(rng.normal(0, 0.07, n)),
        "adc_gland_p50": 1550 * np.exp(rng.normal(0, 0.06, n)),
        "dwi_contrast": 2.2 * np.exp(rng.normal(0, 0.25, n)),
        "t2_spacing_mm": np.full(n, 0.5),
        "t2_orientation": ["LPS"] * n,
        "mask_components": rng.choice([1, 1, 1, 2], n),
    }, index=[f"P{seed}_{i:03d}" for i in range(n)])


def _correlated(n: int, p: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(p, p)) * 0.6 + np.eye(p)
    return pd.DataFrame(rng.normal(size=(n, p)) @ mixing * rng.uniform(0.5, 50, p) + rng.uniform(-5, 5, p),
                        columns=[f"f{i}" for i in range(p)])


def test_ledoit_wolf_mahalanobis_matches_a_hand_computation():
    """Standardise on the training rows, shrink the covariance as Ledoit & Wolf (2004, eq. 14) do, invert."""
    train, new = _correlated(40, 8, seed=1), _correlated(5, 8, seed=2)
    fitted = FeatureDistance.fit("radiomics", "radiomics feature", train, threshold=3.0)

    z = ((train - train.mean()) / train.std(ddof=0)).to_numpy()
    n, p = z.shape
    x = z - z.mean(axis=0)
    sample = x.T @ x / n
    mu = np.trace(sample) / p
    d2 = np.sum((sample - mu * np.eye(p)) ** 2) / p
    b2_bar = sum(np.sum((np.outer(row, row) - sample) ** 2) for row in x) / n ** 2 / p
    shrinkage = min(b2_bar, d2) / d2
    shrunk = shrinkage * mu * np.eye(p) + (1 - shrinkage) * sample
    offsets = ((new - train.mean()) / train.std(ddof=0)).to_numpy() - z.mean(axis=0)
    expected = np.sqrt(np.einsum("ij,jk,ik->i", offsets, np.linalg.inv(shrunk), offsets))

    assert fitted.shrinkage == pytest.approx(shrinkage, rel=1e-9)
    assert fitted.distances(new) == pytest.approx(expected, rel=1e-7)
    # a missing value counts as the training median; a row with no feature at all has no distance
    gap = new.iloc[[0]].copy()
    gap["f3"] = np.nan
    filled = new.iloc[[0]].copy()
    filled["f3"] = train["f3"].median()
    assert fitted.distances(gap) == pytest.approx(fitted.distances(filled))
    assert np.isnan(fitted.distances(new.iloc[[0]] * np.nan)[0])


def test_the_threshold_is_the_quantile_of_distances_of_patients_each_fit_never_saw():
    train = _correlated(30, 6, seed=3)
    loo = cross_validated_distances(train, folds=len(train))
    for i in (0, 17):  # leave-one-out: each distance is to a fit on every other patient
        others = FeatureDistance.fit("g", "g", train.drop(index=i), threshold=1.0)
        assert loo[i] == pytest.approx(others.distances(train.iloc[[i]])[0])
    fitted = FeatureDistance.fit("g", "g", train, quantile=0.99, folds=5, seed=7)
    assert fitted.threshold == pytest.approx(np.quantile(cross_validated_distances(train, folds=5, seed=7), 0.99))
    # in-sample distances are smaller by construction: a threshold from them would flag too many new patients
    assert np.quantile(fitted.distances(train), 0.99) < fitted.threshold


def test_the_cross_validated_threshold_flags_about_one_percent_of_the_same_population():
    population = _correlated(3000, 5, seed=4)
    fitted = FeatureDistance.fit("g", "g", population.iloc[:200], quantile=0.99)
    rate = float(np.mean(fitted.distances(population.iloc[200:]) > fitted.threshold))
    assert rate < 0.04, rate
    shifted = population.iloc[200:].copy()
    shifted["f2"] = shifted["f2"] + 6 * population["f2"].std()  # one feature six SDs off
    assert np.mean(fitted.distances(shifted) > fitted.threshold) > 0.9


def test_a_planted_dwi_scale_another_b_value_and_swapped_inputs_are_flagged_and_the_reference_is_not():
    train, reference = _patients(30, seed=5), _patients(200, seed=6)
    domain = ApplicabilityDomain.fit(train, SPEC)
    verdicts = [domain.check(row) for row in reference.to_dict("records")]
    reference_rate = np.mean([not within for within, _ in verdicts])
    assert reference_rate < 0.05, reference_rate

    doubled = reference.assign(dwi_gland_p50=2 * reference["dwi_gland_p50"])
    results = [domain.check(row) for row in doubled.to_dict("records")]
    assert all(not within for within, _ in results)
    assert all(any(r.startswith("DWI 50th percentile in the gland region") for r in reasons) for _, reasons in results)

    # high-b DWI at b = 800 instead of 1400 s/mm2: S = S0 exp(-b ADC), gland ADC 1.55, tumour 0.9 x 10^-3 mm2/s
    low_b = reference.assign(dwi_gland_p50=reference["dwi_gland_p50"] * np.exp(600 * 1.55e-3),
                             dwi_contrast=reference["dwi_contrast"] * np.exp(600 * (0.9e-3 - 1.55e-3)))
    assert all(not domain.check(row)[0] for row in low_b.to_dict("records"))

    swapped = reference.assign(t2_gland_p50=reference["adc_gland_p50"], adc_gland_p50=reference["t2_gland_p50"])
    for within, reasons in (domain.check(row) for row in swapped.to_dict("records")):
        assert not within
        assert {r.split(" 50th")[0] for r in reasons} == {"T2", "ADC"}


def test_each_reason_names_the_quantity_the_patients_value_and_the_study_range():
    train = pd.DataFrame({"dwi_gland_p90": np.linspace(120, 410, 12), "t2_orientation": ["LPS"] * 12,
                          "mask_components": [1] * 11 + [2]})
    spec = {"dwi_gland_p90": Quantity("DWI 90th percentile in the gland region"), **{k: SPEC[k] for k in
                                                                                     ("t2_orientation", "mask_components")}}
    domain = ApplicabilityDomain.fit(train, spec, margin=0.0)
    within, reasons = domain.check({"dwi_gland_p90": 741.0, "t2_orientation": "PSL", "mask_components": 3})
    assert not within
    assert reasons == ["DWI 90th percentile in the gland region 741, study range 120–410",
                       "T2 orientation PSL, study had LPS", "mask connected components 3, study maximum 2"]
    assert domain.check({"dwi_gland_p90": 400.0, "t2_orientation": "LPS", "mask_components": 2}) == (True, [])
    # a value that could not be measured is not a reason, but is named as such
    findings = domain.findings({"t2_orientation": "LPS", "mask_components": 1})
    assert [f.text for f in findings if f.value is None] == ["DWI 90th percentile in the gland region: not measured"]


def test_the_log_range_is_widened_by_the_margin_and_the_tolerance():
    values = [100.0, 400.0]
    domain = ApplicabilityDomain.fit(pd.DataFrame({"x": values * 3}), {"x": Quantity("x", tolerance=0.2)},
                                     margin=0.25)
    check = domain.ranges[0]
    width = np.log(4)
    assert check.low == pytest.approx(100 * np.exp(-0.25 * width) / 1.2)
    assert check.high == pytest.approx(400 * np.exp(0.25 * width) * 1.2)


def test_too_few_training_values_leave_a_check_out_and_say_so():
    train = _patients(12, seed=8)
    train.loc[train.index[3:], "dwi_contrast"] = np.nan
    domain = ApplicabilityDomain.fit(train, SPEC)
    assert "dwi_contrast" not in [r.name for r in domain.ranges]
    assert domain.skipped["dwi_contrast"].startswith("3 training patient(s) with a value")


def test_training_patients_are_judged_out_of_fold():
    """A training outlier sits inside a range it widened itself; judged by the other folds it is flagged."""
    train = _patients(30, seed=9)
    train.loc[train.index[4], "dwi_gland_p50"] *= 2.5
    features = {"radiomics": ("radiomics feature", _correlated(30, 4, seed=10).set_axis(train.index))}
    final = ApplicabilityDomain.fit(train, SPEC, features, folds=5)
    assert final.check(train.iloc[4].to_dict(), {"radiomics": features["radiomics"][1].iloc[[4]]})[0]
    findings = cross_validated_findings(train, SPEC, features, final, folds=5)
    assert set(findings) == set(train.index)
    flagged = [pid for pid, found in findings.items() if any(f.outside for f in found)]
    assert train.index[4] in flagged and len(flagged) <= 4, flagged
    assert any(f.group == "features" for f in findings[train.index[0]])


def test_the_domain_is_saved_as_json_and_a_damaged_file_is_refused(tmp_path: Path):
    train = _patients(25, seed=11)
    features = {"deep": ("deep feature", _correlated(25, 6, seed=12).set_axis(train.index))}
    domain = ApplicabilityDomain.fit(train, SPEC, features)
    path = domain.save(tmp_path / "domain.json")
    loaded = ApplicabilityDomain.load(path)
    patient = _patients(1, seed=13).iloc[0].to_dict() | {"dwi_gland_p50": 500.0}
    rows = {"deep": _correlated(1, 6, seed=14)}
    assert loaded.check(patient, rows) == domain.check(patient, rows)
    assert not loaded.check(patient, rows)[0]
    data = json.loads(path.read_text(encoding="utf-8"))
    data["distances"][0]["precision"] = data["distances"][0]["precision"][:-1]
    path.write_text(json.dumps(data))
    with pytest.raises(ApplicabilityError, match="domain.json: damaged or edited"):
        ApplicabilityDomain.load(path)
