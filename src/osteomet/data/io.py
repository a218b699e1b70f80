"""Image I/O through SimpleITK with geometry kept and checked.

Every reader returns a ``SimpleITK.Image`` so spacing, origin and direction travel with
the voxels; arrays are only taken out once geometry has been settled. Errors name the
file and say what is wrong, because a cohort of hundreds of cases is otherwise hopeless
to debug.

Broken files are refused rather than repaired silently: a truncated NIfTI (ITK fills the
missing voxels with 0), NaN voxels (ITK's NIfTI reader turns them into 0) and DICOM series
with missing or unevenly spaced slices (ITK stacks them at one average spacing) are
checked here, before any voxel reaches a model.
"""

from __future__ import annotations

import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import SimpleITK as sitk

from osteomet.errors import InputError
from osteomet.utils.files import atomic_path, full_suffix

PathLike = str | os.PathLike[str]

_logger = logging.getLogger(__name__)

#: File suffixes read as single volumes; a directory is read as a DICOM series.
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".seg.nrrd")

#: Tolerances used to *name* which header fields differ (mm and direction cosines); whether
#: two grids count as the same is decided physically, by :data:`GEOMETRY_TOLERANCE_VOXELS`.
SPACING_TOL = 1e-3
ORIGIN_TOL = 1e-2
DIRECTION_TOL = 1e-4

#: Two grids of the same size are "the same" when no corner of the image box moves by more
#: than this fraction of the smallest voxel spacing between them. Annotation tools store
#: headers with small round-off (PI-CAI's ProstateX lesion masks have direction cosines about
#: 4e-4 off the DICOM T2: about 0.1 mm at the far corner of a 192 mm field of view, 0.22 of a
#: 0.5 mm voxel). Below half a voxel, copying the reference header places every mask voxel
#: exactly where nearest-neighbour resampling would; a quarter voxel keeps a 2x margin on that.
GEOMETRY_TOLERANCE_VOXELS = 0.25

#: Slices of a DICOM series are evenly spaced when every step between neighbours is within
#: this fraction of the typical (median) step, or within ``SLICE_STEP_TOL_MM``.
SLICE_STEP_TOL = 0.02
SLICE_STEP_TOL_MM = 0.01

_NIFTI_CHUNK = 1 << 24  # bytes read at a time when checking a NIfTI file


class ImageError(InputError):
    """Base class for image problems; the message always names the file."""


class ImageReadError(ImageError):
    """A file or folder could not be read as an image."""


class GeometryMismatchError(ImageError):
    """Two images that must share a grid do not."""


class MaskError(ImageError):
    """A mask is empty, not binary, or otherwise unusable."""


