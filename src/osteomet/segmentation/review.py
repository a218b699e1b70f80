"""The radiologist review loop: UNETR proposals out to 3D Slicer, refined masks back in.

The study's masks are semi-automatic: the UNETR proposes a tumour mask, a radiologist checks
and corrects it in 3D Slicer (or ITK-SNAP), and only then do radiomics and the classifiers
use it. This module is the hand-over in both directions.

* :func:`export_review` writes, per patient, the three sequences on the T2 grid (so they open
  aligned in any viewer) and the proposal as a genuine Slicer segmentation
  (``<patient>_auto.seg.nrrd``), plus a review sheet and a README. Nothing a radiologist may
  have touched (a reviewed file, the sheet, an auto segmentation saved over in Slicer) is
  ever overwritten.
* :func:`import_review` reads the refined files back, checks them against each patient's T2
  grid, stores them as ``SEGDIR/reviewed/<patient>.nii.gz`` next to (never over) the auto
  masks, and records who changed what, when and by how much in ``SEGDIR/provenance.json``.

Which mask a later stage uses is decided only by :mod:`osteomet.segmentation.masks`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import SimpleITK as sitk

from osteomet.data.io import (
    DIRECTION_TOL,
    ORIGIN_TOL,
    SPACING_TOL,
    Geometry,
    GeometryMismatchError,
    ImageError,
    ImageReadError,
    MaskError,
    read_image,
    read_mask,
    write_image,
)
from osteomet.data.manifest import Manifest, ManifestError, MRIRecord
from osteomet.errors import InputError, MissingInputError, OutputExistsError
from osteomet.segmentation.masks import (
    AUTO_DIR,
    REVIEWED_DIR,
    auto_mask_path,
    check_patient_id,
    effective_mask,
    provenance_path,
    read_provenance,
    reviewed_mask_path,
)
from osteomet.segmentation.metrics import overlap
from osteomet.utils.files import (
    atomic_path,
    sha256_file,
    write_json_atomic,
    write_text_atomic,
)

PathLike = str | os.PathLike[str]
Log = Callable[[str], None]

_logger = logging.getLogger(__name__)

REVIEW_DIR = "review"
SHEET_NAME = "review_sheet.csv"
README_NAME = "README.txt"
EXPORT_RECORD = "export.json"
SHEET_COLUMNS = ["patient_id", "t2", "auto_mask", "auto_voxels", "auto_volume_ml", "reviewed", "reviewer", "comment"]
#: Suffixes accepted for ``<patient>_reviewed.*``, most specific first.
REVIEWED_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nrrd", ".nii")
IMAGE_FILES = {"t2": "t2.nrrd", "highb": "highb.nrrd", "adc": "adc.nrrd"}

# The exported segment, as 3D Slicer itself would write it (see vtkMRMLSegmentationStorageNode).
SEGMENT_ID = "tumour"
SEGMENT_NAME = "tumour"
SEGMENT_COLOR = (0.902, 0.353, 0.275)
SEGMENT_TAGS = (
    "Segmentation.Status:inprogress|TerminologyEntry:Segmentation category and type - 3D Slicer General Anatomy list"
    "~SCT^49755003^Morphologically Altered Structure~SCT^4147007^Mass~^^~Anatomic codes - DICOM master list~^^~^^|"
)
#: Segment names/IDs recognised as the tumour when a reviewed segmentation holds several segments.
TUMOUR_NAMES = frozenset({"tumour", "tumor", "lesion", "index lesion", "mass"})

_SPACE_TO_LPS = {
    "left-posterior-superior": np.array([1.0, 1.0, 1.0]), "lps": np.array([1.0, 1.0, 1.0]),
    "right-anterior-superior": np.array([-1.0, -1.0, 1.0]), "ras": np.array([-1.0, -1.0, 1.0]),
}


class ReviewError(ManifestError):
    """Some patients of an export or import failed (the others were done); ``table`` has per-patient results."""

    def __init__(self, path: PathLike | None, problems: Sequence[str], table: pd.DataFrame | None = None):
        super().__init__(path, problems)
        self.table = table


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _with_patient(patient_id: str, exc: BaseException) -> str:
    text = str(exc)
    return text if text.startswith(f"patient {patient_id!r}") else f"patient {patient_id!r}: {text}"


def _default_log(message: str) -> None:
    _logger.warning(message)


# --------------------------------------------------------------------------------------------
# 3D Slicer .seg.nrrd
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlicerSegment:
    """One ``SegmentN_*`` block of a .seg.nrrd header."""

    index: int
    id: str
    name: str
    label_value: int
    layer: int


def _number(value: float) -> str:
    return format(float(value) + 0.0, ".17g")  # + 0.0 turns -0 into 0


def _slicer_reference_geometry(geometry: Geometry) -> str:
    """Slicer's "Reference image geometry" string: IJK-to-RAS matrix (row-major) then the extent.

    Writing it makes Slicer's Segment Editor keep the T2 grid for the segmentation, so the
    file the radiologist saves comes back on exactly the grid we exported.
    """
    direction = np.array(geometry.direction).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = direction * np.array(geometry.spacing)
    matrix[:3, 3] = geometry.origin
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ matrix
    extent = [v for size in geometry.size for v in (0, size - 1)]
    return ";".join([_number(v) for v in ras.ravel()] + [str(v) for v in extent]) + ";"


def _extent(array_xyz: np.ndarray, value: int = 1) -> str:
    """Bounding box "i0 i1 j0 j1 k0 k1" of ``value`` voxels; Slicer's "0 -1 0 -1 0 -1" when there are none."""
    where = np.nonzero(array_xyz == value)
    if where[0].size == 0:
        return "0 -1 0 -1 0 -1"
    return " ".join(f"{int(axis.min())} {int(axis.max())}" for axis in where)


