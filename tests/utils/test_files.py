from pathlib import Path

import pytest

from osteomet.utils.files import atomic_path, full_suffix, sha256_path, temporary_sibling, write_text_atomic


def test_full_suffix_keeps_compound_extensions():
    assert full_suffix("a/b/ct.nii.gz") == ".nii.gz"
    assert full_suffix("mask.seg.nrrd") == ".seg.nrrd"
    assert full_suffix("t2.mha") == ".mha"


def test_temporary_sibling_is_hidden_and_keeps_format(tmp_path: Path):
    tmp = temporary_sibling(tmp_path / "ct.nii.gz")
    assert tmp.parent == tmp_path and tmp.name.startswith(".ct.tmp-") and tmp.name.endswith(".nii.gz")


def test_failed_write_leaves_neither_target_nor_temporary(tmp_path: Path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_version(tmp_path: Path):
    target = write_text_atomic(tmp_path / "out.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("new but incomplete")
            raise RuntimeError
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_directory_hash_changes_with_content(tmp_path: Path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "1.dcm").write_bytes(b"a")
    first = sha256_path(tmp_path / "s")
    (tmp_path / "s" / "1.dcm").write_bytes(b"b")
    assert sha256_path(tmp_path / "s") != first


def test_a_saved_record_that_is_missing_damaged_or_not_an_object_is_named_with_what_to_do(tmp_path):
    from osteomet.errors import InputError, MissingInputError
    from osteomet.utils.files import read_json_record

    path = tmp_path / "domain.json"
    with pytest.raises(MissingInputError, match="domain.json: no applicability domain$"):
        read_json_record(path, "applicability domain", remedy="rerun it")
    path.write_text('{"margin": 0.1', encoding="utf-8")  # cut short, as an interrupted copy leaves it
    with pytest.raises(InputError, match=r"domain.json: damaged or edited applicability domain \(not JSON: .*\); "
                                         r"rerun it$"):
        read_json_record(path, "applicability domain", remedy="rerun it")
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(RuntimeError, match=r"not a JSON object\); rerun it$"):  # the caller's own error class
        read_json_record(path, "applicability domain", remedy="rerun it", error=RuntimeError)
    path.write_text('{"margin": 0.1}', encoding="utf-8")
    assert read_json_record(path, "applicability domain", remedy="rerun it") == {"margin": 0.1}


def test_json_ready_turns_numpy_and_non_finite_numbers_into_what_json_holds():
    import json

    import numpy as np

    from osteomet.utils.files import json_ready

    value = {"auc": np.float32(0.75), "n": np.int64(3), "ok": np.bool_(True), "ci": (np.nan, np.inf), 2: ["a", -np.inf]}
    ready = json_ready(value)
    assert ready == {"auc": 0.75, "n": 3, "ok": True, "ci": [None, None], "2": ["a", None]}
    assert type(ready["n"]) is int and type(ready["ok"]) is bool
    assert json.loads(json.dumps(ready, allow_nan=False)) == ready  # strict JSON, no NaN/Infinity tokens
