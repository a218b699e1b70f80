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
