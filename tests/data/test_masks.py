"""One rule for every stage: reviewed mask, else auto mask, else the manifest's own mask."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from osteomet.data.label_masks import MaskError
from osteomet.data.manifest import Manifest, ManifestError, read_manifest
from osteomet.data.masks import (
    apply_masks,
    auto_mask_path,
    check_patient_id,
    effective_mask,
    mask_sources,
    reviewed_mask_path,
)
from osteomet.utils.files import write_json_atomic


@pytest.fixture()
def cohort(mri_cohort: Path) -> Manifest:
    manifest = read_manifest(mri_cohort)
    return Manifest(kind=manifest.kind, records=manifest.records[:3], path=manifest.path)


def test_precedence_reviewed_then_auto_then_manifest(cohort: Manifest, tmp_path: Path):
    segdir = tmp_path / "seg"
    reviewed_pid, auto_pid, plain_pid = cohort.patient_ids
    for pid in (reviewed_pid, auto_pid):
        auto_mask_path(segdir, pid).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(cohort.get(pid).mask, auto_mask_path(segdir, pid))
    reviewed_mask_path(segdir, reviewed_pid).parent.mkdir(parents=True)
    shutil.copy(cohort.get(reviewed_pid).mask, reviewed_mask_path(segdir, reviewed_pid))

    assert effective_mask(reviewed_pid, segdir) == (reviewed_mask_path(segdir, reviewed_pid), "reviewed")
    assert effective_mask(auto_pid, segdir) == (auto_mask_path(segdir, auto_pid), "auto")
    assert effective_mask(plain_pid, segdir, fallback=cohort.get(plain_pid).mask) == (cohort.get(plain_pid).mask, "manifest")
    assert effective_mask(plain_pid, segdir) == (None, "none")

    updated = apply_masks(cohort, segdir)
    assert [r.mask for r in updated] == [reviewed_mask_path(segdir, reviewed_pid), auto_mask_path(segdir, auto_pid),
                                         cohort.get(plain_pid).mask]
    assert [r.mask for r in cohort][0] == cohort.get(reviewed_pid).mask  # the input manifest is not modified
    assert "1 reviewed, 1 auto, 1 manifest" in updated.warnings[-1]
    table = mask_sources(cohort, segdir)
    assert list(table["source"]) == ["reviewed", "auto", "manifest"]
    assert not table.loc[0, "in_provenance"]  # a reviewed file nobody imported is flagged


def test_a_reviewed_mask_replaced_by_hand_is_refused(cohort: Manifest, tmp_path: Path):
    segdir = tmp_path / "seg"
    pid = cohort.patient_ids[0]
    reviewed_mask_path(segdir, pid).parent.mkdir(parents=True)
    shutil.copy(cohort.get(pid).mask, reviewed_mask_path(segdir, pid))
    write_json_atomic(segdir / "provenance.json", {"version": 1, "patients": {pid: {"source": "reviewed",
                                                                                     "reviewed_sha256": "0" * 64}}})
    with pytest.raises(MaskError, match=f"patient {pid!r}.*changed after it was imported"):
        effective_mask(pid, segdir)
    with pytest.raises(ManifestError, match=pid):
        apply_masks(cohort, segdir)
    assert effective_mask(pid, segdir, verify=False)[1] == "reviewed"


@pytest.mark.parametrize("bad", ["", "../escape", "a/b", ".hidden", " padded"])
def test_patient_ids_that_are_not_safe_file_names_are_refused(bad: str):
    with pytest.raises(ValueError, match="file name"):
        check_patient_id(bad)
