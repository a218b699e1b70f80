"""Mondrian split-conformal sets: per-class coverage on a large synthetic cohort, crepes' sets, too few patients."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from osteomet.errors import InputError
from osteomet.models.conformal import (
    ConformalError,
    MondrianConformal,
    class_probabilities,
    describe_set,
    min_calibration,
    set_coverage,
    verdict,
)


def _cohort(n: int, seed: int, intercept: float = -1.4, slope: float = 1.2) -> tuple[np.ndarray, np.ndarray]:
    """Patients from a known logistic model: the model's probability and a label drawn from it (~25% with BM)."""
    rng = np.random.default_rng(seed)
    prob = 1 / (1 + np.exp(-(intercept + slope * rng.normal(size=n))))
    return prob, (rng.random(n) < prob).astype(int)


def _expected_coverage(n: int, alpha: float) -> float:
    """Exact coverage of the non-smoothed set (p >= alpha) for a continuous score: the kept ranks out of n + 1."""
    return (n + 2 - math.ceil(alpha * (n + 1))) / (n + 1)


class _Fixed:
    """A 'learner' that returns the probabilities it is given, so crepes' WrapClassifier conformalizes them."""

    classes_ = np.array([0, 1])

    def fit(self, X, y) -> "_Fixed":
        return self

    def predict_proba(self, X) -> np.ndarray:
        return class_probabilities(np.asarray(X)[:, 0])


def _crepes_class_conditional(prob: np.ndarray, label: np.ndarray):
    from crepes import WrapClassifier

    wrapped = WrapClassifier(_Fixed())
    wrapped.fitted = wrapped.fitted_ = True  # nothing to fit: the probabilities are the model
    return wrapped.calibrate(prob[:, None], label, class_cond=True)


@pytest.mark.parametrize("alpha", [0.1, 0.05])
def test_each_class_is_covered_at_the_nominal_rate_within_binomial_error(alpha: float):
    """5,000 patients, half calibration, half test: per class, coverage within 3 SD of 1 - alpha (both the test
    draw's binomial error and the calibration draw's; Vovk 2012), never materially below it."""
    prob, label = _cohort(5000, seed=11)
    calibration, test = slice(0, 2500), slice(2500, None)
    fitted = MondrianConformal.fit(prob[calibration], label[calibration], alpha)
    sets = fitted.sets(prob[test])
    rows = {r["class"]: r for r in set_coverage(sets, label[test])}
    for c, name in enumerate(("no BM", "BM")):
        n_cal, n_test = fitted.counts[c], rows[name]["n"]
        assert n_cal > 400 and n_test > 400  # both classes well represented (BM ~25%)
        sd = math.sqrt(alpha * (1 - alpha) * (1 / n_test + 1 / (n_cal + 2)))
        coverage = rows[name]["coverage"]
        assert abs(coverage - _expected_coverage(n_cal, alpha)) < 3 * sd, (name, coverage)
        assert coverage > 1 - alpha - 3 * sd, (name, coverage)
        assert coverage == pytest.approx(sets[label[test] == c, c].mean())
        assert rows[name]["ci_low"] < coverage < rows[name]["ci_high"]
    # over many calibration/test draws the mean coverage is the exact expected one, to its standard error
    rng = np.random.default_rng(3)
    covered = {0: [], 1: []}
    for _ in range(200):
        order = rng.permutation(prob.size)
        cal, held = order[:2500], order[2500:]
        draw = MondrianConformal.fit(prob[cal], label[cal], alpha)
        in_set = draw.sets(prob[held])
        for c in (0, 1):
            mine = label[held] == c
            covered[c].append((in_set[mine, c].mean(), _expected_coverage(draw.counts[c], alpha)))
    for c in (0, 1):
        observed, expected = np.array(covered[c]).T
        se = observed.std() / math.sqrt(len(observed))
        assert abs(observed.mean() - expected.mean()) < 4 * se, c
        assert observed.mean() > 1 - alpha - 4 * se, c


def test_a_pooled_calibration_under_covers_the_rarer_class_where_mondrian_does_not():
    """Why class-conditional: crepes' standard (pooled) conformal classifier keeps its promise only on average; with
    20% BM and a weak model it leaves most BM patients' class out, the Mondrian sets do not."""
    from crepes import ConformalClassifier
    from crepes.extras import hinge

    prob, label = _cohort(5000, seed=1, intercept=-1.6, slope=1.0)
    cal, test = slice(0, 2500), slice(2500, None)
    classes = np.array([0, 1])
    pooled = ConformalClassifier().fit(hinge(class_probabilities(prob[cal]), classes, label[cal]))
    pooled_sets = pooled.predict_set(hinge(class_probabilities(prob[test])), confidence=0.9, smoothing=False)
    mondrian = MondrianConformal.fit(prob[cal], label[cal], 0.1).sets(prob[test])
    bm = label[test] == 1
    assert pooled_sets[bm, 1].mean() < 0.8 < 0.88 < mondrian[bm, 1].mean()
    assert pooled_sets[~bm, 0].mean() > 0.95  # the pooled guarantee is spent on the common class


