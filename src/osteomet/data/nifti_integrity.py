"""Refusing damaged NIfTI files that ITK would read without a word: truncated data, NaN voxels."""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from osteomet.data.image_errors import ImageError, ImageReadError
from osteomet.utils.files import full_suffix

_NIFTI_CHUNK = 1 << 24  # bytes read at a time when checking a NIfTI file


def check_nifti_file(path: str | os.PathLike[str]) -> None:
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
        pixdim = _raw_pixdim(path)
        dtype = np.dtype(proxy.dtype)
        shape = tuple(int(s) for s in proxy.shape)
    except (ImageFileError, HeaderDataError, OSError, EOFError, ValueError, zlib.error) as exc:  # damaged header
        raise ImageReadError(f"{path}: cannot be read as an image (not a readable NIfTI header: {exc})") from exc
    _check_pixdim(path, pixdim[:min(len(shape), 3)])
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


def _raw_pixdim(path: Path) -> np.ndarray:
    """``pixdim[1:4]`` as the file stores it (nibabel's header check would already have replaced bad values)."""
    import gzip

    opener = gzip.open if full_suffix(path) == ".nii.gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read(540)
    for order in ("<", ">"):
        size = int(np.frombuffer(raw[:4], dtype=f"{order}i4")[0])
        if size == 348:  # NIfTI-1: float32 pixdim[8] at byte 76
            return np.frombuffer(raw, dtype=f"{order}f4", count=8, offset=76)[1:4].astype(float)
        if size == 540:  # NIfTI-2: float64 pixdim[8] at byte 104
            return np.frombuffer(raw, dtype=f"{order}f8", count=8, offset=104)[1:4].astype(float)
    raise ValueError("header size is neither 348 (NIfTI-1) nor 540 (NIfTI-2)")


def _check_pixdim(path: Path, pixdim: np.ndarray) -> None:
    """Refuse zero, negative or non-finite voxel sizes in the header.

    ITK's NIfTI reader replaces a zero ``pixdim`` by 1 mm with only a console warning, so a
    volume whose slice spacing was lost would be read on a made-up grid and every later
    resampling, ROI and volume would be wrong without a word.
    """
    bad = [(axis, float(size)) for axis, size in zip("xyz", pixdim) if not np.isfinite(size) or size <= 0]
    if bad:
        sizes = ", ".join(f"{axis} {size:g}" for axis, size in bad)
        raise ImageReadError(f"{path}: the header gives voxel sizes that are not a physical grid ({sizes} mm in "
                             f"pixdim); re-export the image with its true spacing (osteomet does not assume 1 mm)")


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
