import pandas as pd
import pytest

from osteomet.data.splits import assign_splits


def _cohort(n_c1: int, n_c2: int, prevalence: float = 0.3) -> pd.DataFrame:
    rows = []
    for i in range(n_c1 + n_c2):
        centre = "C1" if i < n_c1 else "C2"
        rows.append({"patient_id": f"P{i}", "centre": centre, "label": int((i % 10) < prevalence * 10)})
    return pd.DataFrame(rows)


def test_ratios_per_class_and_external_centre():
    frame = _cohort(300, 90)
    splits = assign_splits(frame, ratios=(0.6, 0.1, 0.3), seed=1, external_centres=("C2",))
    assert (splits[frame.centre == "C2"] == "external").all()
    internal = frame[frame.centre == "C1"].assign(split=splits)
    counts = internal.groupby(["label", "split"]).size().unstack()
    for label, n in internal.label.value_counts().items():
        assert counts.loc[label, "train"] == pytest.approx(0.6 * n, abs=1)
        assert counts.loc[label, "val"] == pytest.approx(0.1 * n, abs=1)
        assert counts.loc[label, "test"] == pytest.approx(0.3 * n, abs=1)


def test_deterministic_for_a_seed_and_changes_with_it():
    frame = _cohort(50, 0)
    assert assign_splits(frame, seed=4).equals(assign_splits(frame, seed=4))
    assert not assign_splits(frame, seed=4).equals(assign_splits(frame, seed=5))


def test_a_patient_twice_is_refused():
    frame = pd.concat([_cohort(5, 0), _cohort(1, 0)])
    with pytest.raises(ValueError, match="more than once.*P0"):
        assign_splits(frame)
