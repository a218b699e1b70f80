"""Reference-batch ComBat: the training centre stays as it is, a planted scanner effect is removed, and the
saved fit reproduces inmoose's ``pycombat_norm`` patient by patient."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from osteomet.errors import InputError
from osteomet.radiomics.harmonize import ComBat, UnknownCentreError, fit_combat

N_FEATURES = 15


def _two_centres(rng: np.random.Generator, n1: int = 200, n2: int = 150):
    """C1 features, and C2 features of the same population with a per-feature scale and shift (the scanner)."""
    mu = rng.uniform(-50, 200, N_FEATURES)
    sd = rng.uniform(1, 30, N_FEATURES)
    c1 = rng.normal(size=(n1, N_FEATURES)) * sd + mu
    scale = rng.uniform(0.5, 2.0, N_FEATURES)
    shift = rng.uniform(1.0, 3.0, N_FEATURES) * sd * rng.choice([-1, 1], N_FEATURES)
    c2 = (rng.normal(size=(n2, N_FEATURES)) * sd) * scale + mu + shift
    columns = [f"t2_original_firstorder_F{i}" for i in range(N_FEATURES)]
    table = pd.DataFrame(np.vstack([c1, c2]), columns=columns)
    table.insert(0, "patient_id", [f"P{i:03d}" for i in range(n1 + n2)])
    return table, ["C1"] * n1 + ["C2"] * n2, columns, (mu, sd)


def test_reference_centre_unchanged_and_planted_site_shift_removed():
    rng = np.random.default_rng(0)
    table, centres, columns, (mu, sd) = _two_centres(rng)
    # fit() has no label argument: the only inputs are features and centres
    fitted = fit_combat(table[columns], centres, "C1")
    out = fitted.apply(table, centres)
    c1, c2 = np.array(centres) == "C1", np.array(centres) == "C2"
    np.testing.assert_array_equal(out.loc[c1, columns].to_numpy(), table.loc[c1, columns].to_numpy())
    assert list(out["patient_id"]) == list(table["patient_id"])
    before_gap = np.abs(table.loc[c2, columns].mean() - table.loc[c1, columns].mean()).to_numpy() / sd
    after_gap = np.abs(out.loc[c2, columns].mean() - table.loc[c1, columns].mean()).to_numpy() / sd
    before_ratio = (table.loc[c2, columns].std() / table.loc[c1, columns].std()).to_numpy()
    after_ratio = (out.loc[c2, columns].std() / table.loc[c1, columns].std()).to_numpy()
    assert before_gap.min() > 0.5 and after_gap.max() < 0.05  # planted 1-3 SD; after: C1 mean within 0.05 SD
    before_log, after_log = np.abs(np.log(before_ratio)), np.abs(np.log(after_ratio))
    # SD: planted 0.5-2x; after: within 10% of C1's (empirical Bayes shrinks each delta a little)
    assert before_log.max() > 0.4 and after_log.max() < 0.1
    assert ((after_log < before_log) | (before_log < 0.1)).all()


def test_fit_then_apply_one_patient_at_a_time_equals_inmoose_pycombat_norm():
    from inmoose.pycombat import pycombat_norm

    rng = np.random.default_rng(1)
    table, centres, columns, _ = _two_centres(rng, 40, 25)
    centres = centres[:50] + ["C3"] * 15  # three centres, C1 the reference
    table.loc[50:, columns] = table.loc[50:, columns] * 0.7 - 5
    reference = pycombat_norm(pd.DataFrame(table[columns].to_numpy().T), centres, ref_batch="C1").to_numpy().T
    fitted = ComBat.from_dict(json.loads(json.dumps(fit_combat(table[columns], centres, "C1").to_dict())))
    for i in range(len(table)):
        one = fitted.apply(table.iloc[[i]], [centres[i]])
        np.testing.assert_allclose(one[columns].to_numpy()[0], reference[i], rtol=1e-10, atol=1e-9)


def test_unknown_centre_and_single_centre_are_refused_with_the_centre_named(tmp_path):
    rng = np.random.default_rng(2)
    table, centres, columns, _ = _two_centres(rng, 20, 10)
    fitted = fit_combat(table[columns], centres, "C1")
    fitted.save(tmp_path / "combat.json")
    with pytest.raises(UnknownCentreError, match="'C7'.*C1, C2"):
        ComBat.load(tmp_path / "combat.json").apply(table.iloc[[0]], ["C7"])
    with pytest.raises(InputError, match="only the centre 'C1'"):
        fit_combat(table[columns][:20], centres[:20], "C1")
    with pytest.raises(InputError, match="C2 have fewer than 2"):
        fit_combat(table[columns][:21], centres[:21], "C1")


def test_features_constant_within_a_centre_and_missing_values_are_left_as_they_are():
    rng = np.random.default_rng(3)
    table, centres, columns, _ = _two_centres(rng, 30, 20)
    table.loc[30:, columns[0]] = 4.0  # constant in C2 (e.g. a shape feature of a fixed-size ROI)
    table.loc[3, columns[1]] = np.nan
    fitted = fit_combat(table[columns], centres, "C1")
    assert fitted.skipped == {columns[0]: "constant within a centre"} and columns[0] not in fitted.features
    assert fitted.patients == {"C1": 29, "C2": 20}  # the incomplete row is left out of the fit
    out = fitted.apply(table, centres)
    assert (out.loc[30:, columns[0]] == 4.0).all() and np.isnan(out.loc[3, columns[1]])


def test_effect_summary_against_hand_computed_differences():
    from osteomet.radiomics.harmonize import centre_means, effect_summary

    table = pd.DataFrame({"a": [0.0, 2.0, 4.0, 6.0, 3.0, 5.0], "b": [1.0, 3.0, 1.0, 3.0, 10.0, 14.0]})
    centres = ["C1", "C1", "C2", "C2", "C2", "C2"]
    # C1: a mean 1, sd sqrt(2); b mean 2, sd sqrt(2). C2: a mean 4.5, sd sqrt(5/3); b mean 7, sd sqrt(110/3)
    before = centre_means(table, centres, ["a", "b"]).assign(stage="before")
    after = centre_means(table.assign(a=[0.0, 2.0, 0.0, 2.0, 0.0, 2.0]), centres, ["a", "b"]).assign(stage="after")
    row = effect_summary(pd.concat([before, after]), "C1").iloc[0]
    smd = sorted([3.5 / np.sqrt(2), 5 / np.sqrt(2)])
    ratio = sorted([np.sqrt(5 / 3) / np.sqrt(2), np.sqrt(110 / 3) / np.sqrt(2)])
    ratio = [max(r, 1 / r) for r in ratio]
    assert row["centre"] == "C2" and row["n_features"] == 2
    assert row["smd_before"] == pytest.approx(np.median(smd))
    assert row["sd_ratio_before"] == pytest.approx(np.median(ratio))
    # after: a matches C1 exactly (SMD 0, ratio ~ sqrt(4/3)/sqrt(2)), b unchanged
    assert row["smd_after"] == pytest.approx(np.median([0.0, 5 / np.sqrt(2)]))
