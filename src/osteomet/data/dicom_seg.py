"""DICOM SEG of a predicted mask, referencing the DICOM series it was drawn on (highdicom).

A mask osteomet predicts lies on the grid of the series it read, so each of its slices is one
source image: the slice is found by the image's position along the series normal (not by file
order), and the SEG's frames reference those SOP instances. A PACS viewer, OHIF or 3D Slicer
then shows the segmentation on the original images. Only slices that hold the mask become frames
(``omit_empty_frames``), as highdicom writes them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from osteomet import __version__
from osteomet.data.image_errors import ImageReadError

PathLike = str | os.PathLike[str]


class DicomSegUnavailable(ImageReadError):
    """The source series cannot be referenced by a DICOM SEG (missing UIDs, not DICOM)."""


def source_datasets(folder: PathLike, series_uid: str | None = None) -> list:
    """The series' datasets (pixel data included, highdicom needs it) in the order of the mask's slices."""
    import pydicom

    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    uid = series_uid or (series[0] if len(series) == 1 else None)
    if uid is None:
        raise ImageReadError(f"{folder}: {len(series)} DICOM series in one folder; name the series the mask was drawn on")
    files = reader.GetGDCMSeriesFileNames(str(folder), uid)
    datasets = [pydicom.dcmread(f) for f in files]
    for dataset in datasets:
        if not dataset.get("SOPClassUID") and dataset.file_meta.get("MediaStorageSOPClassUID"):
            dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID  # in memory only: the files stay as given
    lacking = [k for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
               if not all(d.get(k) for d in datasets)]
    if lacking:
        raise DicomSegUnavailable(f"{folder}: the DICOM files have no {', '.join(lacking)} (anonymised without UIDs?), "
                                  f"so a DICOM SEG could not point a viewer at its images; no SEG was written (the "
                                  f"NIfTI mask is there)")
    normal = np.cross(*np.asarray(datasets[0].ImageOrientationPatient, dtype=float).reshape(2, 3))
    return sorted(datasets, key=lambda d: float(np.dot(normal, np.asarray(d.ImagePositionPatient, dtype=float))))


def write_dicom_seg(mask: sitk.Image, source: PathLike, out: PathLike, *, label: str, series_uid: str | None = None,
                    category: str = "tissue", algorithm: str = "osteomet") -> Path:
    """Write ``mask`` (on the grid of the DICOM series in ``source``) as a binary DICOM SEG referencing it."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    datasets = source_datasets(source, series_uid)
    array = sitk.GetArrayFromImage(mask) > 0  # z, y, x in the mask's slice order
    frames = np.zeros((len(datasets), *array.shape[1:]), dtype=bool)
    for index, dataset in enumerate(datasets):
        position = [float(v) for v in dataset.ImagePositionPatient]
        z = mask.TransformPhysicalPointToIndex(position)[2]
        if not 0 <= z < array.shape[0] or (int(dataset.Rows), int(dataset.Columns)) != array.shape[1:]:
            raise ImageReadError(f"{source}: the mask ({mask.GetSize()}) is not on the grid of this DICOM series "
                                 f"(image {dataset.SOPInstanceUID} at {position}); write the mask of the series it "
                                 f"was predicted on")
        frames[index] = array[z]
    property_category = codes.SCT.Tissue if category == "tissue" else codes.SCT.MorphologicallyAbnormalStructure
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=label, segmented_property_category=property_category,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(name=algorithm, version=__version__,
                                                                    family=codes.cid7162.ArtificialIntelligence))
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=frames.astype(np.uint8), segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=generate_uid(), series_number=900,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="osteomet",
        manufacturer_model_name=algorithm, software_versions=__version__, device_serial_number="none",
        series_description=f"osteomet {label}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from osteomet.utils.files import atomic_path

    with atomic_path(out) as tmp:
        seg.save_as(tmp)
    return out


def seg_beside(mask_path: PathLike, source: PathLike, out: PathLike, *, label: str,
               series_uid: str | None = None) -> tuple[Path | None, str]:
    """A prediction's DICOM SEG when its source is a referenceable DICOM series: (path, note); (None, why not)."""
    import warnings

    from osteomet.data.images import image_format

    kind = image_format(source)
    if kind not in ("dicom", "dicom-file"):
        return None, f"no DICOM SEG: {source} is not a DICOM series (the mask is in NIfTI)"
    folder = Path(source) if kind == "dicom" else Path(source).parent
    mask = sitk.ReadImage(str(mask_path))
    if not sitk.GetArrayViewFromImage(mask).any():
        return None, "no DICOM SEG: the mask is empty"
    try:
        with warnings.catch_warnings():  # highdicom's advice on the source's patient-name format
            warnings.simplefilter("ignore", UserWarning)
            path = write_dicom_seg(mask, folder, out, label=label, series_uid=series_uid)
    except DicomSegUnavailable as exc:
        return None, f"no DICOM SEG: {exc}"
    return path, f"DICOM SEG referencing {folder}"
