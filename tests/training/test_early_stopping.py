"""Early stopping: first best kept, patience, NaN never best, the smoothed rule with a start epoch, exact restore."""

from __future__ import annotations

import math

import pytest

from osteomet.training.early_stopping import EarlyStopping, smooth


def test_early_stopping_keeps_the_first_best_and_stops_after_patience() -> None:
    scores = [0.5, 0.7, 0.7, 0.6, 0.8, 0.9]
    stopper, run, new_best = EarlyStopping(patience=2), [], []
    for epoch in stopper.epochs(0, len(scores)):
        run.append(epoch)
        new_best.append(stopper.update(scores[epoch], epoch))
    # by hand: best 0.7 at epoch 1 (the tie at 2 does not replace it), epochs 2 and 3 not better -> stop before 4
    assert run == [0, 1, 2, 3] and new_best == [True, True, False, False]
    assert (stopper.best, stopper.best_epoch, stopper.bad_epochs) == (0.7, 1, 2)
    assert stopper.exhausted and stopper.stopped_early


def test_patience_used_up_on_the_last_epoch_is_exhausted_but_not_stopped_early() -> None:
    stopper = EarlyStopping(patience=1)
    for epoch in stopper.epochs(0, 2):
        stopper.update([0.4, float("nan")][epoch], epoch)  # NaN is never a better score
    assert stopper.exhausted and not stopper.stopped_early
    assert stopper.best == 0.4 and stopper.best_epoch == 0


def test_resumed_stopper_continues_where_it_was() -> None:
    stopper = EarlyStopping(patience=3, best=0.6, best_epoch=2, bad_epochs=2)
    assert list(stopper.epochs(5, 10))[:1] == [5]
    fresh = EarlyStopping(patience=3, best=0.6, best_epoch=2, bad_epochs=3)
    assert list(fresh.epochs(5, 10)) == [] and fresh.stopped_early
    assert EarlyStopping(patience=1).best == -math.inf


def test_smoothing_by_hand() -> None:
    assert smooth(math.nan, 0.5, 0.8) == 0.5  # starts at the first score
    assert smooth(0.5, 1.0, 0.8) == pytest.approx(0.6)
    assert smooth(0.6, 0.0, 0.8) == pytest.approx(0.48)
    assert smooth(0.6, 0.9, 0.0) == 0.9  # no smoothing: the epoch's own score


def test_smoothed_selection_against_a_hand_computed_sequence() -> None:
    """Weight 0.5, selection from epoch 2: an early spike (epoch 1) is neither kept nor counted."""
    scores = [0.4, 1.0, 0.6, 0.8, 0.5, 0.5]
    # by hand: smoothed 0.4, 0.7, 0.65, 0.725, 0.6125, 0.55625; from epoch 2: best 0.65 (2), 0.725 (3), then 2 worse
    expected_smoothed = [0.4, 0.7, 0.65, 0.725, 0.6125, 0.55625]
    stopper = EarlyStopping(patience=2, smoothing=0.5, min_epochs=2)
    smoothed, new_best = [], []
    for epoch in stopper.epochs(0, len(scores)):
        new_best.append(stopper.update(scores[epoch], epoch))
        smoothed.append(stopper.smoothed)
    assert smoothed == pytest.approx(expected_smoothed)
    assert new_best == [False, False, True, True, False, False]
    assert stopper.best == pytest.approx(0.725) and stopper.best_epoch == 3 and stopper.bad_epochs == 2
    # the unsmoothed rule would have kept the spike
    plain = EarlyStopping(patience=2)
    for epoch in plain.epochs(0, len(scores)):
        plain.update(scores[epoch], epoch)
    assert plain.best_epoch == 1


def test_state_round_trip_continues_the_same_sequence() -> None:
    scores = [0.3, 0.5, 0.45, 0.6, 0.2, 0.7]
    whole = EarlyStopping(patience=5, smoothing=0.3, min_epochs=1)
    for epoch, score in enumerate(scores):
        whole.update(score, epoch)
    first = EarlyStopping(patience=5, smoothing=0.3, min_epochs=1)
    for epoch, score in enumerate(scores[:3]):
        first.update(score, epoch)
    resumed = EarlyStopping(patience=5, smoothing=0.3, min_epochs=1)
    resumed.restore(first.state())
    for epoch, score in enumerate(scores[3:], start=3):
        resumed.update(score, epoch)
    assert resumed.state() == whole.state()
