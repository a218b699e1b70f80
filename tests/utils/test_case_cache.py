"""The per-patient array cache (complete cases only, stale arrays dropped, clear error when absent) and the one
cache key of the project."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from osteomet.errors import MissingInputError
from osteomet.utils.case_cache import CaseCache, cache_key


def test_write_load_and_key(tmp_path: Path) -> None:
    cache = CaseCache(tmp_path, "record.json")
    assert not cache.is_current("P1", "k1")
    cache.write("P1", {"image": np.arange(6, dtype=np.float32).reshape(2, 3), "mask": np.ones(3, np.uint8)},
                {"spacing": [1, 1, 3]}, "k1")
    assert cache.is_current("P1", "k1") and not cache.is_current("P1", "k2")
    arrays, record = cache.load("P1")
    assert record == {"spacing": [1, 1, 3], "cache_key": "k1"}
    np.testing.assert_array_equal(arrays["image"], np.arange(6).reshape(2, 3))
    assert isinstance(arrays["image"], np.memmap)
    cache.write("P1", {"image": np.zeros(2, np.float32)}, {}, "k2")  # the new version has no mask
    arrays, _ = cache.load("P1", mmap=False)
    assert set(arrays) == {"image"} and not cache.has_array("P1", "mask")


def test_a_case_without_record_is_not_cached(tmp_path: Path) -> None:
    cache = CaseCache(tmp_path, "record.json")
    cache.write("P1", {"image": np.zeros(2)}, {}, "k")
    (cache.folder("P1") / "record.json").unlink()  # a run killed before the record was written
    assert not cache.is_current("P1", "k")
    with pytest.raises(MissingInputError, match="patient 'P1' is not in the cache"):
        cache.load("P1")


def test_cache_key_covers_contents_series_settings_and_version(tmp_path: Path) -> None:
    image, mask = tmp_path / "image.nii.gz", tmp_path / "mask.nii.gz"
    image.write_bytes(b"image")
    mask.write_bytes(b"mask")
    base = cache_key([("ct", image, None), ("mask", mask, None)], "settings", "v1")
    moved = tmp_path / "moved" / "renamed.nii.gz"
    moved.parent.mkdir()
    moved.write_bytes(b"image")
    assert cache_key([("ct", moved, None), ("mask", mask, None)], "settings", "v1") == base  # content, not name
    changed = [
        cache_key([("ct", image, "1.2.3"), ("mask", mask, None)], "settings", "v1"),  # another series of the folder
        cache_key([("ct", image, None), ("mask", None, None)], "settings", "v1"),  # no mask
        cache_key([("ct", image, None), ("mask", mask, None)], "other settings", "v1"),
        cache_key([("ct", image, None), ("mask", mask, None)], "settings", "v2"),
        cache_key([("mask", mask, None), ("ct", image, None)], "settings", "v1"),  # roles are part of the key
    ]
    assert len({base, *changed}) == 6
    mask.write_bytes(b"edited mask")
    assert cache_key([("ct", image, None), ("mask", mask, None)], "settings", "v1") != base
