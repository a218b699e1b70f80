"""Cohort manifest: one CSV row per patient, validated by a typed schema.

Two kinds share the format: ``mri`` (bpMRI bone-metastasis cohorts: clinical variables
plus T2, high-b DWI, ADC and an optional tumour mask) and ``ct`` (CT volume, lesion mask,
optional TotalSegmentator bone label map). The kind is recognised from the columns.

Relative paths are relative to the manifest file, so a cohort folder can be moved or
shared as a whole. Patient ids name output folders and files, so they must be safe
file-name components (checked here, once). A DICOM folder holding several series needs the
series UID in an optional ``<image>_series_uid`` column. Comma-, semicolon- and
tab-separated files are read (the separator is detected from the header line; in a
semicolon file, ``12,5`` in a numeric column is a decimal comma). Every problem in every
row is collected and raised together in one :class:`ManifestError`, each line naming the
CSV line and the patient id.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Literal, Sequence

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from osteomet.errors import InputError, OutputExistsError
from osteomet.utils.files import full_suffix, write_text_atomic
from osteomet.utils.text import shown

PathLike = str | os.PathLike[str]

MISSING_TOKENS = {"", "na", "n/a", "nan", "none", "null", "."}
_TRUE = {"1", "yes", "y", "true", "t", "bm", "positive"}
_FALSE = {"0", "no", "n", "false", "f", "negative"}

Split = Literal["train", "val", "test", "external"]

#: Characters refused in a patient id: path separators, and those Windows refuses in file names.
_UNSAFE_ID_CHARS = set('/\\:*?"<>|')
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
#: A DICOM UID: dot-separated numbers, at most 64 characters (DICOM PS3.5 9.1).
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def check_patient_id(value: str) -> str:
    """``value`` if it is a safe file-name component, else an :class:`InputError` saying why.

    Stages write ``<out>/cases/<patient_id>/`` and ``<patient_id>.nii.gz``; an id such as
    ``../../x`` or ``/data/x`` would write (and clean up) outside the output folder.
    """
    value = str(value)
    if not value or value != value.strip():
        raise InputError(f"{value!r} is not a safe file name: it is empty or has leading/trailing blanks")
    bad = sorted({c for c in value if c in _UNSAFE_ID_CHARS or ord(c) < 32 or ord(c) == 127})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise InputError(f"{value!r} is not a safe file name: it contains {shown}; patient ids name output "
                         f"folders, use letters, digits, '-', '_' or '.'")
    if value.startswith(".") or value.endswith((".", " ")):
        raise InputError(f"{value!r} is not a safe file name: it must not start with '.' or end with '.' or a space")
    if value.split(".")[0].lower() in _WINDOWS_RESERVED:
        raise InputError(f"{value!r} is not a safe file name: {value.split('.')[0]!r} is a reserved device name on Windows")
    if len(value.encode()) > 200:
        raise InputError(f"patient id of {len(value.encode())} bytes is too long for a file name (at most 200)")
    return value


Kind = Literal["mri", "ct", "clinical"]


class ManifestError(InputError):
    """A manifest could not be used; ``problems`` lists every issue found."""

    def __init__(self, path: PathLike | None, problems: Sequence[str]):
        self.path = Path(path) if path is not None else None
        self.problems = list(problems)
        where = f"{self.path}" if self.path else "manifest"
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{where}: {len(self.problems)} problem(s):\n{lines}")


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and value != value:
        return True
    return isinstance(value, str) and value.strip().lower() in MISSING_TOKENS


def _to_binary(value: Any) -> Any:
    if _missing(value):
        return None
    text = str(value).strip().lower()
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    try:  # "1.0" from spreadsheets
        number = float(text)
    except ValueError:
        raise InputError(f"{value!r} is not yes/no or 1/0") from None
    if number in (0.0, 1.0):
        return int(number)
    raise InputError(f"{value!r} is not yes/no or 1/0")


class _Record(BaseModel):
    """Fields shared by both kinds of manifest."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    #: Columns holding file paths, checked for existence and resolved against the manifest folder.
    path_fields: ClassVar[tuple[str, ...]] = ()
    required_path_fields: ClassVar[tuple[str, ...]] = ()

    patient_id: str = Field(min_length=1)
    centre: str | None = None
    split: Split | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_missing(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
        return None if _missing(value) else value

    @field_validator("split", mode="before")
    @classmethod
    def _split_lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("patient_id")
    @classmethod
    def _safe_patient_id(cls, value: str) -> str:
        return check_patient_id(value)

    @field_validator("*", mode="after")
    @classmethod
    def _series_uid_format(cls, value: Any, info: Any) -> Any:
        if info.field_name.endswith("_series_uid") and value is not None and (len(value) > 64 or not _UID.match(value)):
            raise InputError(f"{value!r} is not a DICOM series UID (dot-separated numbers, at most 64 characters)")
        return value

    def series_uid(self, name: str) -> str | None:
        """The DICOM series UID given for image column ``name`` (None: the folder's only series)."""
        return getattr(self, f"{name}_series_uid", None)


class ClinicalRecord(_Record):
    """A patient's label and clinical variables: a clinical-only study, and the base of a bpMRI patient."""

    clinical_fields: ClassVar[tuple[str, ...]] = ("age", "psa", "gleason", "isup", "hematuria", "leukocyturia")

    label: int | None = Field(default=None, description="bone metastasis: 1 yes, 0 no")
    age: float | None = Field(default=None, gt=0, le=120)
    psa: float | None = Field(default=None, ge=0, le=100_000, description="ng/mL")
    gleason: int | None = Field(default=None, ge=6, le=10, description="Gleason score (sum)")
    isup: int | None = Field(default=None, ge=1, le=5, description="ISUP grade group")
    hematuria: int | None = None
    leukocyturia: int | None = None

    @field_validator("label", "hematuria", "leukocyturia", mode="before")
    @classmethod
    def _binary(cls, value: Any) -> Any:
        return _to_binary(value)

    @field_validator("gleason", "isup", mode="before")
    @classmethod
    def _integral(cls, value: Any) -> Any:
        if value is None or isinstance(value, int):
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{value!r} is not a whole number") from None
        if not number.is_integer():
            raise InputError(f"{value!r} is not a whole number")
        return int(number)

    @model_validator(mode="after")
    def _gleason_matches_isup(self) -> "ClinicalRecord":
        # ISUP grade groups are defined from the Gleason pattern: 6->1, 7->2/3, 8->4, 9-10->5.
        if self.gleason is not None and self.isup is not None:
            allowed = {6: {1}, 7: {2, 3}, 8: {4}, 9: {5}, 10: {5}}[self.gleason]
            if self.isup not in allowed:
                raise InputError(f"Gleason {self.gleason} is inconsistent with ISUP {self.isup} (expected {sorted(allowed)})")
        return self


class MRIRecord(ClinicalRecord):
    """A bpMRI patient: clinical variables, three sequences, an optional tumour mask."""

    path_fields: ClassVar[tuple[str, ...]] = ("t2", "dwi", "adc", "mask")
    required_path_fields: ClassVar[tuple[str, ...]] = ("t2", "dwi", "adc")

    t2: Path
    dwi: Path
    adc: Path
    mask: Path | None = None
    t2_series_uid: str | None = None
    dwi_series_uid: str | None = None
    adc_series_uid: str | None = None


class CTRecord(_Record):
    """A CT patient: HU volume, lesion mask, optional TotalSegmentator bone label map."""

    path_fields: ClassVar[tuple[str, ...]] = ("ct", "lesion_mask", "bone_map")
    required_path_fields: ClassVar[tuple[str, ...]] = ("ct",)

    ct: Path
    lesion_mask: Path | None = None
    bone_map: Path | None = None
    ct_series_uid: str | None = None


RECORD_TYPES: dict[str, type[_Record]] = {"mri": MRIRecord, "ct": CTRecord, "clinical": ClinicalRecord}
#: Header spellings accepted for the canonical column names.
COLUMN_ALIASES = {
    "patient": "patient_id", "id": "patient_id", "case_id": "patient_id", "center": "centre", "site": "centre",
    "bm": "label", "bone_metastasis": "label", "gleason_score": "gleason", "isup_grade": "isup",
    "t2w": "t2", "hbv": "dwi", "dwi_highb": "dwi", "highb": "dwi", "tumour_mask": "mask", "tumor_mask": "mask",
    "lesions": "lesion_mask", "bones": "bone_map", "bone_labels": "bone_map",
}


def _normalise_header(name: str) -> str:
    key = str(name).strip().lower().replace(" ", "_").replace("-", "_")
    return COLUMN_ALIASES.get(key, key)


def detect_kind(columns: Sequence[str]) -> Kind:
    cols = {_normalise_header(c) for c in columns}
    is_mri, is_ct = "t2" in cols, "ct" in cols
    if is_mri and not is_ct:
        return "mri"
    if is_ct and not is_mri:
        return "ct"
    if is_mri and is_ct:
        raise InputError("has both MRI (t2) and CT (ct) columns; use one manifest per modality")
    if "label" in cols and cols & set(ClinicalRecord.clinical_fields):
        return "clinical"
    raise InputError("is neither an MRI manifest (needs t2, dwi, adc columns), a CT manifest (needs a ct column) "
                     "nor a clinical-only table (needs label and clinical columns such as age, psa, gleason)")


@dataclass
class Manifest:
    """A validated cohort: records in file order, with absolute paths."""

    kind: Kind
    records: list[Any]
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.records)

    @property
    def patient_ids(self) -> list[str]:
        return [r.patient_id for r in self.records]

    def get(self, patient_id: str) -> Any:
        for record in self.records:
            if record.patient_id == patient_id:
                return record
        raise KeyError(f"patient {patient_id!r} is not in manifest {self.path}")

    def to_frame(self) -> pd.DataFrame:
        rows = [r.model_dump() for r in self.records]
        columns = list(RECORD_TYPES[self.kind].model_fields)
        frame = pd.DataFrame(rows, columns=columns)
        for name in RECORD_TYPES[self.kind].path_fields:
            frame[name] = frame[name].map(lambda p: None if p is None else str(p))
        return frame

    def missing_report(self) -> pd.DataFrame:
        """Missing values per optional column: count, fraction and which patients."""
        frame = self.to_frame()
        rows = []
        for column in frame.columns:
            if column in ("patient_id",):
                continue
            missing = frame[column].isna()
            if missing.any():
                rows.append({
                    "column": column,
                    "n_missing": int(missing.sum()),
                    "fraction": float(missing.mean()),
                    "patients": ", ".join(frame.loc[missing, "patient_id"].astype(str)),
                })
        return pd.DataFrame(rows, columns=["column", "n_missing", "fraction", "patients"])


