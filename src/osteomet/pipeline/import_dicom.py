"""``osteomet import dicom``: from a DICOM export to a study manifest, every choice recorded.

Scans the tree (headers only, in parallel: :mod:`osteomet.data.dicom_tree`), classifies every
series and chooses one study and one series per role per patient
(:mod:`osteomet.data.series_rules`), then writes into ``OUT``:

- ``manifest.csv``: the bpMRI manifest (DICOM folders with their series UIDs, or converted
  volumes), the clinical CSV joined by patient id; ``ct_manifest.csv`` likewise for CT;
- ``series.csv``: every series seen, what it was classified as, by which rule, and whether and
  why it was chosen; ``unreadable.csv``: each DICOM file that could not be read, and why;
- ``summary.md`` / ``summary.json``: patients complete, missing a modality, ambiguous (with the
  candidates, to settle in a mapping), studies chosen among several, series converted.

De-identification: patient ids are pseudonyms (``P0001``... in the order of the DICOM
PatientIDs) unless ``pseudonyms`` maps them or ``keep_patient_id`` is set; no PatientName,
PatientID or date is written anywhere else (studies are ``S1``, ``S2`` by date). The DICOM
folders named in a manifest are the user's own paths, written as they are.

Nothing is written inside ``root``; ``out`` must be new, empty or an earlier import's folder, and a
table of an earlier import that was edited since is never overwritten.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from osteomet import __version__
from osteomet.data.dicom_tree import ScanResult, SeriesInfo, list_files, scan_tree
from osteomet.data.formats import CONVERSIONS
from osteomet.data.series_rules import (
    MRI_ROLES,
    Candidate,
    Classification,
    PatientChoice,
    choose,
    classify,
    load_mapping,
    load_rules,
)
from osteomet.errors import InputError, OutputExistsError
from osteomet.layout import MARKER, STAGE_RECORD, is_osteomet_dir, open_run_dir
from osteomet.utils.files import read_json, sha256_file, write_json_atomic, write_text_atomic

PathLike = str | os.PathLike[str]

KIND = "import-dicom"
RECORD_FORMAT = "osteomet.import_dicom/1"
MRI_MANIFEST = "manifest.csv"
CT_MANIFEST = "ct_manifest.csv"
SERIES_TABLE = "series.csv"
UNREADABLE_TABLE = "unreadable.csv"
SUMMARY_MD = "summary.md"
SUMMARY_JSON = "summary.json"
IMPORT_RECORD = "import.json"
IMAGES = "images"
#: Columns a clinical CSV may not bring: the import writes them.
_IMAGE_COLUMNS = {"t2", "dwi", "adc", "ct", "t2_series_uid", "dwi_series_uid", "adc_series_uid", "ct_series_uid"}
_PATH_COLUMNS = ("mask", "lesion_mask", "bone_map")
_CT_COLUMNS = ("centre", "split", "lesion_mask", "bone_map")
SERIES_COLUMNS = ["patient_id", "study", "series_uid", "series_number", "modality", "manufacturer", "description",
                  "n_files", "folder", "orientation", "image_type", "b_values", "b_source", "pixel_spacing",
                  "slice_thickness", "kernel", "body_part", "grouping", "role", "rule", "why", "status", "decision",
                  "problems"]


@dataclass
class ImportSummary:
    """What an import wrote and what it could not settle (also in ``summary.json``)."""

    out: Path
    files: int
    dicom_files: int
    skipped_files: int
    unreadable_files: int
    series: int
    patients: int
    seconds: float
    jobs: int
    mri_complete: list[str] = field(default_factory=list)
    ct: list[str] = field(default_factory=list)
    missing: dict[str, dict[str, str]] = field(default_factory=dict)
    ambiguous: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    study_choices: dict[str, list[str]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    converted: list[dict[str, str]] = field(default_factory=list)
    not_in_pseudonym_map: int = 0
    clinical: dict[str, Any] = field(default_factory=dict)
    manifest: Path | None = None
    ct_manifest: Path | None = None

    @property
    def unsettled(self) -> list[str]:
        """Patients with a modality missing, ambiguous or not converted."""
        return sorted(set(self.missing) | set(self.ambiguous) | set(self.failed))

    @property
    def left_out(self) -> list[str]:
        """Unsettled patients that no manifest holds."""
        return sorted(set(self.unsettled) - set(self.mri_complete) - set(self.ct))

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items()}
        data["out"] = str(self.out)
        data["manifest"] = self.manifest.name if self.manifest else None
        data["ct_manifest"] = self.ct_manifest.name if self.ct_manifest else None
        data["seconds"] = round(self.seconds, 2)
        return data

    def lines(self) -> list[str]:
        """The short summary a command prints."""
        lines = [f"scanned {self.files} files in {self.seconds:.1f} s ({self.jobs} processes): {self.dicom_files} "
                 f"DICOM in {self.series} series of {self.patients} patients, {self.skipped_files} other files "
                 f"skipped, {self.unreadable_files} unreadable" + (f" (see {UNREADABLE_TABLE})"
                                                                    if self.unreadable_files else "")]
        if self.manifest:
            lines.append(f"bpMRI complete: {len(self.mri_complete)} patient(s) -> {self.manifest}")
        if self.ct_manifest:
            lines.append(f"CT: {len(self.ct)} patient(s) -> {self.ct_manifest}")
        for pid, roles in sorted(self.missing.items()):
            lines.append(f"missing: {pid}: no usable {', '.join(roles)}")
        for pid, roles in sorted(self.ambiguous.items()):
            for role, cands in roles.items():
                lines.append(f"ambiguous: {pid} {role}: {len(cands)} equally good candidates (see {SUMMARY_MD})")
        for pid, reason in sorted(self.failed.items()):
            lines.append(f"failed: {pid}: {reason}")
        for pid, notes in sorted(self.study_choices.items()):
            for note in notes:
                lines.append(f"study: {pid}: {note}")
        if self.not_in_pseudonym_map:
            lines.append(f"{self.not_in_pseudonym_map} patient(s) of the export are not in the pseudonym map: left out")
        if self.left_out:
            lines.append(f"{len(self.left_out)} patient(s) left out of the manifests: {', '.join(self.left_out)}; "
                         f"see {self.out / SUMMARY_MD}")
        return lines


def import_dicom(root: PathLike, out: PathLike, *, clinical: PathLike | None = None, mapping: PathLike | None = None,
                 rules: PathLike | None = None, pseudonyms: PathLike | None = None, keep_patient_id: bool = False,
                 convert: str | None = None, mapping_only: bool = False, strict: bool = False,
                 jobs: int | None = None, log: Callable[[str], None] = print) -> ImportSummary:
    """Scan ``root``, choose the series of every patient and write the manifests and reports into ``out``.

    ``strict``: raise :class:`InputError` (after writing everything) when a patient misses a modality, is
    ambiguous or could not be converted.
    """
    from osteomet.utils.progress import progress_bar

    root, out = Path(root).absolute(), Path(out)
    if convert is not None and convert not in CONVERSIONS:
        raise InputError(f"--convert {convert!r}: expected one of {', '.join(CONVERSIONS)}")
    if pseudonyms is not None and keep_patient_id:
        raise InputError("--pseudonyms and --keep-patient-id exclude each other: the map names every patient")
    if mapping_only and mapping is None:
        raise InputError("--mapping-only needs --mapping")
    _check_paths(root, out)
    ruleset = load_rules(rules)
    series_map = load_mapping(mapping) if mapping is not None else None
    pseudonym_map = _read_pseudonyms(Path(pseudonyms)) if pseudonyms is not None else None
    clinical_table = _read_clinical(Path(clinical)) if clinical is not None else None
    previous = _claim_output(out)

    files = list_files(root)
    with progress_bar("read DICOM headers", len(files)) as advance:
        scan = scan_tree(root, settings=ruleset.scan_settings(series_map), jobs=jobs, files=files, progress=advance)
    classes = {s.key: classify(s, ruleset, series_map, mapping_only=mapping_only) for s in scan.series}
    by_patient: dict[str, list[SeriesInfo]] = {}
    for s in scan.series:
        by_patient.setdefault(s.patient_key, []).append(s)
    ids, left_out = _patient_ids(by_patient, pseudonym_map, keep_patient_id)
    if left_out:
        log(f"not in the pseudonym map (left out): {', '.join(sorted(left_out))}")
    study_names = _study_names(by_patient)
    choices = {key: choose(members, classes, ruleset, study_names[key]) for key, members in by_patient.items()}

    summary = ImportSummary(out=out, files=scan.n_files, dicom_files=scan.n_dicom, skipped_files=scan.n_skipped,
                            unreadable_files=len(scan.unreadable), series=len(scan.series), patients=len(by_patient),
                            seconds=scan.seconds, jobs=scan.jobs, not_in_pseudonym_map=len(left_out))
    fill_patient_report(summary, ids, choices)
    references = _references(scan, ids, choices, summary, out, convert, log)
    mri_rows, ct_rows = _manifest_rows(by_patient, ids, choices, references)
    mri_frame, ct_frame = _join_clinical(mri_rows, ct_rows, clinical_table, by_patient, ids, summary)
    summary.mri_complete = mri_frame["patient_id"].tolist() if len(mri_frame) else []
    summary.ct = ct_frame["patient_id"].tolist() if len(ct_frame) else []

    settings = {"root": str(root.resolve()), "clinical": _abs(clinical), "mapping": _abs(mapping),
                "rules": _abs(rules), "pseudonyms": _abs(pseudonyms), "keep_patient_id": keep_patient_id,
                "convert": convert, "mapping_only": mapping_only}
    images = sorted(r["path"] for r in summary.converted)
    earlier = dict((previous or {}).get("files") or {})
    written: dict[str, str] = {}

    def record(path: Path | None, status: str = "writing") -> None:
        """Each file's hash as soon as it is written: an interrupted rerun still knows its own files."""
        if path is not None:
            written[path.name] = sha256_file(path)
        write_json_atomic(out / IMPORT_RECORD, {
            "format": RECORD_FORMAT, "kind": KIND, "osteomet": __version__, "status": status, "settings": settings,
            "files": {**earlier, **written} if status == "writing" else written,
            "images": sorted(set(images) | set((previous or {}).get("images") or [])) if status == "writing"
            else images})

    if len(mri_frame):
        summary.manifest = _write_manifest(mri_frame, out / MRI_MANIFEST, "mri")
        record(summary.manifest)
    if len(ct_frame):
        summary.ct_manifest = _write_manifest(ct_frame, out / CT_MANIFEST, "ct")
        record(summary.ct_manifest)
    tables = {
        SERIES_TABLE: _series_table(by_patient, ids, classes, choices, study_names).to_csv(index=False),
        UNREADABLE_TABLE: pd.DataFrame(scan.unreadable, columns=["file", "reason"]).to_csv(index=False),
        SUMMARY_MD: _summary_markdown(summary, root, mapping),
    }
    for name, text in tables.items():
        record(write_text_atomic(out / name, text))
    record(write_json_atomic(out / SUMMARY_JSON, summary.to_dict()))
    _remove_stale(out, previous, set(written), set(images))
    record(None, status="complete")
    if summary.manifest is not None:  # what `manifest check` and `run mri` will read: checked here too
        from osteomet.data.manifest import read_manifest

        read_manifest(summary.manifest, kind="mri")
    if summary.ct_manifest is not None:
        from osteomet.data.manifest import read_manifest

        read_manifest(summary.ct_manifest, kind="ct")
    if strict and summary.unsettled:
        raise InputError(f"{out / SUMMARY_MD}: {len(summary.unsettled)} patient(s) not settled "
                         f"({', '.join(summary.unsettled)}): missing, ambiguous or unreadable series (--strict). "
                         f"Settle them with a --mapping, or drop --strict to accept the manifests as written")
    return summary