@pytest.mark.parametrize("ties", [False, True])
def test_p_values_and_sets_equal_crepes_class_conditional_classifier(ties: bool):
    """crepes' WrapClassifier.calibrate(class_cond=True), non-smoothed, is the reference: same p-values, same sets
    at every confidence (crepes' rule p >= 1 - confidence, so alpha = 1 - confidence exactly)."""
    prob, label = _cohort(1500, seed=7)
    if ties:  # probabilities as a table holds them (3 decimals): many ties between calibration and test scores
        prob = np.round(prob, 2)
    wrapped = _crepes_class_conditional(prob[:700], label[:700])
    fitted = MondrianConformal.fit(prob[:700], label[:700], 0.1)
    theirs = wrapped.predict_p(prob[700:, None], smoothing=False)
    np.testing.assert_array_equal(fitted.p_values(prob[700:]), theirs)
    for confidence in (0.8, 0.9, 0.95, 0.99):
        sets = np.asarray(wrapped.predict_set(prob[700:, None], confidence=confidence, smoothing=False, labels=False))
        np.testing.assert_array_equal(fitted.sets(prob[700:], alpha=1 - confidence), sets.astype(bool))
    # the threshold form of the rule (a class is kept when its nonconformity is at most the threshold) agrees
    for alpha in (0.05, 0.1, 0.2):
        kept = fitted.sets(prob[700:], alpha)
        for c, threshold in enumerate(fitted.thresholds(alpha)):
            nonconformity = 1 - class_probabilities(prob[700:])[:, c]
            np.testing.assert_array_equal(kept[:, c], nonconformity <= threshold)


def test_too_few_calibration_patients_of_a_class_are_refused_or_kept_in_every_set(tmp_path: Path):
    """A class can leave a set only when 1/(n + 1) < alpha: 10 patients per class at alpha 0.1, 20 at 0.05."""
    assert [min_calibration(a) for a in (0.1, 0.05, 0.2, 0.25, 0.3)] == [10, 20, 5, 4, 3]
    prob, label = _cohort(400, seed=2)
    bm = np.flatnonzero(label == 1)
    keep = np.concatenate([np.flatnonzero(label == 0)[:50], bm[:9]])  # 9 with BM
    with pytest.raises(ConformalError, match=r"9 with BM.*at least 10 calibration patients per class"):
        MondrianConformal.fit(prob[keep], label[keep], 0.1, source="the study's held-out patients")
    lenient = MondrianConformal.fit(prob[keep], label[keep], 0.1, too_few="uncertain")
    assert lenient.excludable() == (True, False) and lenient.thresholds()[1] is None
    sets = lenient.sets(np.linspace(0, 1, 101))
    assert sets[:, 1].all()  # BM is in every set: its smallest p-value is 1/10, not below 0.1
    assert not sets[:, 0].all()  # no BM, with 50 patients, is left out of some
    assert lenient.p_values(np.array([0.0]))[0, 1] == pytest.approx(1 / 10)
    enough = np.concatenate([keep, bm[9:10]])
    assert MondrianConformal.fit(prob[enough], label[enough], 0.1).excludable() == (True, True)
    # a saved calibration keeps the policy and gives the same p-values
    lenient.save(tmp_path / "conformal.json", model="demo")
    loaded = MondrianConformal.load(tmp_path / "conformal.json")
    assert loaded.too_few == "uncertain" and loaded.counts == (50, 9)
    np.testing.assert_array_equal(loaded.p_values(prob), lenient.p_values(prob))


def test_saved_calibration_round_trips_and_a_damaged_file_is_refused_naming_it(tmp_path: Path):
    prob, label = _cohort(300, seed=4)
    fitted = MondrianConformal.fit(prob, label, 0.2)
    path = fitted.save(tmp_path / "conformal.json", model="fusion")
    loaded = MondrianConformal.load(path)
    assert loaded.alpha == 0.2 and loaded.counts == fitted.counts
    grid = np.linspace(0, 1, 57)
    np.testing.assert_array_equal(loaded.sets(grid), fitted.sets(grid))
    path.write_text(path.read_text(encoding="utf-8")[:-30])
    with pytest.raises(InputError, match=r"conformal\.json: damaged or edited conformal calibration"):
        MondrianConformal.load(path)
    with pytest.raises(InputError, match="strictly between 0 and 1"):
        MondrianConformal.fit(prob, label, 1.5)
    with pytest.raises(InputError, match=r"1 is not \(the first, at position 3, is nan\)"):
        MondrianConformal.fit(np.r_[0.2, 0.3, np.nan], [0, 1, 1])


def test_sets_are_named_and_coverage_counts_uncertain_and_empty_sets():
    assert describe_set([False, True]) == "{BM}" and verdict([False, True]) == "BM"
    assert describe_set([True, True]) == "{no BM, BM}" and verdict([True, True]) == "uncertain"
    assert describe_set([False, False]) == "{}" and verdict([False, False]) == "empty"
    sets = np.array([[True, False], [True, True], [False, False], [False, True]])
    rows = {r["class"]: r for r in set_coverage(sets, [0, 0, 1, 1])}
    assert rows["no BM"]["coverage"] == 1.0 and rows["no BM"]["uncertain"] == 0.5
    assert rows["BM"]["coverage"] == 0.5 and rows["BM"]["empty"] == 0.5
    assert rows["all"]["n"] == 4 and rows["all"]["covered"] == 3