def read_manifest(path: PathLike, *, kind: Kind | None = None, check_files: bool = True,
                  require: Sequence[str] = ()) -> Manifest:
    """Read and validate a manifest CSV; raise one :class:`ManifestError` listing every problem.

    ``require`` names optional columns a stage cannot do without (``("label", "mask")`` for
    training), so a missing value is reported as an error there and only as a gap elsewhere.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, ["manifest file does not exist"])
    try:
        separator = detect_separator(path)
        raw = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ManifestError(path, [f"not a readable CSV file ({exc})"]) from exc
    notes = []
    if separator != ",":
        notes.append(f"read as {_SEPARATOR_NAMES[separator]}-separated")
    if separator == ";":  # the locales that save CSV with semicolons write decimal commas
        grouping = []
        for column in raw.columns:
            if _normalise_header(column) in _DECIMAL_FIELDS:
                cells, ambiguous, regrouped = _thousands_separators(raw, column, path)
                grouping += ambiguous
                if regrouped:
                    notes.append(f"{column}: dots read as thousands separators (1.250,5 = 1250.5)")
                converted = cells.str.replace(r"^\s*(-?\d+),(\d+)\s*$", r"\1.\2", regex=True)
                if (converted != cells).any():
                    notes.append(f"{column}: decimal commas read as decimal points")
                raw[column] = converted
        if grouping:
            raise ManifestError(path, grouping)
    manifest = validate_frame(raw, base_dir=path.parent, path=path, kind=kind, check_files=check_files, require=require)
    manifest.warnings[:0] = notes
    return manifest


_SEPARATOR_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
_DECIMAL_FIELDS = ("age", "psa")  # the non-integer numeric columns
#: A number whose dots group thousands, as comma-decimal locales write it: 1.250 or 12.500,75.
_GROUPED = re.compile(r"^-?\d{1,3}(\.\d{3})+(,\d+)?$")


def _thousands_separators(raw: pd.DataFrame, column: str, path: Path) -> tuple[pd.Series, list[str], bool]:
    """A semicolon file's numeric column with ``1.250,5`` read as 1250.5, each ``1.250`` it cannot read, any regrouped.

    With a decimal comma after it the dot can only group thousands. Without one, ``1.250`` is
    1250 to the spreadsheet that wrote it in a comma-decimal locale but 1.25 to a tool that
    writes decimal points; guessing would misread a PSA a thousandfold, so it is refused.
    """
    cells = raw[column].astype(str).str.strip()
    grouped = cells.str.match(_GROUPED)
    ambiguous = grouped & ~cells.str.contains(",", regex=False)
    ids = next((c for c in raw.columns if _normalise_header(c) == "patient_id"), None)
    problems = []
    for i in ambiguous.to_numpy().nonzero()[0]:
        pid = str(raw[ids].iloc[i]).strip() if ids is not None else "?"
        value = cells.iloc[i]
        problems.append(f"line {i + 2} (patient {pid!r}): {column}: {value!r} is ambiguous in a semicolon-separated "
                        f"file: a spreadsheet in a comma-decimal locale writes 1250 so (the dot grouping thousands), "
                        f"other tools write 1.25 so; write {value.replace('.', '')} if it means "
                        f"{value.replace('.', '')}, or {value.replace('.', ',')} if it means {float(value):g}")
    regroup = grouped & ~ambiguous
    return cells.where(~regroup, cells.str.replace(".", "", regex=False)), problems, bool(regroup.any())


def detect_separator(path: PathLike) -> str:
    """The column separator of a manifest, from its header line: ``,`` unless the header has none.

    Spreadsheets in many locales save "CSV" with semicolons (the comma being the decimal
    mark), and some tools write tabs; the header has no commas in either case.
    """
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        header = handle.readline()
    counts = {sep: header.count(sep) for sep in _SEPARATOR_NAMES}
    if counts[","]:
        return ","
    best = max((";", "\t"), key=lambda sep: counts[sep])
    return best if counts[best] else ","


def validate_frame(raw: pd.DataFrame, *, base_dir: PathLike, path: PathLike | None = None,
                   kind: Kind | None = None, check_files: bool = True,
                   require: Sequence[str] = ()) -> Manifest:
    """Validate a table of strings as a manifest (the CSV reader's engine, also usable on DataFrames)."""
    base_dir = Path(base_dir)
    raw = raw.rename(columns=_normalise_header)
    duplicated_columns = sorted({c for c in raw.columns if list(raw.columns).count(c) > 1})
    if duplicated_columns:
        raise ManifestError(path, [f"duplicate columns: {', '.join(duplicated_columns)}"])
    if kind is None:
        try:
            kind = detect_kind(list(raw.columns))
        except ValueError as exc:
            raise ManifestError(path, [f"manifest {exc}"]) from None
    record_type = RECORD_TYPES[kind]
    needed = [name for name, info in record_type.model_fields.items() if info.is_required()]
    absent = [c for c in needed if c not in raw.columns]
    if absent:
        raise ManifestError(path, [f"missing required column(s) for a {kind} manifest: {', '.join(absent)}"])
    unknown_required = [c for c in require if c not in record_type.model_fields]
    if unknown_required:
        raise InputError(f"require names unknown {kind} fields: {unknown_required}")
    extra = [c for c in raw.columns if c not in record_type.model_fields]
    if len(raw) == 0:
        raise ManifestError(path, ["manifest has no patient rows"])

    problems: list[str] = []
    records: list[Any] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(raw.to_dict(orient="records")):
        line = index + 2  # header is line 1
        pid = str(row.get("patient_id", "")).strip() or "?"
        where = f"line {line} (patient {pid!r})"
        if pid in seen:
            problems.append(f"{where}: duplicate patient_id, first seen on line {seen[pid]}")
        seen.setdefault(pid, line)
        values = {k: (None if _missing(v) else v) for k, v in row.items() if k in record_type.model_fields}
        blank_required = [k for k in needed if _missing(values.get(k))]
        for name in blank_required:
            problems.append(f"{where}: {name}: required value is missing")
        if blank_required:
            continue
        try:
            record = record_type(**values)
        except ValidationError as exc:
            for err in exc.errors():
                field_name = ".".join(str(p) for p in err["loc"]) or "row"
                message = err["msg"].removeprefix("Value error, ")
                got = row.get(field_name, None) if err["loc"] else None
                suffix = f" (got {shown(got)})" if not _missing(got) and shown(got) not in message else ""
                problems.append(f"{where}: {field_name}: {message}{suffix}")
            continue
        resolved = {}
        for name in record_type.path_fields:
            value = getattr(record, name)
            if value is None:
                continue
            full = value if value.is_absolute() else (base_dir / value)
            resolved[name] = full
            if check_files and not full.exists():
                problems.append(f"{where}: {name}: file not found: {full}")
            uid = record.series_uid(name)
            if uid is not None and full.is_file() and full_suffix(full) != ".dcm":
                problems.append(f"{where}: {name}_series_uid: a series UID is given but {name} is not a DICOM folder ({full})")
        for name in require:
            if getattr(record, name) is None:
                problems.append(f"{where}: {name}: required here but missing")
        records.append(record.model_copy(update=resolved))
    if problems:
        raise ManifestError(path, problems)

    warnings = []
    if extra:
        warnings.append(f"ignored column(s): {', '.join(extra)}")
    manifest = Manifest(kind=kind, records=records, path=Path(path) if path else None, warnings=warnings, extra_columns=extra)
    report = manifest.missing_report()
    for item in report.itertuples():
        warnings.append(f"{item.column}: {item.n_missing} of {len(manifest)} missing")
    return manifest


def write_manifest(frame: pd.DataFrame | Sequence[BaseModel], path: PathLike, *, kind: Kind,
                   overwrite: bool = False) -> Path:
    """Validate and write a manifest CSV atomically, with paths inside its folder relative to it, others absolute.

    Refuses to replace an existing file unless ``overwrite``: a manifest is often the
    user's own curated table.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: manifest already exists; refusing to overwrite it")
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame([r.model_dump() for r in frame])
    record_type = RECORD_TYPES[kind]
    frame = frame.copy()
    for name in record_type.path_fields:
        if name in frame.columns:
            frame[name] = frame[name].map(lambda p: _relative_to(p, path.parent))
    as_text = frame.astype(object).where(frame.notna(), "").astype(str)
    validate_frame(as_text, base_dir=path.parent, path=path, kind=kind, check_files=False)
    columns = [c for c in record_type.model_fields if c in frame.columns] + [c for c in frame.columns if c not in record_type.model_fields]
    write_text_atomic(path, frame[columns].to_csv(index=False))
    return path


def with_absolute_paths(frame: pd.DataFrame, kind: Kind) -> pd.DataFrame:
    """A read manifest's frame with its path columns absolute, ready to be written anywhere else.

    :func:`read_manifest` resolves paths against the manifest's folder, which is relative when
    the manifest was given by a relative path; written as is into a manifest in another folder
    they would point nowhere.
    """
    frame = frame.copy()
    for name in RECORD_TYPES[kind].path_fields:
        if name in frame.columns:
            frame[name] = frame[name].map(lambda p: None if _missing(p) else str(Path(p).resolve()))
    return frame


def _relative_to(value: Any, base: Path) -> Any:
    """A path as a manifest in ``base`` writes it: relative when it lies inside ``base`` (a cohort folder moves
    as a whole), absolute otherwise (a run directory moved or copied elsewhere still finds the images)."""
    if _missing(value):
        return None
    target = Path(value)
    if not target.is_absolute():
        return str(target)
    target, base = Path(os.path.normpath(target)), Path(os.path.normpath(base.absolute()))
    return str(target.relative_to(base)) if target.is_relative_to(base) else str(target)