def write_seg_nrrd(mask: sitk.Image, path: PathLike, *, segment_id: str = SEGMENT_ID, name: str = SEGMENT_NAME,
                   color: Sequence[float] = SEGMENT_COLOR, tags: str = SEGMENT_TAGS) -> Path:
    """Write a binary mask as a one-segment 3D Slicer segmentation (atomically).

    Plain NRRD with Slicer's ``Segment0_*``/``Segmentation_*`` fields: Slicer opens it as a
    segmentation (named, coloured, editable in the Segment Editor), ITK-SNAP and SimpleITK
    read it as an ordinary label image on the same grid.
    """
    import nrrd

    path = Path(path)
    array = sitk.GetArrayFromImage(mask)
    extra = sorted(set(np.unique(array).tolist()) - {0, 1})
    if extra:
        raise MaskError(f"{path}: refusing to write a segmentation from a mask with values other than 0 and 1 ({extra[:6]})")
    data = np.ascontiguousarray(array.astype(np.uint8).transpose(2, 1, 0))  # x, y, z = NRRD axis order
    geometry = Geometry.of(mask)
    direction = np.array(geometry.direction).reshape(3, 3)
    header: dict[str, Any] = {
        "type": "unsigned char",
        "dimension": 3,
        "space": "left-posterior-superior",
        "space directions": (direction * np.array(geometry.spacing)).T,  # row i: axis i's step in LPS mm
        "kinds": ["domain", "domain", "domain"],
        "encoding": "gzip",
        "space origin": np.array(geometry.origin, dtype=float),
        "Segment0_Color": " ".join(f"{c:g}" for c in color),
        "Segment0_ColorAutoGenerated": "0",
        "Segment0_Extent": _extent(data),
        "Segment0_ID": segment_id,
        "Segment0_LabelValue": "1",
        "Segment0_Layer": "0",
        "Segment0_Name": name,
        "Segment0_NameAutoGenerated": "0",
        "Segment0_Tags": tags,
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ConversionParameters": (
            f"Reference image geometry|{_slicer_reference_geometry(geometry)}|Image geometry description string "
            "determining the geometry of the labelmap that is created in course of conversion.&"
        ),
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    }
    with atomic_path(path) as tmp:
        nrrd.write(str(tmp), data, header, compression_level=6)
    return path


def slicer_segments(header: dict[str, Any]) -> list[SlicerSegment]:
    """Segments declared in a NRRD header, read the way Slicer does (consecutive ``SegmentN_ID`` keys)."""
    segments = []
    index = 0
    while f"Segment{index}_ID" in header:
        def field(key: str, default: str | None = None) -> str | None:
            value = header.get(f"Segment{index}_{key}", default)
            return None if value is None else str(value).strip()

        try:
            label = int(field("LabelValue", "1") or 1)
            layer = int(field("Layer", str(index)) or index)  # legacy files: one segment per layer
        except ValueError as exc:
            raise MaskError(f"segment {index}: LabelValue/Layer is not a whole number ({exc})") from None
        segment_id = field("ID") or f"Segment_{index}"
        segments.append(SlicerSegment(index, segment_id, field("Name") or segment_id, label, layer))
        index += 1
    return segments


def _pick_tumour(segments: list[SlicerSegment], path: Path) -> SlicerSegment:
    """The tumour segment: the one named like a tumour, or the only one; anything else is ambiguous."""
    named = [s for s in segments if s.name.lower() in TUMOUR_NAMES or s.id.lower() in TUMOUR_NAMES]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise MaskError(f"{path}: several segments look like the tumour ({', '.join(s.name for s in named)}); "
                        "keep one segment named 'tumour'")
    if len(segments) == 1:
        return segments[0]
    raise MaskError(f"{path}: {len(segments)} segments ({', '.join(repr(s.name) for s in segments)}) and none is "
                    "named 'tumour'; rename the tumour segment to 'tumour' in the Segment Editor and save again")


