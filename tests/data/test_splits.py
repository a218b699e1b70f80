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


def test_split_command_writes_a_new_manifest_and_refuses_leaks(mri_cohort, tmp_path):

    from typer.testing import CliRunner

    from osteomet.cli.main import app
    from osteomet.data.manifest import read_manifest

    source = pd.read_csv(mri_cohort).drop(columns="split").assign(site_note="kept")
    for column in ("t2", "dwi", "adc", "mask"):
        source[column] = [str(mri_cohort.parent / p) for p in source[column]]
    plain = tmp_path / "plain.csv"
    source.to_csv(plain, index=False)
    out = tmp_path / "sub" / "split.csv"
    runner = CliRunner()
    result = runner.invoke(app, ["split", "-m", str(plain), "--external-centre", "C2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    cohort = read_manifest(out)  # paths still resolve from the new folder
    frame = cohort.to_frame()
    assert (frame.loc[frame["centre"] == "C2", "split"] == "external").all()
    assert set(frame.loc[frame["centre"] == "C1", "split"]) <= {"train", "val", "test"}
    assert pd.read_csv(out)["site_note"].eq("kept").all()
    again = runner.invoke(app, ["split", "-m", str(out), "-o", str(tmp_path / "again.csv")])
    assert again.exit_code == 2 and "already has a split" in again.output
    same = runner.invoke(app, ["split", "-m", str(plain), "-o", str(plain)])
    assert same.exit_code == 2 and "overwrite an input" in " ".join(same.output.split())
    unknown = runner.invoke(app, ["split", "-m", str(plain), "--external-centre", "C9", "-o", str(tmp_path / "u.csv")])
    assert unknown.exit_code == 2 and "C9" in unknown.output



def test_the_same_image_in_two_cohorts_is_a_leak(mri_cohort, tmp_path):
    import shutil

    from osteomet.data.splits import check_no_leakage
    from osteomet.errors import LeakageError

    frame = pd.read_csv(mri_cohort)
    for column in ("t2", "dwi", "adc"):
        frame[column] = [str(mri_cohort.parent / p) for p in frame[column]]
    check_no_leakage(frame, kind="mri")  # the synthetic cohort itself is clean
    twin = tmp_path / "renamed_copy.nii.gz"
    shutil.copy(frame.loc[0, "t2"], twin)
    other = frame.index[frame["split"] != frame.loc[0, "split"]][0]
    frame.loc[other, "t2"] = str(twin)  # another cohort's patient gets the same T2, renamed
    with pytest.raises(LeakageError, match=r"identical t2 files"):
        check_no_leakage(frame, kind="mri")
    frame.loc[other, "t2"] = frame.loc[0, "t2"]
    frame.loc[other, "patient_id"] = frame.loc[0, "patient_id"]
    with pytest.raises(LeakageError, match="appear more than once"):
        check_no_leakage(frame, kind="mri")


def test_a_patient_in_two_splits_is_refused_naming_the_patient() -> None:
    """The one leakage check: a slice index (many rows per patient) may repeat a patient only within one split."""
    from osteomet.data.splits import SplitLeakageError, check_no_leakage

    table = pd.DataFrame({"patient_id": ["A", "A", "B", "B", "C"], "slice": [0, 1, 0, 1, 0],
                          "split": ["train", "train", "train", "test", "val"]})
    with pytest.raises(SplitLeakageError, match=r"1 patient\(s\) appear in more than one split: B \(test/train\)"):
        check_no_leakage(table)
    check_no_leakage(table[table["patient_id"] != "B"])  # clean table passes
    with pytest.raises(SplitLeakageError, match="A"):  # a missing split counts as another split
        check_no_leakage(table.assign(split=["train", None, "train", "train", "val"]))
