"""ROI crops follow the one mask resolver (reviewed > auto > manifest) and record the source per patient."""

import shutil

import pytest
import SimpleITK as sitk

from osteomet.data.manifest import Manifest, read_manifest
from osteomet.data.masks import apply_masks, auto_mask_path, reviewed_mask_path
from osteomet.errors import InputError
from osteomet.mri.classifier.data import roi_patients
from osteomet.mri.preprocess import PreprocessConfig, preprocess_cohort


def test_sources_are_recorded_and_stale_crops_refused(roi_cohort, tmp_path):
    manifest_path, old_pre = roi_cohort
    full = read_manifest(manifest_path)
    cohort = Manifest(kind="mri", records=full.records[:3], path=full.path)
    a, b, c = cohort.patient_ids
    segdir = tmp_path / "seg"
    for path, source, edit in ((reviewed_mask_path(segdir, a), cohort.records[0].mask, "erode"),
                               (auto_mask_path(segdir, a), cohort.records[1].mask, None),  # loses to the reviewed
                               (auto_mask_path(segdir, b), cohort.records[1].mask, "dilate")):
        path.parent.mkdir(parents=True, exist_ok=True)
        if edit is None:
            shutil.copy(source, path)
            continue
        # a radiologist's edit (and a network's proposal) differ from the manifest's mask by a voxel's rim
        image = sitk.ReadImage(str(source), sitk.sitkUInt8)
        changed = (sitk.BinaryErode if edit == "erode" else sitk.BinaryDilate)(image, [1, 1, 0])
        sitk.WriteImage(changed, str(path))
    pre = tmp_path / "pre"
    preprocess_cohort(apply_masks(cohort, segdir), pre,
                      PreprocessConfig(seg_size=(64, 64, 16), roi_size=(32, 32, 16), roi_spacing=(2.0, 2.0, 4.0)))

    table = roi_patients(pre, cohort, segdir).set_index("patient_id")
    assert table["mask_source"].to_dict() == {a: "reviewed", b: "auto", c: "manifest"}
    assert table.loc[a, "mask"] == str(reviewed_mask_path(segdir, a))
    # without --segdir the source is read off the recorded path
    assert roi_patients(pre, cohort)["mask_source"].tolist() == ["reviewed", "auto", "manifest"]
    # crops cut from the manifest masks before the review was imported are refused, naming the fix
    with pytest.raises(InputError, match=r"2 ROI crop\(s\) were cut from another mask.*--segdir"):
        roi_patients(old_pre, cohort, segdir)