def _abs(path: PathLike | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


# ---- inputs ------------------------------------------------------------------------------------

def _check_paths(root: Path, out: Path) -> None:
    from osteomet.stage import refuse_output_inside

    if not root.exists():
        raise InputError(f"{root}: folder not found")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; give the folder of a DICOM export")
    refuse_output_inside(out, root, "the DICOM folder")


def _claim_output(out: Path) -> dict[str, Any] | None:
    """Refuse an ``out`` that is not new, empty or an earlier import; return that import's record."""
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder; choose another --out")
    record = None
    if out.is_dir() and any(out.iterdir()):
        marker = read_json(out / MARKER)
        if (marker or {}).get("kind") != KIND:
            if is_osteomet_dir(out) or (out / STAGE_RECORD).exists():
                what = (marker or {}).get("kind") or "another osteomet stage"
                raise OutputExistsError(f"{out}: holds the output of {what}, not of an import; choose another --out")
            raise OutputExistsError(f"{out}: folder is not empty and was not written by `osteomet import dicom`; "
                                    f"choose a new --out (osteomet never writes into or over your files)")
        record = read_json(out / IMPORT_RECORD)
        for name, digest in ((record or {}).get("files") or {}).items():
            path = out / name
            if path.is_file() and sha256_file(path) != digest:
                raise OutputExistsError(f"{path}: changed since `osteomet import dicom` wrote it (edited by hand?); "
                                        f"osteomet does not overwrite it: move it away, or choose another --out")
    open_run_dir(out, kind=KIND)
    return record


def _read_table(path: Path, what: str) -> pd.DataFrame:
    """A CSV of strings, read as manifests are: comma, semicolon or tab; decimal commas in a semicolon file."""
    from osteomet.data.manifest import _DECIMAL_FIELDS, _thousands_separators, detect_separator

    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    separator = detect_separator(path)
    try:
        frame = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from None
    if separator == ";":  # as read_manifest does: the locales that write semicolons write decimal commas
        problems = []
        for column in frame.columns:
            if _header_key(column) in _DECIMAL_FIELDS:
                cells, ambiguous, _ = _thousands_separators(frame, column, path)
                problems += ambiguous
                frame[column] = cells.str.replace(r"^\s*(-?\d+),(\d+)\s*$", r"\1.\2", regex=True)
        if problems:
            raise InputError(f"{path}: " + "; ".join(problems))
    return frame


def _header_key(name: str) -> str:
    from osteomet.data.manifest import COLUMN_ALIASES

    key = str(name).strip().lower().replace(" ", "_").replace("-", "_")
    return COLUMN_ALIASES.get(key, key)


def _read_pseudonyms(path: Path) -> dict[str, str]:
    """``dicom_patient_id`` -> ``patient_id`` from the user's map; every id checked, none repeated."""
    from osteomet.data.manifest import check_patient_id

    frame = _read_table(path, "pseudonym map")
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if not {"dicom_patient_id", "patient_id"} <= set(frame.columns):
        raise InputError(f"{path}: a pseudonym map has the columns dicom_patient_id (the DICOM PatientID) and "
                         f"patient_id (the id to write); found {', '.join(frame.columns)}")
    problems, mapping, used = [], {}, {}
    for i, (dicom_id, pid) in enumerate(zip(frame["dicom_patient_id"].str.strip(), frame["patient_id"].str.strip())):
        line = i + 2
        if not dicom_id or not pid:
            problems.append(f"line {line}: empty dicom_patient_id or patient_id")
            continue
        try:
            check_patient_id(pid)
        except InputError as exc:
            problems.append(f"line {line}: {exc}")
        if dicom_id in mapping:
            problems.append(f"line {line}: this dicom_patient_id is already on another line")
        if pid in used:
            problems.append(f"line {line}: patient_id {pid!r} is already given to line {used[pid]}")
        mapping[dicom_id] = pid
        used.setdefault(pid, line)
    if problems:
        raise InputError(f"{path}: {len(problems)} problem(s) in the pseudonym map: " + "; ".join(problems))
    return mapping


@dataclass
class _Clinical:
    path: Path
    frame: pd.DataFrame
    join: str  # "patient_id" or "dicom_patient_id"


def _read_clinical(path: Path) -> _Clinical:
    """The clinical CSV, validated as a clinical table, joined on ``patient_id`` or ``dicom_patient_id``."""
    import re

    from osteomet.data.manifest import ManifestError, validate_frame

    frame = _read_table(path, "clinical CSV")
    frame.columns = [_header_key(c) for c in frame.columns]
    joins = [c for c in ("patient_id", "dicom_patient_id") if c in frame.columns]
    if len(joins) != 1:
        raise InputError(f"{path}: the clinical CSV needs one id column: patient_id (the ids the import writes: "
                         f"pseudonyms, or --keep-patient-id) or dicom_patient_id (the DICOM PatientID, never "
                         f"written); found {'both' if joins else 'neither'}")
    join = joins[0]
    frame[join] = frame[join].str.strip()
    dropped = sorted(_IMAGE_COLUMNS & set(frame.columns))
    if dropped:
        raise InputError(f"{path}: column(s) {', '.join(dropped)} are written by the import from the DICOM; remove "
                         f"them from the clinical CSV")
    repeated = frame[join][frame[join].duplicated() & (frame[join] != "")]
    empty = frame.index[frame[join] == ""].tolist()
    problems = [f"line {i + 2}: empty {join}" for i in empty]
    problems += [f"line {i + 2}: {join} repeated from an earlier line" for i in repeated.index]
    check = frame.drop(columns=[join]).copy()
    check.insert(0, "patient_id", [f"row{i + 2}" for i in range(len(frame))])
    try:
        validate_frame(check, base_dir=path.parent, path=path, kind="clinical", check_files=False)
    except ManifestError as exc:
        problems += [re.sub(r" \(patient 'row\d+'\)", "", p) for p in exc.problems]
    if problems:
        raise InputError(f"{path}: {len(problems)} problem(s) in the clinical CSV: " + "; ".join(problems))
    for column in _PATH_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].map(lambda v: str((path.parent / v).resolve()) if str(v).strip() else "")
    return _Clinical(path, frame, join)


