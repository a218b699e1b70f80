"""The label guard: fitting reads training labels only, selection validation labels only."""

import pandas as pd
import pytest

from osteomet.errors import InputError, LeakageError
from osteomet.mri.classifier.labels import LabelGuard

TABLE = pd.DataFrame({"patient_id": ["a", "b", "c", "d", "e", "f"],
                      "split": ["train", "train", "val", "test", "external", "val"],
                      "label": [0, 1, 1, 0, 1, None]})


@pytest.mark.parametrize("split", ["test", "external", "val"])
def test_fitting_may_not_read_other_labels(split):
    with pytest.raises(LeakageError, match=f"fit step asked for {split} labels"):
        LabelGuard(TABLE).labels(split, "fit")


@pytest.mark.parametrize("split", ["test", "external", "train"])
def test_selection_may_not_read_other_labels(split):
    with pytest.raises(LeakageError, match=f"select step asked for {split} labels"):
        LabelGuard(TABLE).labels(split, "select")


def test_allowed_reads_are_handed_out_and_recorded():
    guard = LabelGuard(TABLE)
    assert guard.labels("train", "fit").to_dict() == {"a": 0, "b": 1}
    assert guard.labels("val", "select", ["c"]).to_dict() == {"c": 1}
    assert guard.labels("test", "report").to_dict() == {"d": 0}
    assert guard.reads == [("train", "fit"), ("val", "select"), ("test", "report")]


def test_a_patient_of_another_split_cannot_be_smuggled_in():
    with pytest.raises(LeakageError, match=r"\['d'\] are not in the train split"):
        LabelGuard(TABLE).labels("train", "fit", ["a", "d"])


def test_missing_labels_are_named():
    with pytest.raises(InputError, match=r"val patient\(s\) \['f'\] have no label"):
        LabelGuard(TABLE).labels("val", "select")
