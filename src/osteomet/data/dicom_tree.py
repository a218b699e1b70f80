"""Scanning a DICOM tree: every file's header, grouped into patients, studies and series.

A PACS or research export is thousands of files in any nesting, with or without a ``.dcm``
suffix, several patients, studies and series mixed. Only headers are read
(``pydicom.dcmread(stop_before_pixels=True, specific_tags=...)``), on a process pool over
chunks of files, so 10,000 files take seconds. Files that are not DICOM (notes, thumbnails,
``.DS_Store``) are skipped quietly and counted; a DICOM file that cannot be read, or whose
pixel data is cut short (a truncated copy), is recorded with the reason and never stops the scan.

Grouping uses the UIDs (PatientID, StudyInstanceUID, SeriesInstanceUID). Anonymised exports
sometimes blank them: then a patient is its study or its folder, a study its date or folder, and
a series the files of one folder that share modality, series number, description and geometry;
the ``grouping`` of each series says which was used. The study date is kept for ordering
studies only: nothing here writes it anywhere.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from osteomet.errors import InputError
from osteomet.utils.cores import resolve_jobs

#: Standard attributes read from every file (keywords); vendor b-value tags and a mapping's tags are added.
SCAN_KEYWORDS = (
    "SpecificCharacterSet", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "StudyDate", "StudyTime", "Modality",
    "SeriesDescription", "SeriesNumber", "ImageType", "ImageOrientationPatient", "ImagePositionPatient",
    "PixelSpacing", "SliceThickness", "ConvolutionKernel", "BodyPartExamined", "Rows", "Columns",
    "FrameOfReferenceUID", "Manufacturer", "SequenceName", "EchoTime", "RepetitionTime", "ScanningSequence",
    "DiffusionBValue", "NumberOfFrames",
)
#: Fewer files than this are read in this process: starting workers would take longer than reading them.
SERIAL_BELOW = 400
#: Media Storage SOP Class of a DICOMDIR: an index of the export, not an image.
DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
#: Private creators live in slots (gggg,0010)-(gggg,00FF); vendors use the first ones, but not always the same.
_CREATOR_SLOTS = range(0x10, 0x20)


@dataclass(frozen=True)
class BValueSource:
    """Where one convention keeps a file's b-value: a standard tag, or a vendor's private element.

    ``tag`` is ``(group, element)``; for a private element (``creator`` set) only the low byte of
    the element counts, and the block is found from the creator's name, whichever slot it took.
    """

    name: str
    tag: tuple[int, int]
    creator: str | None = None


@dataclass(frozen=True)
class ScanSettings:
    """What the workers read: the b-value conventions and the extra tags a mapping matches on."""

    b_value_sources: tuple[BValueSource, ...] = ()
    #: Regular expressions whose first group is the b-value in a file's SequenceName (Siemens ``*ep_b1400t``).
    sequence_b_patterns: tuple[str, ...] = ()
    #: Extra attributes, ``(name, (group, element))``, whose first-file value each series keeps (a mapping's keys).
    extra_tags: tuple[tuple[str, tuple[int, int]], ...] = ()

    def tags(self) -> list[Any]:
        from pydicom.tag import Tag

        tags: list[Any] = [Tag(k) for k in SCAN_KEYWORDS]
        for source in self.b_value_sources:
            group, element = source.tag
            if source.creator is None:
                tags.append(Tag(group, element))
            else:
                for slot in _CREATOR_SLOTS:
                    tags += [Tag(group, slot), Tag(group, (slot << 8) | (element & 0xFF))]
        tags += [Tag(*tag) for _, tag in self.extra_tags]
        return sorted(set(tags))


@dataclass
class FileHeader:
    """The attributes of one DICOM file that grouping and classification use (internal only)."""

    path: str
    patient_id: str
    study_uid: str
    series_uid: str
    study_date: str
    study_time: str
    modality: str
    description: str
    series_number: str
    image_type: tuple[str, ...]
    iop: tuple[float, ...] | None
    ipp: tuple[float, ...] | None
    pixel_spacing: tuple[float, ...] | None
    slice_thickness: float | None
    kernel: str
    body_part: str
    rows: int | None
    columns: int | None
    frame_of_reference: str
    manufacturer: str
    sequence_name: str
    echo_time: float | None
    repetition_time: float | None
    scanning_sequence: tuple[str, ...]
    b_value: float | None
    b_source: str
    frames: int
    extra: dict[str, str]
    problem: str | None = None


@dataclass
class SeriesInfo:
    """One series of the tree: its files, where they are, and what their headers say."""

    key: str
    series_uid: str
    grouping: str
    patient_key: str
    dicom_patient_id: str
    study_key: str
    study_date: str
    study_time: str
    modality: str
    description: str
    series_number: str
    manufacturer: str
    files: list[Path]
    folders: list[Path]
    image_type: tuple[str, ...]
    orientation: str
    normal: tuple[float, float, float] | None
    pixel_spacing: tuple[float, ...] | None
    slice_thickness: float | None
    kernel: str
    body_part: str
    rows: int | None
    columns: int | None
    frame_of_reference: str
    sequence_name: str
    echo_time: float | None
    repetition_time: float | None
    scanning_sequence: tuple[str, ...]
    #: Each file's b-value (None where no convention gave one), in the order of ``files``.
    file_b_values: list[float | None]
    b_values: tuple[float, ...]
    b_source: str
    #: Distinct slice positions, and files per position (>1: several b-values, echoes or time points).
    n_positions: int
    volumes: int
    extra: dict[str, str]
    problems: list[str] = field(default_factory=list)
    #: Problems that make the series unusable as an image whatever its files are used for (truncated, multi-frame).
    blocking: list[str] = field(default_factory=list)
    headers: dict[Path, FileHeader] = field(default_factory=dict, repr=False)

    def layout(self, files: Sequence[Path] | None = None) -> tuple[int, int, list[str]]:
        """Distinct slice positions, files per position and spacing problems of ``files`` (default: all)."""
        if self.orientation == "mixed":
            return len(self.files), 1, ["slices in several planes: not one volume"]
        return _slice_layout([self.headers[f] for f in (self.files if files is None else files)])


@dataclass
class ScanResult:
    """Every series of a tree, and what could not be read."""

    root: Path
    series: list[SeriesInfo]
    n_files: int
    n_dicom: int
    n_skipped: int
    unreadable: list[tuple[str, str]]
    seconds: float
    jobs: int


def plane(iop: Sequence[float] | None) -> tuple[str, tuple[float, float, float] | None]:
    """Axial, coronal or sagittal: the patient axis the slice normal is closest to (oblique slices included)."""
    if iop is None or len(iop) != 6:
        return "unknown", None
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    norm = float(np.linalg.norm(normal))
    if not norm > 0:
        return "unknown", None
    normal = normal / norm
    axis = int(np.argmax(np.abs(normal)))
    return ("sagittal", "coronal", "axial")[axis], (float(normal[0]), float(normal[1]), float(normal[2]))


def scan_tree(root: str | os.PathLike[str], *, settings: ScanSettings | None = None, jobs: int | None = None,
              files: Sequence[str] | None = None, progress: Callable[[int], None] | None = None) -> ScanResult:
    """Read the headers of every file under ``root`` (any nesting) and group them into series.

    ``jobs`` worker processes (default: every CPU this process may use); ``files``: the listing
    of :func:`list_files` when the caller already made it (to size a progress bar);
    ``progress(k)`` after each chunk of ``k`` files.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; give the folder of a DICOM export")
    settings = settings or ScanSettings()
    started = time.perf_counter()
    files = list(files) if files is not None else list_files(root)
    jobs = max(1, resolve_jobs(jobs))
    if len(files) < SERIAL_BELOW:
        jobs = 1
    headers: list[FileHeader] = []
    skipped = 0
    unreadable: list[tuple[str, str]] = []
    for chunk_headers, chunk_skipped, chunk_unreadable in _run_chunks(files, settings, jobs, progress):
        headers += chunk_headers
        skipped += chunk_skipped
        unreadable += chunk_unreadable
    unreadable += [(h.path, h.problem) for h in headers if h.problem]
    series = group_series(headers, root)
    return ScanResult(root=root, series=series, n_files=len(files), n_dicom=len(headers), n_skipped=skipped,
                      unreadable=sorted(unreadable), seconds=time.perf_counter() - started, jobs=jobs)