# ---- patients and studies ----------------------------------------------------------------------

def _patient_ids(by_patient: dict[str, list[SeriesInfo]], pseudonyms: dict[str, str] | None,
                 keep: bool) -> tuple[dict[str, str], list[str]]:
    """Output id of each patient key; the DICOM PatientIDs the pseudonym map leaves out."""
    from osteomet.data.manifest import check_patient_id

    keys = sorted(by_patient)
    width = max(4, len(str(len(keys))))
    default = {key: f"P{i + 1:0{width}d}" for i, key in enumerate(keys)}
    ids, left_out, problems = {}, [], []
    for key in keys:
        dicom_id = by_patient[key][0].dicom_patient_id
        if pseudonyms is not None:
            if dicom_id in pseudonyms:
                ids[key] = pseudonyms[dicom_id]
            else:
                left_out.append(dicom_id or "<no PatientID>")
        elif keep and dicom_id:
            try:
                ids[key] = check_patient_id(dicom_id)
            except InputError as exc:
                problems.append(str(exc))
        else:
            ids[key] = default[key]
    if problems:
        raise InputError("--keep-patient-id: DICOM PatientIDs that cannot name files: " + "; ".join(problems)
                         + ". Give a --pseudonyms map instead")
    return ids, left_out


def _study_names(by_patient: dict[str, list[SeriesInfo]]) -> dict[str, dict[str, str]]:
    """``S1``, ``S2``... per patient in date order: studies are told apart without writing their dates."""
    names = {}
    for key, members in by_patient.items():
        studies = sorted({(s.study_date, s.study_time, s.study_key) for s in members})
        names[key] = {study: f"S{i + 1}" for i, (_, _, study) in enumerate(studies)}
    return names