def _nrrd_spatial_geometry(header: dict[str, Any], spatial_axes: Sequence[int], path: Path) -> tuple[np.ndarray, ...]:
    """Spacing, origin and direction (SimpleITK conventions, LPS) of a NRRD header's spatial axes."""
    space = str(header.get("space", "")).strip().lower()
    if space not in _SPACE_TO_LPS:
        raise ImageReadError(f"{path}: NRRD 'space' is {header.get('space')!r}; expected left-posterior-superior "
                             "(as 3D Slicer writes) or right-anterior-superior")
    flip = _SPACE_TO_LPS[space]
    if "space directions" not in header or "space origin" not in header:
        raise ImageReadError(f"{path}: NRRD header has no 'space directions'/'space origin'; cannot place it in space")
    steps = np.asarray(header["space directions"], dtype=float)[list(spatial_axes)] * flip  # rows: axis steps, LPS
    spacing = np.linalg.norm(steps, axis=1)
    if not np.all(np.isfinite(steps)) or np.any(spacing <= 0):
        raise ImageReadError(f"{path}: invalid 'space directions' {header['space directions']!r}")
    direction = (steps / spacing[:, None]).T  # column i: unit vector of axis i
    origin = np.asarray(header["space origin"], dtype=float) * flip
    return spacing, origin, direction


def read_seg_nrrd(path: PathLike) -> tuple[sitk.Image, dict[str, Any]]:
    """The tumour segment of a 3D Slicer .seg.nrrd as a 0/1 mask image with the file's geometry.

    Handles one shared labelmap (3D) and Slicer's multi-layer form (4D, a ``list`` axis of
    layers; used when segments overlap) by taking the tumour segment's layer and label value.
    Voxels in that layer carrying a label that no segment declares are refused, because
    their meaning is unknown. ``Segment0_Extent`` is not used to crop: editors other than
    Slicer do not update it, and cropping would silently drop their edits.
    Returns the mask and ``{"segment": ..., "ignored_segments": [...]}`` for provenance.
    """
    import nrrd

    path = Path(path)
    try:
        data, header = nrrd.read(str(path))  # index order F: axes as listed in the header
    except Exception as exc:  # pynrrd raises NRRDError, but also ValueError/OSError on broken files
        raise ImageReadError(f"{path}: cannot be read as NRRD ({exc})") from exc
    segments = slicer_segments(header)
    if not segments:
        raise MaskError(f"{path}: no Slicer segment fields (Segment0_ID ...); not a .seg.nrrd segmentation")
    directions = np.asarray(header.get("space directions", np.full((data.ndim, 3), np.nan)), dtype=float)
    if data.ndim == 3:
        layers = data[np.newaxis]
        spatial = [0, 1, 2]
    elif data.ndim == 4:
        non_spatial = [axis for axis in range(4) if not np.all(np.isfinite(directions[axis]))]
        if len(non_spatial) != 1:
            raise ImageReadError(f"{path}: 4D segmentation without exactly one layer axis (kinds {header.get('kinds')})")
        layers = np.moveaxis(data, non_spatial[0], 0)
        spatial = [axis for axis in range(4) if axis != non_spatial[0]]
    else:
        raise ImageReadError(f"{path}: expected a 3D or 4D (multi-layer) segmentation, got {data.ndim}D")
    if not np.issubdtype(layers.dtype, np.integer):
        if not np.all(np.isfinite(layers)) or not np.all(np.mod(layers, 1) == 0):
            raise MaskError(f"{path}: segmentation voxels are not whole numbers")
        layers = layers.astype(np.int64)

    tumour = _pick_tumour(segments, path)
    if not 0 <= tumour.layer < layers.shape[0]:
        raise MaskError(f"{path}: segment {tumour.name!r} is in layer {tumour.layer}, but the file has "
                        f"{layers.shape[0]} layer(s)")
    layer = layers[tumour.layer]
    declared = {s.label_value for s in segments if s.layer == tumour.layer}
    undeclared = sorted(set(np.unique(layer).tolist()) - declared - {0})
    if undeclared:
        shown = ", ".join(str(v) for v in undeclared[:6])
        raise MaskError(f"{path}: labels other than 0/1 that no segment declares in the tumour's layer ({shown}); "
                        "a mask must only contain the tumour segment")
    mask_xyz = (layer == tumour.label_value).astype(np.uint8)

    spacing, origin, direction = _nrrd_spatial_geometry(header, spatial, path)
    image = sitk.GetImageFromArray(np.ascontiguousarray(mask_xyz.transpose(2, 1, 0)))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin])
    image.SetDirection([float(d) for d in direction.ravel()])
    info = {
        "segment": {"id": tumour.id, "name": tumour.name, "label_value": tumour.label_value, "layer": tumour.layer},
        "ignored_segments": [s.name for s in segments if s is not tumour],
    }
    return image, info