def list_files(root: Path) -> list[str]:
    """Every file under ``root``, in a stable order; links to folders are not followed (they can loop)."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        found += [os.path.join(folder, n) for n in sorted(names)]
    return found


def _run_chunks(files: Sequence[str], settings: ScanSettings, jobs: int,
                progress: Callable[[int], None] | None) -> Iterable[tuple[list[FileHeader], int, list[tuple[str, str]]]]:
    import pydicom  # noqa: F401  (imported once here, so forked workers start with it)

    size = max(32, min(512, len(files) // (jobs * 8) or 32))
    chunks = [files[i:i + size] for i in range(0, len(files), size)]
    if jobs == 1:
        for chunk in chunks:
            result = read_headers(chunk, settings)
            if progress:
                progress(len(chunk))
            yield result
        return
    with ProcessPoolExecutor(max_workers=min(jobs, len(chunks))) as pool:
        futures = {pool.submit(read_headers, chunk, settings): len(chunk) for chunk in chunks}
        for future in as_completed(futures):
            yield future.result()
            if progress:
                progress(futures[future])


def read_headers(paths: Sequence[str], settings: ScanSettings) -> tuple[list[FileHeader], int, list[tuple[str, str]]]:
    """The headers of ``paths``; the number of files that are not DICOM; (file, reason) of each unreadable one."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    tags = settings.tags()
    patterns = [re.compile(p, re.IGNORECASE) for p in settings.sequence_b_patterns]
    headers, skipped, unreadable = [], 0, []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                ds = pydicom.dcmread(handle, stop_before_pixels=True, specific_tags=tags)
                pixel_problem = _pixel_data_problem(ds, handle, os.fstat(handle.fileno()).st_size)
        except InvalidDicomError:
            skipped += 1  # no DICM preamble: not a DICOM file
            continue
        except (OSError, EOFError, ValueError, struct.error, KeyError, TypeError, IndexError,
                AttributeError, NotImplementedError) as exc:
            unreadable.append((path, f"cannot be read as DICOM ({type(exc).__name__}: {exc})"))
            continue
        meta_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
        if meta_class == DICOMDIR_CLASS:
            skipped += 1  # an index of the export
            continue
        try:
            header = _header(path, ds, settings, patterns)
        except (ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError) as exc:
            unreadable.append((path, f"header values cannot be read ({type(exc).__name__}: {exc})"))
            continue
        if not header.modality and not header.series_uid and header.rows is None:
            unreadable.append((path, "the header ends before Modality, SeriesInstanceUID and the image attributes "
                                     "(a truncated or incomplete file)"))
            continue
        header.problem = pixel_problem
        headers.append(header)
    return headers, skipped, unreadable