# ---- references to the images --------------------------------------------------------------------

def _references(scan: ScanResult, ids: dict[str, str], choices: dict[str, PatientChoice], summary: ImportSummary, out: Path, convert: str | None,
                log: Callable[[str], None]) -> dict[str, dict[str, tuple[str, str | None]]]:
    """Per patient key and role: (path, series UID or None) for the manifest; converting where needed."""
    from osteomet.utils.progress import progress_bar

    folder_series: dict[Path, set[str]] = {}
    for s in scan.series:
        for folder in s.folders:
            folder_series.setdefault(folder, set()).add(s.key)
    unreadable_folders = {Path(f).parent for f, _ in scan.unreadable}
    refs: dict[str, dict[str, tuple[str, str | None]]] = {}
    pending: list[tuple[str, str, Candidate, str, str]] = []
    for key, choice in choices.items():
        if key not in ids:
            continue
        pid = ids[key]
        roles = [r for r in choice.chosen if (r in MRI_ROLES and choice.mri_complete) or r == "ct"]
        for role in roles:  # only what a manifest will hold: nothing is converted for a patient left out
            cand = choice.chosen[role]
            reason = _conversion_reason(cand, folder_series, unreadable_folders)
            if convert is None and reason is None:
                folder = cand.series.folders[0]
                uid = cand.series.series_uid if _manifest_uid(cand.series.series_uid) else None
                refs.setdefault(key, {})[role] = (str(folder.resolve()), uid)
            else:
                suffix = CONVERSIONS[convert or "nifti"]
                pending.append((key, role, cand, f"{IMAGES}/{pid}_{role}{suffix}",
                                reason or f"--convert {convert}"))
    if pending:
        with progress_bar("convert series", len(pending)) as advance:
            for key, role, cand, relative, reason in pending:
                pid = ids[key]
                try:
                    convert_series(cand, out / relative, out)
                except InputError as exc:
                    summary.failed[pid] = f"{role}: {exc}"
                    log(f"{pid}: {role} could not be converted: {exc}")
                else:
                    refs.setdefault(key, {})[role] = (relative, None)
                    summary.converted.append({"patient_id": pid, "role": role, "path": relative, "reason": reason})
                advance()
    return refs