def _onto_reference_grid(mask: sitk.Image, reference: sitk.Image, *, name: PathLike | str,
                         reference_name: PathLike | str) -> sitk.Image:
    """The mask on the reference grid, or a clear error; never resampled.

    The only difference tolerated is a crop of the same grid (same spacing and axes, origin
    on a whole voxel), which is what Slicer writes with "crop to minimum extent": it is
    pasted back losslessly. Anything else means the radiologist worked on another grid,
    and interpolating a hand-drawn mask would change what they approved.
    """
    own, ref = Geometry.of(mask), Geometry.of(reference)
    diffs = own.differences(ref)
    if not diffs:
        out = sitk.Cast(mask, sitk.sitkUInt8)
        out.CopyInformation(reference)
        return out
    if np.allclose(own.spacing, ref.spacing, atol=SPACING_TOL) and np.allclose(own.direction, ref.direction, atol=DIRECTION_TOL):
        axes = np.array(ref.direction).reshape(3, 3) * np.array(ref.spacing)
        index = np.linalg.solve(axes, np.array(own.origin) - np.array(ref.origin))
        start = np.round(index).astype(int)
        if np.all(np.abs(index - start) * np.array(ref.spacing) <= ORIGIN_TOL):
            array = sitk.GetArrayViewFromImage(mask)  # z, y, x
            size, ref_size = np.array(own.size), np.array(ref.size)
            lo, hi = np.maximum(start, 0), np.minimum(start + size, ref_size)
            full = np.zeros(tuple(ref_size[::-1]), np.uint8)
            inside = 0
            if np.all(hi > lo):
                src = tuple(slice(int(a), int(b)) for a, b in zip((lo - start)[::-1], (hi - start)[::-1]))
                dst = tuple(slice(int(a), int(b)) for a, b in zip(lo[::-1], hi[::-1]))
                full[dst] = array[src]
                inside = int(np.count_nonzero(array[src]))
            outside = int(np.count_nonzero(array)) - inside
            if outside:
                raise GeometryMismatchError(f"{name}: {outside} mask voxels lie outside the grid of {reference_name}")
            out = sitk.GetImageFromArray(full)
            out.CopyInformation(reference)
            return out
    raise GeometryMismatchError(
        f"{name}: not on the grid of {reference_name}: " + "; ".join(diffs)
        + ". Segment on the exported t2.nrrd (Slicer: Segment Editor with t2 as source volume) and do not resample"
    )


def read_reviewed_mask(path: PathLike, reference: sitk.Image, *,
                       reference_name: PathLike | str = "the T2 image") -> tuple[sitk.Image, dict[str, Any]]:
    """A radiologist's file (.seg.nrrd, NRRD or NIfTI) as a non-empty 0/1 mask on the reference grid."""
    import nrrd

    path = Path(path)
    info: dict[str, Any] = {}
    is_segmentation = False
    if path.name.lower().endswith(".nrrd"):
        try:
            header = nrrd.read_header(str(path))
        except Exception as exc:
            raise ImageReadError(f"{path}: cannot be read as NRRD ({exc})") from exc
        is_segmentation = "Segment0_ID" in header
        if not is_segmentation and any(str(key).startswith("Segmentation_") for key in header):
            raise MaskError(f"{path}: the segmentation has no segments (was the tumour segment deleted?)")
    if is_segmentation:
        mask, info = read_seg_nrrd(path)
    else:  # a plain label image (ITK-SNAP, Slicer's "export to labelmap"): 0/1 only
        mask = read_mask(path, allow_empty=True)
    mask = _onto_reference_grid(mask, reference, name=path, reference_name=reference_name)
    if not np.any(sitk.GetArrayViewFromImage(mask)):
        raise MaskError(f"{path}: the reviewed mask is empty (no tumour voxel); if there really is no visible tumour, "
                        "note it in the review sheet and remove the file")
    return mask, info


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def reviewed_candidates(folder: PathLike, patient_id: str) -> list[Path]:
    """``<patient>_reviewed.*`` files in ``folder/<patient>/`` or directly in ``folder``."""
    folder = Path(folder)
    found = []
    for base in (folder / patient_id, folder):
        for suffix in REVIEWED_SUFFIXES:
            candidate = base / f"{patient_id}_reviewed{suffix}"
            if candidate.is_file() and candidate not in found:
                found.append(candidate)
    return found


