"""Load one manifest patient as images on a common grid.

bpMRI: DWI and ADC are resampled onto the T2 grid in physical space (linear
interpolation, 0 outside their field of view); the tumour mask must already be on the T2
grid, since a mask drawn on T2 that does not match it points at a wrong file (header
round-off below a quarter voxel is accepted and the T2 header copied, see
``osteomet.data.geometry.GEOMETRY_TOLERANCE_VOXELS``). The mask's integer labels are kept beside
the 0/1 mask (PI-CAI masks carry each lesion's ISUP grade), for choosing the index lesion.
A DICOM folder with several series is read with the record's ``<image>_series_uid``.
Errors are re-raised with the patient id in front, so a cohort-wide run says who failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from osteomet.data.geometry import MIN_OVERLAP, Geometry, resample_to
from osteomet.data.image_errors import ImageError
from osteomet.data.images import read_image
from osteomet.data.label_masks import read_label_map, read_lesion_labels, read_mask
from osteomet.data.manifest import CTRecord, MRIRecord

#: A CT in Hounsfield units always contains air (about -1000 HU) somewhere in the field of view.
MIN_AIR_HU = -500.0


class CaseError(ImageError):
    """A patient's files could not be loaded together; the message starts with the patient id."""


class CTIntensityError(ImageError):
    """The CT's values do not look like Hounsfield units (the message names the file)."""


def check_hounsfield(image: sitk.Image, path: str | Path) -> None:
    """Raise :class:`CTIntensityError` when ``image`` cannot be a CT in HU (normalised or raw stored values)."""
    array = sitk.GetArrayViewFromImage(image)
    lo, hi = float(array.min()), float(array.max())
    if lo >= 0.0 and hi <= 1.0:
        raise CTIntensityError(f"{path}: CT values all lie in [0, 1] (min {lo:g}, max {hi:g}): the image looks "
                               "normalised; give the CT in Hounsfield units")
    if lo > MIN_AIR_HU:
        raise CTIntensityError(
            f"{path}: CT is not in Hounsfield units: minimum {lo:g} (max {hi:g}) has no air value below "
            f"{MIN_AIR_HU:g} HU; raw stored values (e.g. 0..4095) need the DICOM rescale slope/intercept applied")


@dataclass
class MRICase:
    patient_id: str
    t2: sitk.Image
    dwi: sitk.Image  # on the T2 grid
    adc: sitk.Image  # on the T2 grid
    mask: sitk.Image | None  # 0/1
    mask_labels: sitk.Image | None = None  # the mask's own integer labels (0 = background), same grid


@dataclass
class CTCase:
    patient_id: str
    ct: sitk.Image
    lesion_mask: sitk.Image | None
    bone_map: sitk.Image | None


def load_mri_case(record: MRIRecord, *, require_mask: bool = False) -> MRICase:
    try:
        t2 = read_image(record.t2, pixel_type=sitk.sitkFloat32, series_uid=record.t2_series_uid)
        dwi = resample_to(read_image(record.dwi, pixel_type=sitk.sitkFloat32, series_uid=record.dwi_series_uid),
                          Geometry.of(t2), min_overlap=MIN_OVERLAP, name=record.dwi, reference_name=record.t2)
        adc = resample_to(read_image(record.adc, pixel_type=sitk.sitkFloat32, series_uid=record.adc_series_uid),
                          Geometry.of(t2), min_overlap=MIN_OVERLAP, name=record.adc, reference_name=record.t2)
        if record.mask is None:
            if require_mask:
                raise CaseError("no tumour mask in the manifest, but this step needs one")
            mask = labels = None
        else:
            labels = read_lesion_labels(record.mask, reference=t2, reference_name=record.t2)
            mask = sitk.Cast(labels > 0, sitk.sitkUInt8)
    except ImageError as exc:
        raise CaseError(f"patient {record.patient_id!r}: {exc}") from exc
    return MRICase(record.patient_id, t2, dwi, adc, mask, labels)


def load_ct_case(record: CTRecord, *, require_mask: bool = False) -> CTCase:
    try:
        ct = read_image(record.ct, pixel_type=sitk.sitkFloat32, series_uid=record.ct_series_uid)
        check_hounsfield(ct, record.ct)
        if record.lesion_mask is None and require_mask:
            raise CaseError("no lesion mask in the manifest, but this step needs one")
        lesions = (read_mask(record.lesion_mask, reference=ct, reference_name=record.ct, allow_empty=True)
                   if record.lesion_mask is not None else None)
        bones = (read_label_map(record.bone_map, reference=ct, reference_name=record.ct)
                 if record.bone_map is not None else None)
    except ImageError as exc:
        raise CaseError(f"patient {record.patient_id!r}: {exc}") from exc
    return CTCase(record.patient_id, ct, lesions, bones)
