"""CT test fixtures shared by the detection, segmentation and CLI tests (so test files never import each other).

``easy_lesions``: a synthetic-cohort setting the tiny networks can learn from in a few
epochs. ``real_ct_manifest``: the two real TotalSegmentator CTs (one NIfTI, one DICOM
series) each with a sclerotic lesion inserted in its largest vertebra.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from osteomet.data.geometry import MIN_OVERLAP, Geometry, resample_to
from osteomet.data.images import read_image, write_image
from osteomet.data.manifest import write_manifest
from osteomet.data.synth.ct import CTSynthConfig
from tests.conftest import shared_path


@pytest.fixture(autouse=True)
def one_torch_thread():
    """CT tests train networks in-process (CLI included): one thread keeps them predictable on a shared 2-core
    machine, where two OpenMP threads competing with other jobs run many times slower than one."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def easy_lesions() -> CTSynthConfig:
    """Lesions large and sclerotic enough to be seen on 64 x 64 slices after a few epochs.

    At 7.8 mm pixels the visibility rules (nodules 4 voxels wide, sclerosis not mostly in cortex) would
    leave 31-62 mm nodules in the few bones with marrow, which a 500 HU threshold finds; these tests
    want 20-30 mm nodules in any bone, which a network must learn to tell from the cortex. One patient in
    five is lesion-free and there are no bone islands or osteophytes: these 6-10 patient cohorts test that a
    network learns lesions against cortex in a few epochs (the cohorts' defaults, 40% lesion-free with look-alikes,
    left the UNet at 0.53 Dice, below the 500 HU rule's 0.54); `run ct`'s tests and the clean-scan benchmark use
    the defaults."""
    return CTSynthConfig(region="abdomen_pelvis", inplane_size=64, mean_lesions=5, diffuse_fraction=0.5,
                         lytic_fraction=0.0, focal_diameter_mm=(20.0, 30.0), min_focal_width_voxels=1.0,
                         max_cortex_share=1.0, lesion_free_fraction=0.2, bone_islands_per_patient=0.0,
                         osteophyte_fraction=0.0)


@pytest.fixture
def real_ct_manifest(tmp_path: Path) -> Path:
    """Manifest of the two real TotalSegmentator CTs (NIfTI and DICOM series) with a sclerotic lesion in a vertebra."""
    rows = []
    for pid, ct_path, labels_path in (
        ("TSNIFTI", shared_path("ct", "totalseg_example", "ct.nii.gz"),
         shared_path("ct", "totalseg_example", "bones_totalsegmentator.nii.gz")),
        ("TSDICOM", shared_path("ct", "totalseg_dicom", "ct"),
         shared_path("ct", "totalseg_dicom", "labels_totalsegmentator.nii.gz")),
    ):
        ct = read_image(ct_path)
        bones = resample_to(read_image(labels_path), Geometry.of(ct), interpolator=sitk.sitkNearestNeighbor,
                            min_overlap=MIN_OVERLAP, name=labels_path, reference_name=ct_path)
        with_lesion, mask, _ = insert_sclerotic_lesion(ct, bones)
        if ct_path.is_dir():
            image_path = write_dicom_series(with_lesion, tmp_path / f"{pid}_dicom")
        else:
            image_path = write_image(with_lesion, tmp_path / f"{pid}.nii.gz")
        rows.append({"patient_id": pid, "ct": str(image_path),
                     "lesion_mask": str(write_image(mask, tmp_path / f"{pid}_lesion.nii.gz"))})
    return write_manifest(pd.DataFrame(rows), tmp_path / "real.csv", kind="ct")


def insert_sclerotic_lesion(ct: sitk.Image, bones: sitk.Image, *, radius_mm: float = 9.0, hu: float = 900.0,
                            vertebra_ids: range = range(26, 51)) -> tuple[sitk.Image, sitk.Image, int]:
    """A sclerotic ball (``hu``) inside the largest vertebra of a TotalSegmentator map; returns CT, mask, bone id."""
    labels = sitk.GetArrayFromImage(bones)
    counts = {i: int((labels == i).sum()) for i in vertebra_ids}
    bone_id = max(counts, key=counts.get)
    assert counts[bone_id] > 0, "no vertebra in the label map"
    zyx = np.argwhere(labels == bone_id).mean(axis=0)
    spacing = np.asarray(ct.GetSpacing())[::-1]
    grid = np.indices(labels.shape, dtype=np.float32)
    dist = np.sqrt(sum(((grid[i] - zyx[i]) * spacing[i]) ** 2 for i in range(3)))
    mask = (dist <= radius_mm) & (labels == bone_id)
    array = sitk.GetArrayFromImage(ct).astype(np.int16)
    array[mask] = np.int16(hu)
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(ct)
    lesion = sitk.GetImageFromArray(mask.astype(np.uint8))
    lesion.CopyInformation(ct)
    return out, lesion, bone_id


def write_dicom_series(image: sitk.Image, folder: Path, *, series_uid: str = "1.2.826.0.1.3680043.2.1125.1.99.1",
                       prefix: str = "slice") -> Path:
    """Write an int16 HU volume as a CT DICOM series (one file per slice, rescale 1/0); another ``series_uid`` and
    ``prefix`` add a second series to the same folder."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.Cast(image, sitk.sitkInt16)
    direction = image.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    study_uid = "1.2.826.0.1.3680043.2.1125.1.99.2"
    orientation = "\\".join(f"{v:.6f}" for v in (direction[0], direction[3], direction[6],
                                                   direction[1], direction[4], direction[7]))
    for k in range(image.GetDepth()):
        item = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in (("0008|0060", "CT"), ("0020|000d", study_uid), ("0020|000e", series_uid),
                           ("0008|0018", f"{series_uid}.{k + 1}"), ("0020|0013", str(k + 1)),
                           ("0020|0032", "\\".join(f"{v:.4f}" for v in position)), ("0020|0037", orientation),
                           ("0018|0050", f"{image.GetSpacing()[2]:.4f}"), ("0028|1052", "0"), ("0028|1053", "1")):
            item.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{prefix}{k:04d}.dcm"))
        writer.Execute(item)
    return folder