def _voxel_volume_ml(image: sitk.Image) -> float:
    return float(np.prod(image.GetSpacing())) / 1000.0


def _sheet_row(patient_id: str, mask: sitk.Image) -> dict[str, Any]:
    voxels = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
    return {
        "patient_id": patient_id,
        "t2": f"{patient_id}/{IMAGE_FILES['t2']}",
        "auto_mask": f"{patient_id}/{patient_id}_auto.seg.nrrd",
        "auto_voxels": voxels,
        "auto_volume_ml": round(voxels * _voxel_volume_ml(mask), 4),
        "reviewed": "", "reviewer": "", "comment": "",
    }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _export_patient(record: MRIRecord, segdir: Path, folder: Path, log: Log) -> dict[str, Any]:
    from osteomet.data.case import load_mri_case

    pid = record.patient_id
    auto = auto_mask_path(segdir, pid)
    pdir = folder / pid
    reviewed = reviewed_candidates(folder, pid)
    if reviewed:
        log(f"patient {pid!r}: already reviewed ({', '.join(p.name for p in reviewed)}); its folder was left untouched")
        return _sheet_row(pid, read_mask(auto, allow_empty=True))

    case = load_mri_case(record.model_copy(update={"mask": None}))  # the manifest's own mask is not needed here
    mask = read_mask(auto, reference=case.t2, reference_name=record.t2, allow_empty=True)
    previous = _read_json(pdir / EXPORT_RECORD).get("files", {})
    files: dict[str, str] = {}
    for key, image in (("t2", case.t2), ("highb", case.dwi), ("adc", case.adc)):
        target = write_image(image, pdir / IMAGE_FILES[key])
        files[target.name] = sha256_file(target)
    seg = pdir / f"{pid}_auto.seg.nrrd"
    if seg.exists() and sha256_file(seg) != previous.get(seg.name):
        log(f"patient {pid!r}: {seg} was changed after export (saved over in Slicer?); left untouched. If it holds "
            f"the corrections, rename it to {pid}_reviewed.seg.nrrd")
        if previous.get(seg.name):
            files[seg.name] = previous[seg.name]
    else:
        write_seg_nrrd(mask, seg)
        files[seg.name] = sha256_file(seg)
    write_json_atomic(pdir / EXPORT_RECORD, {
        "patient_id": pid, "exported_at": _now(), "auto_mask": str(auto), "auto_sha256": sha256_file(auto),
        "t2": str(record.t2), "files": files,
    })
    return _sheet_row(pid, mask)


def _sheet_ids(path: Path) -> set[str]:
    """Patient ids in an existing sheet, tolerant of what a spreadsheet program does to a CSV."""
    try:
        frame = pd.read_csv(path, dtype=str, sep=None, engine="python", encoding="utf-8-sig", keep_default_na=False)
    except Exception:  # unreadable: treat as holding nobody, we still never touch it
        return set()
    column = next((c for c in frame.columns if str(c).strip().lower() == "patient_id"), None)
    return set() if column is None else {str(v).strip() for v in frame[column]}