def _pixel_data_problem(ds: Any, handle: Any, size: int) -> str | None:
    """Why an image's pixel data is missing or cut short (a truncated copy), read from the element header only."""
    if ds.get_item(0x00280010) is None:  # no Rows
        return None  # not an image (SR, PR, KO): nothing to check
    position = handle.tell()
    head = handle.read(12)
    if len(head) < 8:
        return "truncated: the file ends before the pixel data"
    implicit, little = getattr(ds, "original_encoding", (False, True))
    order = "<" if little is not False else ">"
    group, element = struct.unpack(order + "HH", head[:4])
    if (group, element) not in ((0x7FE0, 0x0010), (0x7FE0, 0x0008), (0x7FE0, 0x0009)):
        return None  # something else follows the header (e.g. trailing private data): nothing to measure
    if implicit:
        (length,), start = struct.unpack(order + "I", head[4:8]), position + 8
    elif head[4:6] in (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"UT", b"SQ", b"UC", b"UR"):
        if len(head) < 12:
            return "truncated: the file ends inside the pixel data header"
        (length,), start = struct.unpack(order + "I", head[8:12]), position + 12
    else:
        (length,), start = struct.unpack(order + "H", head[6:8]), position + 8
    if length == 0xFFFFFFFF:
        return None  # encapsulated (compressed) fragments: their length is not declared up front
    if start + length > size:
        return f"truncated: pixel data ends {start + length - size} bytes short of its declared {length} bytes"
    return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1", "replace").strip(" \x00")
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(_text(v) for v in value)
    return str(value).strip()