@dataclass(frozen=True)
class Geometry:
    """Grid of an image in physical space (SimpleITK/LPS conventions, x-y-z order)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> "Geometry":
        return cls(
            tuple(int(s) for s in image.GetSize()),
            tuple(float(s) for s in image.GetSpacing()),
            tuple(float(o) for o in image.GetOrigin()),
            tuple(float(d) for d in image.GetDirection()),
        )

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        return {
            "size": list(self.size),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": list(self.direction),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Geometry":
        return cls(
            tuple(int(v) for v in data["size"]),
            tuple(float(v) for v in data["spacing"]),
            tuple(float(v) for v in data["origin"]),
            tuple(float(v) for v in data["direction"]),
        )

    def corners(self, size: Sequence[int] | None = None) -> np.ndarray:
        """World coordinates (8 x 3, mm) of the corners of the image box (outer voxel edges)."""
        size = np.asarray(self.size if size is None else size, float)
        spacing = np.asarray(self.spacing, float)
        direction = np.asarray(self.direction, float).reshape(3, 3)
        index = np.array([[-0.5 + size[a] * ((k >> a) & 1) for a in range(3)] for k in range(8)])
        return np.asarray(self.origin, float) + (index * spacing) @ direction.T

    def displacement_mm(self, other: "Geometry") -> float:
        """Largest distance (mm) between where the two grids put the same corner of this image's box.

        The index-to-world map is affine, so the largest displacement of any point of the
        image is at one of the 8 corners.
        """
        return float(np.linalg.norm(self.corners() - other.corners(self.size), axis=1).max())

    def differences(self, other: "Geometry", *, tolerance: float = GEOMETRY_TOLERANCE_VOXELS) -> list[str]:
        """Human-readable list of what differs (empty when the grids match).

        Sizes must be equal; beyond that the grids match when no corner of the image box moves
        by more than ``tolerance`` times the smallest voxel spacing (see
        :data:`GEOMETRY_TOLERANCE_VOXELS`). When they do not, the message gives the displacement
        in mm and names the header fields that differ.
        """
        out = []
        if self.size != other.size:
            out.append(f"size {self.size} vs {other.size}")
        moved = self.displacement_mm(other)
        limit = tolerance * min(min(self.spacing), min(other.spacing))
        if moved <= limit:
            return out
        if not np.allclose(self.spacing, other.spacing, atol=SPACING_TOL):
            out.append(f"spacing {_fmt(self.spacing)} vs {_fmt(other.spacing)} mm")
        if not np.allclose(self.origin, other.origin, atol=ORIGIN_TOL):
            out.append(f"origin {_fmt(self.origin)} vs {_fmt(other.origin)} mm")
        if not np.allclose(self.direction, other.direction, atol=DIRECTION_TOL):
            out.append(f"direction {_fmt(self.direction)} vs {_fmt(other.direction)}")
        out.append(f"image corners up to {moved:.3g} mm apart (limit {limit:.3g} mm = {tolerance:g} of the smallest voxel)")
        return out

    def blank(self, pixel_type: int = sitk.sitkFloat32) -> sitk.Image:
        """An all-zero image on this grid."""
        image = sitk.Image([int(s) for s in self.size], pixel_type)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def image_format(path: PathLike) -> str:
    """'dicom' for a directory, else the volume suffix; raises for anything else."""
    path = Path(path)
    if path.is_dir():
        return "dicom"
    suffix = full_suffix(path)
    if suffix in VOLUME_SUFFIXES:
        return suffix
    if suffix == ".dcm":
        return "dicom-file"
    raise ImageReadError(
        f"{path}: unsupported image format {suffix!r}; expected a DICOM series folder or one of "
        + ", ".join(VOLUME_SUFFIXES)
    )


def read_image(path: PathLike, *, pixel_type: int | None = None, series_uid: str | None = None,
               allow_gaps: bool = False) -> sitk.Image:
    """Read a DICOM series folder, NIfTI, MHA/MHD or NRRD file, keeping its geometry.

    A folder with more than one DICOM series needs ``series_uid``: guessing would silently
    mix sequences. A series whose slices are not evenly spaced (a file missing from the
    middle) is refused, or with ``allow_gaps`` resampled onto even slices with a warning.
    Truncated NIfTI files and non-finite voxels are refused here, before any cast, so that
    no later stage sees made-up zeros or NaN.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: file or folder does not exist")
    kind = image_format(path)
    if series_uid is not None and kind not in ("dicom", "dicom-file"):
        raise ImageReadError(f"{path}: a DICOM series UID ({series_uid}) was given, but this is not a DICOM series")
    try:
        if kind == "dicom":
            image = _read_dicom_series(path, series_uid, allow_gaps)
        elif kind == "dicom-file":
            image = _read_dicom_series(path.parent, series_uid, allow_gaps)
        else:
            if kind in (".nii", ".nii.gz"):
                check_nifti_file(path)
            image = sitk.ReadImage(str(path))
    except ImageError:
        raise
    except RuntimeError as exc:  # SimpleITK raises RuntimeError with ITK's text
        first = str(exc).strip().splitlines()
        detail = next((line for line in first if "ERROR" in line or "rror" in line), first[-1] if first else "")
        raise ImageReadError(f"{path}: cannot be read as an image ({detail.strip()})") from exc
    if image.GetDimension() != 3:
        raise ImageReadError(f"{path}: expected a 3D volume, got {image.GetDimension()}D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(f"{path}: expected a scalar image, got {image.GetNumberOfComponentsPerPixel()} components per voxel")
    check_finite(image, path)  # before the cast: NaN cast to an integer type becomes a number
    if pixel_type is not None:
        image = sitk.Cast(image, pixel_type)
    return image


def check_nifti_file(path: PathLike) -> None:
    """Refuse a NIfTI file that is truncated or holds NaN/infinite voxels.

    ITK reads a truncated file without error (the missing voxels become 0) and turns NaN
    into 0, so both are checked on the file itself: the header's data size against the
    bytes present (file size for ``.nii``; the whole gzip stream, with its CRC, for
    ``.nii.gz``), and float voxels for NaN while they stream past. An uncompressed
    integer file costs one ``stat``; a ``.nii.gz`` costs one extra decompression.
    """
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    path = Path(path)
    try:
        proxy = nib.load(str(path)).dataobj  # reads the header only
        offset = int(proxy.offset)  # (the image's header copy resets vox_offset to 0)
        dtype = np.dtype(proxy.dtype)
        shape = tuple(int(s) for s in proxy.shape)
    except (ImageFileError, HeaderDataError, OSError, EOFError, ValueError, zlib.error) as exc:  # damaged header
        raise ImageReadError(f"{path}: cannot be read as an image (not a readable NIfTI header: {exc})") from exc
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    check_values = dtype.kind == "f"
    if full_suffix(path) == ".nii" and not check_values:
        present = path.stat().st_size - offset
        if present < expected:
            raise _truncated(path, present, expected)
        return
    scan = _NonFiniteScan(dtype, shape, check_values)
    seen = 0  # bytes of the uncompressed file seen so far
    with open(path, "rb") as handle:
        if full_suffix(path) == ".nii":
            chunks: Iterator[bytes] = iter(lambda: handle.read(_NIFTI_CHUNK), b"")
        else:
            chunks = _gunzip(handle, path)
        try:
            for chunk in chunks:
                start, end = seen, seen + len(chunk)
                seen = end
                lo, hi = max(start, offset), min(end, offset + expected)
                if hi > lo:
                    scan.feed(chunk[lo - start: hi - start])
                if seen >= offset + expected and full_suffix(path) == ".nii":
                    break
        except ImageReadError as exc:  # cut gzip stream: say how much voxel data is missing, when some is
            if seen < offset + expected:
                raise _truncated(path, max(seen - offset, 0), expected) from exc
            raise
    if seen < offset + expected:
        raise _truncated(path, max(seen - offset, 0), expected)
    if scan.count:
        raise ImageError(f"{path}: {scan.count} voxels are NaN or infinite (first at voxel x,y,z={scan.first}); "
                         f"fix or re-export the file (osteomet does not guess missing values)")


def _truncated(path: Path, present: int, expected: int) -> ImageReadError:
    return ImageReadError(f"{path}: file is truncated: the header promises {expected} bytes of voxel data but only "
                          f"{present} ({present / expected:.1%}) are there; copy or export the file again")


def _gunzip(handle: Any, path: Path) -> Iterator[bytes]:
    """Decompressed chunks of a (possibly multi-member) gzip file; raises if the stream is cut or corrupt."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    in_member = False  # inside a gzip member whose end has not been seen yet
    while True:
        raw = handle.read(_NIFTI_CHUNK)
        if not raw:
            break
        while raw:
            in_member = True
            try:
                out = decompressor.decompress(raw)
            except zlib.error as exc:
                raise ImageReadError(f"{path}: the gzip stream is corrupt ({exc}); copy or export the file again") from exc
            if out:
                yield out
            if decompressor.eof:  # end of one gzip member (CRC checked); another may follow
                raw, in_member = decompressor.unused_data, False
                decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                raw = b""
    if in_member:
        raise ImageReadError(f"{path}: file is truncated: the gzip stream ends before its end marker; "
                             f"copy or export the file again")


class _NonFiniteScan:
    """Counts NaN/infinite voxels in a byte stream of voxel data (file order: x fastest)."""

    def __init__(self, dtype: np.dtype, shape: tuple[int, ...], active: bool):
        self.dtype, self.shape, self.active = dtype, shape, active
        self.count, self.first = 0, None
        self._carry, self._done = b"", 0  # bytes of a voxel split across chunks; voxels seen

    def feed(self, data: bytes) -> None:
        if not self.active:
            return
        data = self._carry + data
        usable = len(data) - len(data) % self.dtype.itemsize
        self._carry = data[usable:]
        values = np.frombuffer(data[:usable], dtype=self.dtype)
        bad = ~np.isfinite(values)
        n_bad = int(bad.sum())
        if n_bad and self.first is None:
            flat = self._done + int(np.argmax(bad))
            self.first = tuple(int(i) for i in np.unravel_index(flat, self.shape, order="F"))[:3]
        self.count += n_bad
        self._done += values.size


def _read_dicom_series(folder: Path, series_uid: str | None, allow_gaps: bool = False) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise ImageReadError(f"{folder}: no DICOM series found in this folder")
    if series_uid is None:
        if len(series) > 1:
            raise ImageReadError(
                f"{folder}: {len(series)} DICOM series in one folder ({', '.join(s or '<no UID>' for s in series)}); "
                f"pass the series UID to choose one (manifest column <image>_series_uid, or --series-uid)"
            )
        series_uid = series[0]
    elif series_uid not in series:
        raise ImageReadError(f"{folder}: DICOM series {series_uid} not found (found {', '.join(s or '<no UID>' for s in series)})")
    files = list(reader.GetGDCMSeriesFileNames(str(folder), series_uid))
    positions = dicom_slice_positions(files)
    if positions is not None:  # GDCM falls back to file-name order when its own position sort fails
        order = np.argsort(positions, kind="stable")
        files, positions = [files[i] for i in order], positions[order]
    gaps = _uneven_steps(positions, files) if positions is not None else []
    if gaps and allow_gaps and not _strictly_monotonic(positions):
        raise ImageReadError(f"{folder}: slice spacing is not uniform: " + "; ".join(gaps)
                             + ". Two files share a slice position (duplicates?), so the series cannot be resampled "
                               "either; remove the duplicated files")
    if gaps and not allow_gaps:
        in_series = {Path(f).name for uid in series for f in reader.GetGDCMSeriesFileNames(str(folder), uid)}
        unread = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in in_series)
        hint = (f" ({len(unread)} file(s) in the folder could not be read as part of a series: "
                f"{', '.join(unread[:5])}{' ...' if len(unread) > 5 else ''}; damaged?)" if unread else "")
        raise ImageReadError(f"{folder}: slice spacing is not uniform: " + "; ".join(gaps) + hint
                             + ". Restore the missing DICOM files, or read the series with allow_gaps=True "
                               "to resample it onto evenly spaced slices")
    reader.SetFileNames(files)
    image = reader.Execute()
    if gaps:
        assert positions is not None
        image = _onto_even_slices(image, positions)
        _logger.warning("%s: slice spacing is not uniform: %s. Resampled onto %d evenly spaced slices %.4g mm apart "
                        "by linear interpolation along the slice normal", folder, "; ".join(gaps),
                        image.GetSize()[2], image.GetSpacing()[2])
    return image


def dicom_slice_positions(files: Sequence[str]) -> np.ndarray | None:
    """Position (mm) of each DICOM file's slice along the series' slice normal, in file order.

    From ImagePositionPatient and ImageOrientationPatient, read from the headers only. None
    when a file lacks them (nothing to check against) or for a single file.
    """
    if len(files) < 2:
        return None
    positions, normal = [], None
    for name in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(name))
        try:
            reader.ReadImageInformation()
            ipp = [float(v) for v in reader.GetMetaData("0020|0032").split("\\")]
            iop = [float(v) for v in reader.GetMetaData("0020|0037").split("\\")]
        except (RuntimeError, ValueError):
            return None
        if len(ipp) != 3 or len(iop) != 6:
            return None
        this_normal = np.cross(iop[:3], iop[3:])
        if normal is None:
            normal = this_normal
        elif np.abs(this_normal - normal).max() > 1e-3:
            raise ImageReadError(f"{Path(name).parent}: slices of one series have different orientations "
                                 f"({Path(files[0]).name} vs {Path(name).name}); not a single volume")
        positions.append(float(np.dot(ipp, normal)))
    return np.asarray(positions)


def _uneven_steps(positions: np.ndarray, files: Sequence[str]) -> list[str]:
    """One line per step between neighbouring slices that differs from the typical step."""
    steps = np.diff(positions)
    step = float(np.median(steps))
    tol = max(SLICE_STEP_TOL * abs(step), SLICE_STEP_TOL_MM)
    problems = []
    if abs(step) <= tol:
        return [f"most slices share one position (typical step {step:.3g} mm): duplicated files?"]
    for i in np.flatnonzero(np.abs(steps - step) > tol):
        a, b = Path(files[i]).name, Path(files[i + 1]).name
        text = f"{steps[i]:.4g} mm between {a} and {b} instead of {abs(step):.4g} mm"
        missing = round(steps[i] / step) - 1
        if missing >= 1 and abs(steps[i] - (missing + 1) * step) <= tol * (missing + 1):
            where = ", ".join(f"{positions[i] + m * step:.2f}" for m in range(1, missing + 1))
            text += f" ({missing} slice(s) missing, at {where} mm along the slice normal)"
        problems.append(text)
    return problems


def _strictly_monotonic(positions: np.ndarray | None) -> bool:
    """True when every slice lies beyond the previous one, in one direction (no duplicates)."""
    if positions is None:
        return True
    steps = np.diff(positions) * np.sign(np.median(np.diff(positions)))
    return bool(np.all(steps > SLICE_STEP_TOL_MM))


def _onto_even_slices(image: sitk.Image, positions: np.ndarray) -> sitk.Image:
    """Resample the stacked slices onto evenly spaced ones, linearly along the slice normal.

    ITK stacked the slices in file order at one average spacing; their true positions are
    ``positions``. The new grid keeps the first and last slice and the typical step.
    """
    array = sitk.GetArrayFromImage(image).astype(np.float32)  # z, y, x in file order
    step = float(np.median(np.diff(positions)))
    n = round((positions[-1] - positions[0]) / step) + 1
    targets = positions[0] + np.arange(n) * (positions[-1] - positions[0]) / (n - 1)
    order = np.argsort(positions)
    sorted_pos = positions[order]
    upper = np.clip(np.searchsorted(sorted_pos, targets, side="left"), 1, len(sorted_pos) - 1)
    lower = upper - 1
    weight = (targets - sorted_pos[lower]) / (sorted_pos[upper] - sorted_pos[lower])
    weight = np.where(np.abs(weight) < 1e-6, 0.0, np.where(np.abs(weight - 1) < 1e-6, 1.0, weight))  # real slices kept exactly
    weight = weight[:, None, None]
    resampled = (1 - weight) * array[order[lower]] + weight * array[order[upper]]
    out = sitk.GetImageFromArray(resampled.astype(np.float32))
    out.SetOrigin(image.GetOrigin())
    out.SetDirection(image.GetDirection())
    out.SetSpacing((*image.GetSpacing()[:2], abs(positions[-1] - positions[0]) / (n - 1)))
    return out


def check_finite(image: sitk.Image, path: PathLike | str = "image") -> None:
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0][::-1])
            raise ImageError(f"{path}: {int(bad.sum())} voxels are NaN or infinite (first at voxel x,y,z={first})")


def write_image(image: sitk.Image, path: PathLike, *, compress: bool = True) -> Path:
    """Write atomically (temporary name, then rename); the format follows the suffix."""
    path = Path(path)
    image_format(path)  # refuse unknown suffixes before writing anything
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
    return path


def check_same_geometry(image: sitk.Image, reference: sitk.Image, *, name: PathLike | str, reference_name: PathLike | str) -> None:
    """Raise unless ``image`` lies on ``reference``'s grid (same size, corners within the tolerance)."""
    diffs = Geometry.of(image).differences(Geometry.of(reference))
    if diffs:
        raise GeometryMismatchError(f"{name}: not on the grid of {reference_name}: " + "; ".join(diffs)
                                    + "; resample it onto that grid, or check that it belongs to this image")


def align_to_reference(image: sitk.Image, reference: sitk.Image, *, name: PathLike | str,
                       reference_name: PathLike | str) -> sitk.Image:
    """``image`` with ``reference``'s exact header, after checking the two grids agree physically.

    Masks from annotation tools carry headers that differ from their image by round-off;
    once :func:`check_same_geometry` accepts them, the reference header is copied (and the
    displacement logged) so every later step sees one grid.
    """
    check_same_geometry(image, reference, name=name, reference_name=reference_name)
    own, ref = Geometry.of(image), Geometry.of(reference)
    if own == ref:
        return image
    moved = own.displacement_mm(ref)
    out = sitk.Image(image)
    out.CopyInformation(reference)
    level = logging.INFO if moved < 0.01 * min(ref.spacing) else logging.WARNING
    _logger.log(level, "%s: header differs from %s by at most %.3g mm at the image corners (within %g voxel); "
                "copied the reference geometry onto it", name, reference_name, moved, GEOMETRY_TOLERANCE_VOXELS)
    return out


def read_lesion_labels(path: PathLike, *, reference: sitk.Image | None = None,
                       reference_name: PathLike | str = "the reference image", allow_empty: bool = False) -> sitk.Image:
    """Read a tumour mask keeping its integer labels: 0 is background, any positive label is tumour.

    Real annotations label lesions with integers (PI-CAI: each lesion's ISUP grade, 2-5;
    other tools: 255, or 1..N per lesion), so integer masks are accepted as "non-zero =
    tumour". A float mask must hold only 0 and 1: other values mean a probability map or a
    resampled mask, whose threshold is the user's call. Negative labels are refused.
    """
    labels = read_image(path)
    array = sitk.GetArrayViewFromImage(labels)
    values = np.unique(array)
    if np.issubdtype(array.dtype, np.floating):
        extra = [v for v in values.tolist() if v not in (0, 1)]
        if extra:
            shown = ", ".join(f"{v:g}" for v in extra[:6]) + (" ..." if len(extra) > 6 else "")
            raise MaskError(f"{path}: mask is not binary: a float mask must hold only 0 and 1, this one has {shown}; "
                            f"threshold it (or store integer labels) first")
    if values.min() < 0:
        raise MaskError(f"{path}: mask has negative labels (min {values.min():g}); labels must be 0 (background) "
                        f"or positive (tumour)")
    if not allow_empty and values.max() <= 0:
        raise MaskError(f"{path}: mask is empty (no tumour voxel)")
    positive = [int(v) for v in values.tolist() if v > 0]
    if positive and positive != [1]:
        _logger.info("%s: mask labels %s read as tumour (non-zero = tumour)", path, positive[:10])
    labels = sitk.Cast(labels, sitk.sitkUInt8 if values.max() <= 255 else sitk.sitkUInt16)
    if reference is not None:
        labels = align_to_reference(labels, reference, name=path, reference_name=reference_name)
    return labels


def read_mask(path: PathLike, *, reference: sitk.Image | None = None, reference_name: PathLike | str = "the reference image",
              allow_empty: bool = False) -> sitk.Image:
    """Read a tumour mask as 0/1 (uint8), optionally checked against and aligned to a reference grid.

    Any positive integer label counts as tumour (see :func:`read_lesion_labels`).
    """
    labels = read_lesion_labels(path, reference=reference, reference_name=reference_name, allow_empty=allow_empty)
    return sitk.Cast(labels > 0, sitk.sitkUInt8)


def read_label_map(path: PathLike, *, reference: sitk.Image | None = None,
                   reference_name: PathLike | str = "the reference image") -> sitk.Image:
    """Read an integer label map (e.g. TotalSegmentator bones), checked for integer values and grid."""
    labels = read_image(path)
    array = sitk.GetArrayViewFromImage(labels)
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.mod(array, 1) == 0):
        raise MaskError(f"{path}: label map has non-integer values")
    if array.min() < 0:
        raise MaskError(f"{path}: label map has negative labels (min {array.min():g})")
    labels = sitk.Cast(labels, sitk.sitkUInt16)
    if reference is not None:
        labels = align_to_reference(labels, reference, name=path, reference_name=reference_name)
    return labels