def _manifest_uid(uid: str) -> bool:
    import re

    return bool(uid) and len(uid) <= 64 and re.fullmatch(r"[0-9]+(\.[0-9]+)*", uid) is not None


def _conversion_reason(cand: Candidate, folder_series: dict[Path, set[str]],
                       unreadable_folders: set[Path]) -> str | None:
    """Why a manifest cannot name this series as a folder (+ UID), or None when it can."""
    s = cand.series
    if len(s.folders) > 1:
        return f"its files are spread over {len(s.folders)} folders"
    if len(cand.files) != len(s.files):
        return f"the series holds several b-values: {cand.note}"
    folder = s.folders[0]
    shared = len(folder_series.get(folder, ())) > 1 or folder in unreadable_folders
    if not _manifest_uid(s.series_uid) and shared:
        what = "no SeriesInstanceUID" if not s.series_uid else f"a SeriesInstanceUID {s.series_uid!r} that is not valid"
        return f"{what}, and its folder holds other files"
    return None


def convert_series(cand: Candidate, path: Path, out: Path) -> Path:
    """Write the candidate's files as one volume at ``path`` (atomic), through osteomet's DICOM series reader.

    The files are linked into a private folder under ``out`` first, so the reader sees exactly
    this series (a subset of b-values, files from several folders). The volume keeps its own grid
    (the preprocessing resamples onto the T2 grid) and no DICOM attribute: nothing identifying.
    """
    from osteomet.data.dicom_series import read_dicom_series
    from osteomet.data.image_errors import ImageError
    from osteomet.data.images import write_image

    staging = out / f".staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        for i, source in enumerate(cand.files):
            link = staging / f"{i:05d}.dcm"
            try:
                os.symlink(source.resolve(), link)
            except OSError:
                shutil.copyfile(source, link)
        uid = cand.series.series_uid or None
        try:
            image = read_dicom_series(staging, uid)
        except ImageError as exc:
            raise InputError(str(exc).replace(str(staging), f"series {cand.series.series_uid or '<no UID>'} "
                                                            f"({cand.series.description!r})")) from None
        except RuntimeError as exc:
            raise InputError(f"series {cand.series.series_uid or '<no UID>'} ({cand.series.description!r}) cannot be "
                             f"read as a volume: {str(exc).strip().splitlines()[-1]}") from None
        for key in image.GetMetaDataKeys():
            image.EraseMetaData(key)
        write_image(image, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _manifest_rows(by_patient: dict[str, list[SeriesInfo]], ids: dict[str, str], choices: dict[str, PatientChoice],
                   refs: dict[str, dict[str, tuple[str, str | None]]]) -> tuple[list[dict], list[dict]]:
    mri, ct = [], []
    for key in sorted(by_patient, key=lambda k: ids.get(k, "")):
        if key not in ids:
            continue
        choice, found = choices[key], refs.get(key, {})
        if choice.mri_complete and all(r in found for r in MRI_ROLES):
            row: dict[str, Any] = {"patient_id": ids[key]}
            for role in MRI_ROLES:
                row[role] = found[role][0]
            for role in MRI_ROLES:
                row[f"{role}_series_uid"] = found[role][1]
            mri.append(row)
        if "ct" in choice.chosen and "ct" in found:
            ct.append({"patient_id": ids[key], "ct": found["ct"][0], "ct_series_uid": found["ct"][1]})
    return mri, ct


def _join_clinical(mri_rows: list[dict], ct_rows: list[dict], table: _Clinical | None,
                   by_patient: dict[str, list[SeriesInfo]], ids: dict[str, str],
                   summary: ImportSummary) -> tuple[pd.DataFrame, pd.DataFrame]:
    mri = pd.DataFrame(mri_rows, columns=["patient_id", *MRI_ROLES, *(f"{r}_series_uid" for r in MRI_ROLES)])
    ct = pd.DataFrame(ct_rows, columns=["patient_id", "ct", "ct_series_uid"])
    for frame in (mri, ct):
        for column in [c for c in frame.columns if c.endswith("_series_uid")]:
            if frame[column].isna().all():
                frame.drop(columns=[column], inplace=True)
    if table is None:
        return mri, ct
    clinical = table.frame.copy()
    if table.join == "dicom_patient_id":
        to_output = {by_patient[k][0].dicom_patient_id: pid for k, pid in ids.items()
                     if by_patient[k][0].dicom_patient_id}
        clinical["patient_id"] = clinical["dicom_patient_id"].map(to_output)
        unmatched = int(clinical["patient_id"].isna().sum())
        clinical = clinical.dropna(subset=["patient_id"]).drop(columns=["dicom_patient_id"])
        unmatched_ids: list[str] = []
    else:
        known = set(ids.values())
        unmatched_ids = sorted(set(clinical["patient_id"]) - known)
        unmatched = len(unmatched_ids)
    written = set(mri["patient_id"]) | set(ct["patient_id"])
    with_row = set(clinical["patient_id"])
    summary.clinical = {"file": str(table.path), "joined_on": table.join,
                        "patients_with_clinical_row": len(written & with_row),
                        "patients_without_clinical_row": sorted(written - with_row),
                        "rows_without_imported_patient": unmatched}
    if unmatched_ids:
        summary.clinical["ids_without_imported_patient"] = unmatched_ids
    mri_columns = [c for c in clinical.columns if c not in ("lesion_mask", "bone_map")]
    ct_columns = ["patient_id"] + [c for c in _CT_COLUMNS if c in clinical.columns]
    if len(mri):
        mri = mri.merge(clinical[mri_columns], on="patient_id", how="left")
    if len(ct):
        ct = ct.merge(clinical[ct_columns], on="patient_id", how="left")
    return mri, ct


def _write_manifest(frame: pd.DataFrame, path: Path, kind: str) -> Path:
    from osteomet.data.manifest import write_manifest

    frame = frame.astype(object).where(frame.notna(), None)
    return write_manifest(frame, path, kind=kind, overwrite=True)  # type: ignore[arg-type]


def _remove_stale(out: Path, previous: dict[str, Any] | None, tables: set[str], images: set[str]) -> None:
    """An earlier import's tables and volumes that this one did not write again (a patient now left out)."""
    if not previous:
        return
    for name in set((previous.get("files") or {})) - tables:
        (out / name).unlink(missing_ok=True)
    for relative in set(previous.get("images") or []) - images:
        target = (out / relative).resolve()
        if target.is_relative_to((out / IMAGES).resolve()):
            target.unlink(missing_ok=True)


# ---- reports -------------------------------------------------------------------------------------

def _series_table(by_patient: dict[str, list[SeriesInfo]], ids: dict[str, str],
                  classes: dict[str, Classification], choices: dict[str, PatientChoice],
                  study_names: dict[str, dict[str, str]]) -> pd.DataFrame:
    rows = []
    for key in sorted(by_patient, key=lambda k: (k not in ids, ids.get(k, ""), k)):
        for s in by_patient[key]:
            cl = classes[s.key]
            status, decision = choices[key].decisions.get(s.key, ("", ""))
            if key not in ids:
                status, decision = "left out", "patient not in the pseudonym map"
            folder = str(s.folders[0]) if len(s.folders) == 1 else (
                f"{len(s.folders)} folders: " + "; ".join(str(f) for f in s.folders[:3])
                + (" ..." if len(s.folders) > 3 else ""))
            rows.append({
                "patient_id": ids.get(key, ""), "study": study_names[key][s.study_key], "series_uid": s.series_uid,
                "series_number": s.series_number, "modality": s.modality, "manufacturer": s.manufacturer,
                "description": s.description, "n_files": len(s.files), "folder": folder,
                "orientation": s.orientation, "image_type": "\\".join(s.image_type),
                "b_values": ";".join(f"{v:g}" for v in cl.b.values), "b_source": cl.b.source,
                "pixel_spacing": "x".join(f"{v:g}" for v in s.pixel_spacing) if s.pixel_spacing else "",
                "slice_thickness": "" if s.slice_thickness is None else f"{s.slice_thickness:g}",
                "kernel": s.kernel, "body_part": s.body_part, "grouping": s.grouping, "role": cl.role,
                "rule": cl.rule, "why": cl.why, "status": status, "decision": decision,
                "problems": "; ".join(s.problems),
            })
    return pd.DataFrame(rows, columns=SERIES_COLUMNS)


def _summary_markdown(summary: ImportSummary, root: Path, mapping: PathLike | None) -> str:
    lines = ["# DICOM import", "",
             f"- export: `{root}`",
             f"- files: {summary.files} ({summary.dicom_files} DICOM in {summary.series} series, "
             f"{summary.skipped_files} other files skipped, {summary.unreadable_files} unreadable"
             + (f": see `{UNREADABLE_TABLE}`" if summary.unreadable_files else "") + ")",
             f"- patients: {summary.patients}",
             f"- bpMRI complete: {len(summary.mri_complete)}"
             + (f" -> `{MRI_MANIFEST}`" if summary.manifest else ""),
             f"- CT: {len(summary.ct)}" + (f" -> `{CT_MANIFEST}`" if summary.ct_manifest else ""),
             f"- left out: {len(summary.left_out)}" + (f" ({', '.join(summary.left_out)})" if summary.left_out else ""),
             f"- scan: {summary.seconds:.1f} s with {summary.jobs} processes", ""]
    if summary.not_in_pseudonym_map:
        lines += [f"{summary.not_in_pseudonym_map} patient(s) of the export are not in the pseudonym map and were "
                  f"left out (their DICOM PatientIDs are not written here).", ""]
    if summary.missing:
        lines += ["## Missing a modality", ""]
        for pid, roles in sorted(summary.missing.items()):
            for role, detail in roles.items():
                lines.append(f"- {pid}: no usable {role}: {detail}")
        lines.append("")
    if summary.ambiguous:
        lines += ["## Ambiguous: settle these in a mapping", "",
                  "Two or more series scored equally; none was chosen. Name the right one in a mapping JSON "
                  "(picai_prep's format) and pass it with `--mapping`:", ""]
        example: dict[str, list[str]] = {}
        for pid, roles in sorted(summary.ambiguous.items()):
            for role, cands in roles.items():
                lines.append(f"- {pid} {role}:")
                for c in cands:
                    lines.append(f"  - {c['series_uid'] or '<no SeriesInstanceUID>'} {c['description']!r} "
                                 f"({c['files']} files, {c['score']})")
                if cands and cands[0]["series_uid"]:
                    example.setdefault(role, []).append(cands[0]["series_uid"])
        if example:
            import json

            names = {"t2": "t2w", "dwi": "hbv", "adc": "adc", "ct": "ct"}
            snippet = {"mappings": {names.get(r, r): {"SeriesInstanceUID": uids} for r, uids in example.items()}}
            lines += ["", "For example (the first candidate of each; check which is right):", "", "```json",
                      json.dumps(snippet, indent=2), "```"]
            if mapping is not None:
                lines.append(f"Add these entries to your mapping `{mapping}`: a mapping entry outranks every rule.")
        lines.append("")
    if summary.failed:
        lines += ["## Could not be converted", ""]
        lines += [f"- {pid}: {reason}" for pid, reason in sorted(summary.failed.items())] + [""]
    if summary.study_choices:
        lines += ["## Studies chosen among several", ""]
        lines += [f"- {pid}: {note}" for pid, notes in sorted(summary.study_choices.items()) for note in notes] + [""]
    if summary.converted:
        lines += ["## Converted series", ""]
        lines += [f"- {c['patient_id']} {c['role']}: `{c['path']}` ({c['reason']})" for c in summary.converted] + [""]
    if summary.clinical:
        c = summary.clinical
        lines += ["## Clinical data", "",
                  f"- joined on {c['joined_on']}: {c['patients_with_clinical_row']} patient(s) with a row",
                  f"- without a clinical row: {len(c['patients_without_clinical_row'])}"
                  + (f" ({', '.join(c['patients_without_clinical_row'])})" if c['patients_without_clinical_row'] else ""),
                  f"- clinical rows matching no imported patient: {c['rows_without_imported_patient']}", ""]
    lines += [f"Every series, its role, the rule that gave it and the decision: `{SERIES_TABLE}`.", ""]
    return "\n".join(lines)


def fill_patient_report(summary: ImportSummary, ids: dict[str, str], choices: dict[str, PatientChoice]) -> None:
    """Missing, ambiguous and study notes of every patient, by output id (no DICOM identifier)."""
    for key, choice in choices.items():
        if key not in ids:
            continue
        pid = ids[key]
        if choice.missing:
            summary.missing[pid] = {r: choice.missing_detail.get(r, "") for r in choice.missing}
        if choice.ambiguous:
            summary.ambiguous[pid] = {
                role: [{"series_uid": c.series.series_uid, "description": c.series.description,
                        "files": len(c.series.files), "score": c.key_text} for c in cands]
                for role, cands in choice.ambiguous.items()}
        if choice.study_notes:
            summary.study_choices[pid] = list(choice.study_notes)