def _float(value: Any) -> float | None:
    try:
        if value is None or value == "":
            return None
        if type(value).__name__ == "MultiValue" or isinstance(value, (list, tuple)):
            value = value[0]
        number = float(value)
    except (TypeError, ValueError, IndexError):
        return None
    return number if np.isfinite(number) else None


def _floats(values: Sequence[Any], n: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == n and all(np.isfinite(numbers)) else None


def _number_from_element(value: Any, vr: str | None = None) -> float | None:
    """A number from an element's raw value: text (``b'1000'``, ``1000000800\\8\\0``) or a binary float.

    The VR decides when the file states it (explicit VR); an implicit-VR private element has
    none, so text is tried first and 4 or 8 bytes that are not text are read as a float.
    """
    if isinstance(value, bytes):
        if vr in ("FL", "FD") and len(value) in (4, 8):
            return float(struct.unpack("<f" if len(value) == 4 else "<d", value)[0])
        text = value.decode("latin-1").strip(" \x00")
        first = text.split("\\")[0].strip()
        try:
            return float(first)
        except ValueError:
            pass
        if len(value) == 4:
            return float(struct.unpack("<f", value)[0])
        if len(value) == 8:
            return float(struct.unpack("<d", value)[0])
        return None
    return _float(value)


class _Raw:
    """Values of a dataset read from its raw elements: pydicom's value conversion would double the scan time."""

    def __init__(self, ds: Any):
        self.ds = ds
        _, little = getattr(ds, "original_encoding", (False, True))
        self.order = "<" if little is not False else ">"
        charset = self.element(0x00080005)
        self.encoding = "utf-8" if charset is not None and "192" in _text(charset.value) else "latin-1"

    def element(self, tag: int) -> Any:
        return self.ds.get_item(tag)

    def text(self, tag: int) -> str:
        element = self.element(tag)
        if element is None:
            return ""
        value = element.value
        if isinstance(value, bytes):
            return value.decode(self.encoding, "replace").strip(" \x00")
        return _text(value)

    def texts(self, tag: int) -> tuple[str, ...]:
        return tuple(v.strip().upper() for v in self.text(tag).split("\\") if v.strip())

    def number(self, tag: int) -> float | None:
        return _float(self.text(tag).split("\\")[0].strip())

    def numbers(self, tag: int, n: int) -> tuple[float, ...] | None:
        text = self.text(tag)
        return _floats(text.split("\\"), n) if text else None

    def ushort(self, tag: int) -> int | None:
        element = self.element(tag)
        if element is None or element.value in (None, b""):
            return None
        value = element.value
        if isinstance(value, bytes):
            return struct.unpack(self.order + "H", value[:2])[0] if len(value) >= 2 else None
        return int(value)


def _b_value(raw: _Raw, settings: ScanSettings, patterns: Sequence[re.Pattern[str]],
             sequence_name: str) -> tuple[float | None, str]:
    for source in settings.b_value_sources:
        group, element = source.tag
        item = None
        if source.creator is None:
            item = raw.element((group << 16) | element)
        else:
            for slot in _CREATOR_SLOTS:
                creator = raw.text((group << 16) | slot)
                if creator and source.creator.lower() in creator.lower():
                    item = raw.element((group << 16) | (slot << 8) | (element & 0xFF))
                    break
        if item is None or item.value in (None, b"", ""):
            continue
        value = _number_from_element(item.value, getattr(item, "VR", None))
        if value is None:
            continue
        if value >= 1e9:  # GE writes 1000000000 + b on some software versions
            value -= 1e9
        if 0 <= value <= 20000:
            return round(value, 1), source.name
    for pattern in patterns:
        match = pattern.search(sequence_name)
        if match:
            return float(match.group(1)), "SequenceName"
    return None, ""


def _header(path: str, ds: Any, settings: ScanSettings, patterns: Sequence[re.Pattern[str]]) -> FileHeader:
    raw = _Raw(ds)
    sequence_name = raw.text(0x00180024)
    b_value, b_source = _b_value(raw, settings, patterns, sequence_name)
    extra = {name: raw.text((group << 16) | element) for name, (group, element) in settings.extra_tags}
    kernel = raw.text(0x00181210).split("\\")[0].strip()
    frames = raw.number(0x00280008)
    return FileHeader(
        path=path,
        patient_id=raw.text(0x00100020),
        study_uid=raw.text(0x0020000D),
        series_uid=raw.text(0x0020000E),
        study_date=raw.text(0x00080020),
        study_time=raw.text(0x00080030),
        modality=raw.text(0x00080060).upper(),
        description=raw.text(0x0008103E),
        series_number=raw.text(0x00200011),
        image_type=raw.texts(0x00080008),
        iop=raw.numbers(0x00200037, 6),
        ipp=raw.numbers(0x00200032, 3),
        pixel_spacing=raw.numbers(0x00280030, 2),
        slice_thickness=raw.number(0x00180050),
        kernel=kernel,
        body_part=raw.text(0x00180015).upper(),
        rows=raw.ushort(0x00280010),
        columns=raw.ushort(0x00280011),
        frame_of_reference=raw.text(0x00200052),
        manufacturer=raw.text(0x00080070),
        sequence_name=sequence_name,
        echo_time=raw.number(0x00180081),
        repetition_time=raw.number(0x00180080),
        scanning_sequence=raw.texts(0x00180020),
        b_value=b_value,
        b_source=b_source,
        frames=int(frames or 1),
        extra=extra,
    )


def _patient_key(h: FileHeader, folder: str) -> str:
    if h.patient_id:
        return "id:" + h.patient_id
    if h.study_uid:
        return "study:" + h.study_uid
    return "folder:" + folder


def _study_key(h: FileHeader, folder: str) -> str:
    if h.study_uid:
        return "uid:" + h.study_uid
    if h.study_date:
        return f"date:{h.study_date}{h.study_time}"
    return "folder:" + folder


def _series_key(h: FileHeader, folder: str) -> tuple[str, str]:
    if h.series_uid:
        return "uid:" + h.series_uid, "SeriesInstanceUID"
    iop = tuple(round(v, 3) for v in h.iop) if h.iop else None
    spacing = tuple(round(v, 4) for v in h.pixel_spacing) if h.pixel_spacing else None
    signature = repr((folder, h.modality, h.series_number, h.description, iop, h.rows, h.columns, spacing,
                      h.frame_of_reference))
    return ("geometry:" + hashlib.sha256(signature.encode()).hexdigest()[:16],
            "folder + geometry (no SeriesInstanceUID)")


def group_series(headers: Sequence[FileHeader], root: Path) -> list[SeriesInfo]:
    """One :class:`SeriesInfo` per (patient, study, series), in a stable order."""
    groups: dict[tuple[str, str, str], list[FileHeader]] = {}
    groupings: dict[tuple[str, str, str], str] = {}
    for h in headers:
        folder = os.path.dirname(h.path)
        key, grouping = _series_key(h, folder)
        full = (_patient_key(h, folder), _study_key(h, folder), key)
        groups.setdefault(full, []).append(h)
        groupings[full] = grouping
    series = [_summarise(key, sorted(members, key=lambda m: m.path), groupings[key])
              for key, members in groups.items()]
    return sorted(series, key=lambda s: (s.patient_key, s.study_date, s.study_time, s.study_key,
                                         _series_number(s.series_number), s.description, s.key))


def _series_number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("inf")


def _most_common(values: Iterable[Any]) -> Any:
    counts = Counter(values)
    return counts.most_common(1)[0][0] if counts else None


def _summarise(key: tuple[str, str, str], members: list[FileHeader], grouping: str) -> SeriesInfo:
    first = members[0]
    planes = {plane(m.iop)[0] for m in members}
    orientation = planes.pop() if len(planes) == 1 else ("mixed" if planes - {"unknown"} else "unknown")
    normal = plane(first.iop)[1] if orientation not in ("mixed", "unknown") else None
    b_values = tuple(sorted({m.b_value for m in members if m.b_value is not None}))
    sources = sorted({m.b_source for m in members if m.b_source})
    problems, blocking = [], []
    truncated = [m for m in members if m.problem]
    if truncated:
        text = f"{len(truncated)} of {len(members)} files truncated ({Path(truncated[0].path).name}: {truncated[0].problem})"
        problems.append(text)
        blocking.append(text)
    if max(m.frames for m in members) > 1:
        text = ("multi-frame (enhanced) DICOM: one file holds many frames, which osteomet's DICOM reader does not "
                "assemble; convert it with dcm2niix")
        problems.append(text)
        blocking.append(text)
    if grouping != "SeriesInstanceUID":
        problems.append("no SeriesInstanceUID: files grouped by folder, modality, series number, description "
                        "and geometry")
    if not first.patient_id:
        problems.append("no PatientID: the patient is " + ("its study" if first.study_uid else "its folder"))
    n_positions, volumes, layout = _slice_layout(members) if orientation != "mixed" else (len(members), 1, [])
    problems += layout
    info = SeriesInfo(
        key="|".join(key), series_uid=first.series_uid, grouping=grouping, patient_key=key[0],
        dicom_patient_id=first.patient_id, study_key=key[1], study_date=first.study_date,
        study_time=first.study_time, modality=first.modality, description=first.description,
        series_number=first.series_number, manufacturer=first.manufacturer,
        files=[Path(m.path) for m in members],
        folders=sorted({Path(m.path).parent for m in members}),
        image_type=_most_common(m.image_type for m in members) or (),
        orientation=orientation, normal=normal,
        pixel_spacing=_most_common(m.pixel_spacing for m in members),
        slice_thickness=_most_common(m.slice_thickness for m in members),
        kernel=first.kernel, body_part=first.body_part,
        rows=_most_common(m.rows for m in members), columns=_most_common(m.columns for m in members),
        frame_of_reference=first.frame_of_reference, sequence_name=first.sequence_name,
        echo_time=first.echo_time, repetition_time=first.repetition_time,
        scanning_sequence=first.scanning_sequence,
        file_b_values=[m.b_value for m in members], b_values=b_values, b_source=", ".join(sources),
        n_positions=n_positions, volumes=volumes, extra=dict(first.extra), problems=problems, blocking=blocking,
        headers={Path(m.path): m for m in members},
    )
    return info


def _slice_layout(members: Sequence[FileHeader]) -> tuple[int, int, list[str]]:
    """Distinct slice positions, files per position, and what is wrong with the spacing (gaps, uneven counts)."""
    from osteomet.data.dicom_series import _uneven_steps

    if any(m.ipp is None or m.iop is None for m in members):
        return len(members), 1, []
    normal = np.cross(np.asarray(members[0].iop[:3]), np.asarray(members[0].iop[3:]))  # type: ignore[index]
    positions = np.round([float(np.dot(m.ipp, normal)) for m in members], 2)  # type: ignore[arg-type]
    unique, counts = np.unique(positions, return_counts=True)
    problems = []
    volumes = int(counts.max())
    if counts.min() != counts.max():
        problems.append(f"uneven number of files per slice position ({int(counts.min())} to {volumes}): "
                        f"a missing or duplicated file?")
    if len(unique) >= 3:
        gaps = _uneven_steps(unique, [f"{p:.2f} mm" for p in unique])
        if gaps:
            problems.append("slice spacing is not uniform: " + "; ".join(gaps[:3]))
    return len(unique), volumes, problems