def physical_overlap_fraction(moving: sitk.Image, reference: sitk.Image) -> float:
    """Fraction of the reference grid's voxels whose centre falls inside ``moving``'s extent."""
    ones = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving)
    inside = sitk.Resample(ones, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return float(sitk.GetArrayViewFromImage(inside).mean())


def resample_to_reference(moving: sitk.Image, reference: sitk.Image, *, interpolator: int = sitk.sitkLinear,
                          default_value: float = 0.0, name: PathLike | str = "image",
                          reference_name: PathLike | str = "reference", min_overlap: float = 0.05) -> sitk.Image:
    """Resample ``moving`` onto the grid of ``reference`` in physical space (identity transform).

    Matching is by world coordinates (origin, spacing, direction), never by array shape:
    DWI and ADC usually have a coarser matrix and a different field of view than T2.
    Raises when the two volumes barely overlap, which almost always means a wrong file
    or a broken header rather than a real acquisition.
    """
    overlap = physical_overlap_fraction(moving, reference)
    if overlap < min_overlap:
        raise GeometryMismatchError(
            f"{name}: covers only {overlap:.1%} of {reference_name} in physical space "
            f"(origin {_fmt(moving.GetOrigin())} vs {_fmt(reference.GetOrigin())} mm); wrong series or header?"
        )
    pixel = sitk.sitkFloat32 if interpolator != sitk.sitkNearestNeighbor else moving.GetPixelID()
    return sitk.Resample(moving, reference, sitk.Transform(), interpolator, default_value, pixel)
