"""Mask QC decisions, the study cohort and the patient flow, on planted automatic masks (no training)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import SimpleITK as sitk

from osteomet.pipeline.cohort import decide


def test_each_mode_decides_for_a_flagged_mask_and_a_reviewed_mask_always_wins():
    assert decide(False, False, True, "review") == "use"
    assert decide(True, True, False, "exclude") == "reviewed"
    assert decide(True, False, True, "review") == "review"
    assert decide(True, False, True, "manifest") == "manifest"
    assert decide(True, False, False, "manifest") == "exclude"  # no mask of the manifest's to fall back on
    assert decide(True, False, True, "exclude") == "exclude"


@pytest.fixture()
def planted(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A 12-patient cohort, a segmentation folder of true masks, and an empty automatic mask for two patients
    (one of them without a mask in the manifest)."""
    from osteomet.data.synth.mri import generate_mri_cohort

    manifest = generate_mri_cohort(tmp_path / "cohort", 12, seed=7)
    frame = pd.read_csv(manifest, dtype={"patient_id": str})
    segdir = tmp_path / "masks"
    (segdir / "auto").mkdir(parents=True)
    for row in frame.itertuples():
        mask = sitk.ReadImage(str(manifest.parent / row.mask))
        if row.Index < 2:
            mask = mask * 0
        sitk.WriteImage(sitk.Cast(mask > 0, sitk.sitkUInt8), str(segdir / "auto" / f"{row.patient_id}.nii.gz"))
    frame.loc[1, "mask"] = ""
    frame.to_csv(manifest, index=False)
    return manifest, segdir, frame["patient_id"].tolist()[:2]


def test_manifest_mode_falls_back_on_the_manifest_mask_and_excludes_a_patient_without_one(planted, tmp_path):
    from osteomet.data.manifest import read_manifest
    from osteomet.data.masks import mask_sources
    from osteomet.mri.segmentation.qc import MaskQCSettings
    from osteomet.pipeline.cohort import qc_masks, study_cohort

    manifest, segdir, (with_mask, without_mask) = planted
    _, qc = qc_masks(manifest, segdir, MaskQCSettings(), on_flagged="manifest")
    actions = qc.set_index("patient_id")["action"]
    assert actions[with_mask] == "manifest" and actions[without_mask] == "exclude"
    assert (actions.drop([with_mask, without_mask]) == "use").all()
    sources = mask_sources(read_manifest(manifest), segdir).set_index("patient_id")
    assert sources.loc[with_mask, "source"] == "manifest"
    assert sources.loc[with_mask, "mask"] == str(read_manifest(manifest).get(with_mask).mask)
    assert sources.loc[without_mask, "source"] == "excluded" and pd.isna(sources.loc[without_mask, "mask"])
    assert (sources.drop([with_mask, without_mask])["source"] == "auto").all()
    _, excluded = study_cohort(manifest, tmp_path / "cohort_stage", segdir / "qc" / "qc.csv")
    assert excluded["patient_id"].tolist() == [without_mask]
    assert excluded["reason"].iloc[0].startswith("automatic mask flagged: empty")
    # the same QC, changed to exclude: the stage reruns (its settings changed) and both go
    _, qc = qc_masks(manifest, segdir, MaskQCSettings(), on_flagged="exclude")
    assert set(qc.loc[qc["action"] == "exclude", "patient_id"]) == {with_mask, without_mask}


def test_an_exclusion_that_leaves_a_split_with_one_class_is_refused_naming_it(planted, tmp_path):
    from osteomet.errors import InputError
    from osteomet.mri.segmentation.qc import MaskQCSettings
    from osteomet.pipeline.cohort import qc_masks, study_cohort

    manifest, segdir, _ = planted
    frame = pd.read_csv(manifest, dtype={"patient_id": str})
    val = frame[frame["split"] == "val"]
    for pid in val.loc[val["label"] == val["label"].iloc[0], "patient_id"]:  # flag one class of val entirely
        path = segdir / "auto" / f"{pid}.nii.gz"
        image = sitk.ReadImage(str(path))
        sitk.WriteImage(sitk.Cast(image * 0, sitk.sitkUInt8), str(path))
    qc_masks(manifest, segdir, MaskQCSettings(), on_flagged="exclude")
    with pytest.raises(InputError, match=r"mask QC excluded.*split 'val' holds only label.*on_flagged: review"):
        study_cohort(manifest, tmp_path / "cohort_stage", segdir / "qc" / "qc.csv")
    assert not (tmp_path / "cohort_stage").exists()


def test_the_flow_figure_and_counts_add_up():
    from osteomet.pipeline.cohort import flow_counts

    flow = pd.DataFrame({"patient_id": list("ABCDEF"), "split": ["train"] * 3 + ["test"] * 3,
                         "centre": ["C1"] * 6, "label": [0, 1, 1, 0, 1, 0],
                         "excluded": [False, False, True, False, False, False],
                         "excluded_reason": [None, None, "automatic mask flagged: empty: the network found no tumour",
                                             None, None, None],
                         "scored_a": [True, True, False, True, True, False],
                         "scored_b": [True, True, False, True, True, True]})
    flow["evaluated"] = flow[["scored_a", "scored_b"]].all(axis=1)
    counts = flow_counts(flow, ["a", "b"], "common")
    assert counts["manifest"] == 6 and counts["excluded"] == 1 and counts["evaluated"] == 4
    assert counts["excluded_reasons"] == {"automatic mask flagged: empty": 1}
    assert counts["splits"]["test"] == {"patients": 3, "excluded": 0, "centres": {"C1": 3}, "scored": {"a": 2, "b": 3},
                                        "evaluated": 2, "evaluated_with_bm": 1, "not_evaluated": 1}


def test_export_review_flagged_exports_exactly_the_flagged_patients(planted, tmp_path):
    from typer.testing import CliRunner

    from osteomet.cli.main import app
    from osteomet.mri.segmentation.qc import MaskQCSettings
    from osteomet.pipeline.cohort import qc_masks

    manifest, segdir, flagged = planted
    runner = CliRunner()
    refused = runner.invoke(app, ["segment", "export-review", "-m", str(manifest), "-s", str(segdir), "--flagged"])
    assert refused.exit_code == 2 and "no mask QC" in refused.output
    qc_masks(manifest, segdir, MaskQCSettings(), on_flagged="review")
    result = runner.invoke(app, ["segment", "export-review", "-m", str(manifest), "-s", str(segdir), "--flagged",
                                 "-o", str(tmp_path / "review")])
    assert result.exit_code == 0, result.output
    sheet = pd.read_csv(tmp_path / "review" / "review_sheet.csv", dtype={"patient_id": str})
    assert sorted(sheet["patient_id"]) == sorted(flagged)