def _new_name(path: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    candidate = path.with_name(f"{path.stem}.{stamp}{path.suffix}")
    counter = 1
    while candidate.exists():
        counter += 1
        candidate = path.with_name(f"{path.stem}.{stamp}-{counter}{path.suffix}")
    return candidate


README_TEXT = """\
Tumour segmentation review (exported {created})

One folder per patient: t2.nrrd, highb.nrrd (high-b DWI) and adc.nrrd, all resampled onto
the T2 grid so they overlay exactly, and <patient>_auto.seg.nrrd: the automatic (UNETR)
tumour proposal as a 3D Slicer segmentation with one segment named "tumour".

3D Slicer (5.x)
  1. Drag the four files of one patient folder into Slicer (or File > Add Data).
  2. Segment Editor: Segmentation = <patient>_auto, Source volume = t2. Check the segment
     "tumour" on T2, DWI and ADC and correct it (Paint, Erase, Scissors, Islands ...).
     Keep one segment named "tumour"; do not change the segmentation geometry.
  3. File > Save Data: untick everything except the segmentation and set its file name to
     <patient>_reviewed.seg.nrrd in the same patient folder.
     Do NOT save over <patient>_auto.seg.nrrd: it is the record of what the model proposed.

ITK-SNAP
  Open t2.nrrd as main image, Segmentation > Open Segmentation: <patient>_auto.seg.nrrd,
  correct label 1, then Segmentation > Save Segmentation Image As:
  <patient>_reviewed.nii.gz in the same patient folder (label 1 = tumour, nothing else).

If the automatic mask needs no change, save it unchanged as <patient>_reviewed.seg.nrrd:
that records your approval. Tick review_sheet.csv (reviewed = yes, reviewer, comment).

When done, import the reviewed masks (they are checked against each patient's T2 grid):
  osteomet segment import-review --manifest MANIFEST --segdir SEGDIR --reviewer NAME
"""


def export_review(manifest: Manifest, segdir: PathLike, out: PathLike | None = None, *,
                  progress: Callable[[], None] | None = None, log: Log | None = None) -> Path:
    """Write the review folder (default ``SEGDIR/review``) for every patient with an auto mask.

    Per patient: ``t2.nrrd``, ``highb.nrrd``, ``adc.nrrd`` on the T2 grid and
    ``<patient>_auto.seg.nrrd``; for the folder: ``review_sheet.csv`` and ``README.txt``.
    Rerunning is safe: patients already reviewed are skipped, an auto segmentation edited in
    place and an existing sheet are left untouched (rows for new patients go to a new,
    time-stamped sheet). Problems are collected and raised together as :class:`ReviewError`
    after the other patients were written. Returns the review folder.
    """
    if manifest.kind != "mri":
        raise InputError(f"the review loop is for bpMRI manifests, not {manifest.kind!r}")
    log = log or _default_log
    segdir = Path(segdir)
    if not (segdir / AUTO_DIR).is_dir():
        raise MissingInputError(f"{segdir / AUTO_DIR}: no auto masks; run `osteomet segment predict` first")
    folder = Path(out) if out is not None else segdir / REVIEW_DIR
    rows, problems, missing = [], [], []
    for record in manifest:
        try:
            check_patient_id(record.patient_id)
            if not auto_mask_path(segdir, record.patient_id).is_file():
                missing.append(record.patient_id)
            else:
                rows.append(_export_patient(record, segdir, folder, log))
        except (ImageError, ValueError, OSError) as exc:
            problems.append(_with_patient(record.patient_id, exc))
        if progress:
            progress()
    if missing:
        log(f"{len(missing)} patient(s) without an auto mask in {segdir / AUTO_DIR}: {', '.join(missing[:10])}"
            + (" ..." if len(missing) > 10 else ""))
    if rows:
        folder.mkdir(parents=True, exist_ok=True)
        sheet = pd.DataFrame(rows, columns=SHEET_COLUMNS)
        sheet_path = folder / SHEET_NAME
        if not sheet_path.exists():
            write_text_atomic(sheet_path, sheet.to_csv(index=False))
        else:
            new = sheet[~sheet["patient_id"].isin(_sheet_ids(sheet_path))]
            if len(new):
                extra = _new_name(sheet_path)
                write_text_atomic(extra, new.to_csv(index=False))
                log(f"{sheet_path} already exists and was left untouched; rows for {len(new)} patient(s) not in it "
                    f"are in {extra.name}")
        write_text_atomic(folder / README_NAME, README_TEXT.format(created=_now()))
    if problems:
        raise ReviewError(folder, problems)
    return folder


# --------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------


IMPORT_COLUMNS = ["patient_id", "status", "source", "review_file", "dice", "voxels_added", "voxels_removed",
                  "reviewed_voxels", "message"]


def _sheet_entries(folder: Path) -> dict[str, dict[str, str]]:
    """What the radiologist wrote in the review sheet(s), by patient (for provenance only)."""
    entries: dict[str, dict[str, str]] = {}
    for path in sorted(folder.glob("review_sheet*.csv")):
        try:
            frame = pd.read_csv(path, dtype=str, sep=None, engine="python", encoding="utf-8-sig", keep_default_na=False)
        except Exception:
            continue
        frame.columns = [str(c).strip().lower() for c in frame.columns]
        if "patient_id" not in frame:
            continue
        for row in frame.to_dict(orient="records"):
            kept = {k: str(row.get(k, "")).strip() for k in ("reviewed", "reviewer", "comment") if str(row.get(k, "")).strip()}
            if kept:
                entries[str(row["patient_id"]).strip()] = kept
    return entries


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def _next_version(segdir: Path, patient_id: str) -> Path:
    versions = segdir / REVIEWED_DIR / "versions"
    n = 1
    while (versions / f"{patient_id}.v{n}.nii.gz").exists():
        n += 1
    return versions / f"{patient_id}.v{n}.nii.gz"


def _same_mask(a: sitk.Image, b: sitk.Image) -> bool:
    return not Geometry.of(a).differences(Geometry.of(b)) and np.array_equal(
        sitk.GetArrayViewFromImage(a) != 0, sitk.GetArrayViewFromImage(b) != 0)


def _not_reviewed_note(folder: Path, patient_id: str) -> str:
    """Hints for the usual slips: saved over the auto file, or saved under Slicer's default name."""
    pdir = folder / patient_id
    notes = []
    seg = pdir / f"{patient_id}_auto.seg.nrrd"
    recorded = _read_json(pdir / EXPORT_RECORD).get("files", {}).get(seg.name)
    if seg.exists() and recorded and sha256_file(seg) != recorded:
        notes.append(f"{seg.name} was changed after export; if it holds the corrections, rename it to "
                     f"{patient_id}_reviewed.seg.nrrd")
    if pdir.is_dir():
        known = {seg.name, EXPORT_RECORD, *IMAGE_FILES.values()}
        stray = sorted(p.name for p in pdir.iterdir() if p.is_file() and p.name not in known and not p.name.startswith("."))
        if stray:
            notes.append(f"unrecognised file(s) {', '.join(stray)}; a reviewed mask must be named "
                         f"{patient_id}_reviewed.seg.nrrd or {patient_id}_reviewed.nii.gz")
    return "; ".join(notes)


def _import_patient(record: MRIRecord, segdir: Path, folder: Path, *, reviewer: str, overwrite: bool,
                    provenance: dict[str, Any], sheet: dict[str, str] | None, time: str) -> dict[str, Any]:
    pid = record.patient_id
    row: dict[str, Any] = {"patient_id": pid}
    candidates = reviewed_candidates(folder, pid)
    if not candidates:
        row.update(status="not reviewed", message=_not_reviewed_note(folder, pid))
        return row
    if len(candidates) > 1:
        raise MaskError(f"several reviewed files ({', '.join(str(p) for p in candidates)}); keep only one")
    source = candidates[0]
    t2 = read_image(record.t2)
    mask, info = read_reviewed_mask(source, t2, reference_name=record.t2)
    reviewed = sitk.GetArrayFromImage(mask).astype(bool)

    auto_path = auto_mask_path(segdir, pid)
    target = reviewed_mask_path(segdir, pid)
    if target.resolve() == auto_path.resolve():  # defensive: the proposal must never be replaced
        raise RuntimeError(f"reviewed and auto mask paths coincide for patient {pid!r}")
    stats: dict[str, Any] = {"dice": None, "voxels_added": None, "voxels_removed": None, "auto_voxels": None}
    if auto_path.is_file():
        auto = sitk.GetArrayFromImage(read_mask(auto_path, reference=t2, reference_name=record.t2,
                                                allow_empty=True)).astype(bool)
        stats = {
            "dice": round(float(overlap(reviewed, auto)["dice"]), 6),
            "voxels_added": int(np.count_nonzero(reviewed & ~auto)),
            "voxels_removed": int(np.count_nonzero(auto & ~reviewed)),
            "auto_voxels": int(np.count_nonzero(auto)),
        }

    previous = provenance["patients"].get(pid)
    status = "imported"
    kept_version = None
    if target.exists():
        if _same_mask(read_image(target), mask):
            status = "unchanged"
        elif not overwrite:
            who = f" (by {previous.get('reviewer')} at {previous.get('time')})" if previous and previous.get("reviewer") else ""
            raise OutputExistsError(
                f"a different reviewed mask was already imported{who} as {target}; {source.name} would replace it. "
                "Pass --overwrite (overwrite=True) to replace it; the old one is then kept as a numbered version"
            )
        else:
            kept_version = _next_version(segdir, pid)
            with atomic_path(kept_version) as tmp:
                shutil.copy2(target, tmp)
            status = "replaced"
    if status != "unchanged":
        write_image(mask, target)
    if status != "unchanged" or not previous or previous.get("source") != "reviewed":
        entry: dict[str, Any] = {
            "source": "reviewed",
            "reviewer": reviewer,
            "time": time,
            "mask": _relative(target, segdir),
            "reviewed_sha256": sha256_file(target),
            "review_file": str(source.resolve()),
            "review_file_sha256": sha256_file(source),
            "auto_mask": _relative(auto_path, segdir) if auto_path.is_file() else None,
            "auto_sha256": sha256_file(auto_path) if auto_path.is_file() else None,
            "t2": str(record.t2),
            "reviewed_voxels": int(np.count_nonzero(reviewed)),
            "reviewed_volume_ml": round(int(np.count_nonzero(reviewed)) * _voxel_volume_ml(mask), 4),
            **stats,
        }
        if info:
            entry.update(info)
        if sheet:
            entry["sheet"] = sheet
        history = list((previous or {}).get("history", []))
        if previous:
            history.append({k: v for k, v in previous.items() if k != "history"})
        if kept_version is not None and history:
            history[-1]["kept_as"] = _relative(kept_version, segdir)
        if history:
            entry["history"] = history
        provenance["patients"][pid] = entry
    row.update(status=status, review_file=str(source), reviewed_voxels=int(np.count_nonzero(reviewed)),
               dice=stats["dice"], voxels_added=stats["voxels_added"], voxels_removed=stats["voxels_removed"],
               message=(f"old mask kept as {_relative(kept_version, segdir)}" if kept_version else
                        (f"ignored segment(s): {', '.join(info['ignored_segments'])}" if info.get("ignored_segments") else "")))
    return row


def _auto_entry(segdir: Path, patient_id: str, time: str, sheet: dict[str, str] | None) -> dict[str, Any]:
    auto = auto_mask_path(segdir, patient_id)
    entry: dict[str, Any] = {"source": "auto", "time": time, "mask": _relative(auto, segdir),
                             "auto_sha256": sha256_file(auto), "reviewer": None}
    if sheet:
        entry["sheet"] = sheet
    return entry


def import_review(manifest: Manifest, segdir: PathLike, source: PathLike | None = None, *, reviewer: str,
                  overwrite: bool = False, progress: Callable[[], None] | None = None) -> pd.DataFrame:
    """Import the radiologist's refined masks into ``SEGDIR/reviewed/`` and update ``provenance.json``.

    Looks for ``<patient>_reviewed.seg.nrrd`` (or ``.nii.gz``/``.nrrd``/``.nii``) in the review
    folder (``SEGDIR/review`` unless ``source`` is given), per patient subfolder or flat.
    Each is checked against the patient's T2 grid, must be non-empty and binary, and is
    compared with the auto mask (Dice, voxels added/removed). The auto masks are never
    written. A patient whose reviewed mask was already imported is left as it is when the
    file is unchanged, and refused when it differs unless ``overwrite`` (the old mask is
    then kept as ``reviewed/versions/<patient>.vN.nii.gz``).

    Returns one row per manifest patient. Problems are collected over all patients and
    raised together as :class:`ReviewError` (its ``table`` has the results) after the good
    patients were imported and the provenance written.
    """
    if manifest.kind != "mri":
        raise InputError(f"the review loop is for bpMRI manifests, not {manifest.kind!r}")
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise InputError("name the reviewer (--reviewer): provenance must say who approved the masks")
    segdir = Path(segdir)
    folder = Path(source) if source is not None else segdir / REVIEW_DIR
    if not folder.is_dir():
        raise MissingInputError(f"{folder}: review folder not found"
                                + ("" if source is not None else "; run `osteomet segment export-review` first"))
    provenance = read_provenance(segdir)
    provenance.setdefault("version", 1)
    sheets = _sheet_entries(folder)
    time = _now()
    rows, problems = [], []
    ids = set()
    for record in manifest:
        pid = record.patient_id
        ids.add(pid)
        try:
            check_patient_id(pid)
            row = _import_patient(record, segdir, folder, reviewer=reviewer, overwrite=overwrite,
                                  provenance=provenance, sheet=sheets.get(pid), time=time)
        except (ImageError, ValueError, OSError) as exc:
            problems.append(_with_patient(pid, exc))
            row = {"patient_id": pid, "status": "error", "message": _with_patient(pid, exc)}
        try:
            _, row["source"] = effective_mask(pid, segdir, fallback=record.mask, provenance=provenance)
        except (ImageError, ValueError) as exc:
            problems.append(_with_patient(pid, exc))
            row.update(status="error", source="reviewed", message=_with_patient(pid, exc))
        if row["source"] == "auto":
            previous = provenance["patients"].get(pid)
            if not previous or previous.get("source") != "auto" or previous.get("auto_sha256") != sha256_file(
                    auto_mask_path(segdir, pid)):
                entry = _auto_entry(segdir, pid, time, sheets.get(pid))
                if previous:
                    entry["history"] = [*previous.get("history", []), {k: v for k, v in previous.items() if k != "history"}]
                provenance["patients"][pid] = entry
        rows.append(row)
        if progress:
            progress()
    for stray in sorted(folder.glob("*_reviewed.*")) + sorted(folder.glob("*/*_reviewed.*")):
        pid = re.sub(r"_reviewed\..*$", "", stray.name)
        if pid not in ids:
            problems.append(f"{stray}: patient {pid!r} is not in the manifest (misspelt file name?)")
    provenance["updated"] = time
    segdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(provenance_path(segdir), provenance)
    table = pd.DataFrame(rows, columns=IMPORT_COLUMNS)
    if problems:
        raise ReviewError(folder, problems, table)
    return table
