"""The PI-CAI public bpMRI archive read as it is shipped: studies, marksheet, lesion delineations.

PI-CAI (the Public Training and Development Dataset, Zenodo record 6624726, with the
``picai_labels`` repository) is the largest public bpMRI collection. Its layout::

    ROOT/<patient_id>/<patient_id>_<study_id>_{t2w,adc,hbv,sag,cor}.mha   (5 folds: picai_public_images_fold0..4)
    picai_labels/clinical_information/marksheet.csv
    picai_labels/csPCa_lesion_delineations/human_expert/resampled/<patient_id>_<study_id>.nii.gz
    picai_labels/csPCa_lesion_delineations/human_expert/Pooch25/<patient_id>_<study_id>.nii.gz
    picai_labels/anatomical_delineations/whole_gland/AI/Bosma22b/<patient_id>_<study_id>.nii.gz

A patient may have several studies (a negative study one year, a positive one later), each
with its own marksheet row. The marksheet is read as the real file is written: ``N/A`` and
blank cells, ``YES``/``NO`` outcomes, per-lesion lists (``lesion_GS`` ``"4+3,0+0"``: ``0+0`` is a
benign biopsy, ``N/A`` a lesion not graded), ``case_ISUP`` 0 for no cancer, and old Gleason
sums below 6 (``3+2``). Expert delineations carry each lesion's ISUP grade (2-5) on the T2
grid, with headers a few 1e-4 off the T2's; negative studies ship an all-zero file.

This module only reads and checks; :mod:`osteomet.pipeline.import_picai` maps a study onto the
manifest and writes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from osteomet.data.manifest import COLUMN_ALIASES, MISSING_TOKENS, detect_separator
from osteomet.errors import InputError, MissingInputError

PathLike = str | os.PathLike[str]

#: Manifest image column -> PI-CAI file suffix (``hbv``: the high b-value DWI).
SEQUENCES = {"t2": "t2w", "dwi": "hbv", "adc": "adc"}
#: Every sequence the archive ships (``sag``/``cor``: sagittal and coronal T2, not used).
ARCHIVE_SEQUENCES = ("t2w", "adc", "hbv", "sag", "cor")
#: Marksheet columns the importer reads (lower-case; the real header writes ``case_ISUP``, ``lesion_GS``...).
MARKSHEET_COLUMNS = ("patient_id", "study_id", "mri_date", "patient_age", "psa", "psad", "prostate_volume",
                     "histopath_type", "lesion_gs", "lesion_isup", "case_isup", "case_cspca", "center")
#: Outcomes defined by the histopathology: with one of them as the label, Gleason and ISUP would give it away.
HISTOPATHOLOGY_COLUMNS = ("case_cspca", "case_isup", "lesion_gs", "lesion_isup")
#: Where a marksheet is looked for, relative to the image root or to the labels folder and its parents.
MARKSHEET_PLACES = ("marksheet.csv", "clinical_information/marksheet.csv")
#: Inside a ``picai_labels`` checkout: the expert lesion delineations on the T2 grid, then the later expert ones.
LESION_FOLDERS = ("csPCa_lesion_delineations/human_expert/resampled", "csPCa_lesion_delineations/human_expert/Pooch25")
DELINEATION_SUFFIXES = (".nii.gz", ".nii", ".mha")

_ID = r"[A-Za-z0-9][A-Za-z0-9.-]*"
_NAME = re.compile(rf"^(?P<pid>{_ID})_(?P<sid>{_ID})_(?P<seq>[A-Za-z0-9]+)\.mha$", re.IGNORECASE)
_GLEASON = re.compile(r"^(\d{1,2})\s*\+\s*(\d{1,2})$")
_YES = {"yes", "y", "1", "true", "t", "positive"}
_NO = {"no", "n", "0", "false", "f", "negative"}


def case_id(patient_id: str, study_id: str) -> str:
    """``<patient_id>_<study_id>``: how PI-CAI names a study's images and delineation."""
    return f"{patient_id}_{study_id}"


def normalise_id(value: Any) -> str:
    """An id cell as text: a spreadsheet's ``10000.0`` is ``10000``."""
    text = str(value).strip()
    return text[:-2] if re.fullmatch(r"\d+\.0", text) else text


def is_missing(value: Any) -> bool:
    """Blank, ``N/A``, ``nan``... (the manifest's vocabulary of missing values)."""
    if value is None or (isinstance(value, float) and value != value):
        return True
    return str(value).strip().lower() in MISSING_TOKENS


@dataclass
class PicaiStudy:
    """One MRI study of the archive: its sequences' files by PI-CAI suffix."""

    patient_id: str
    study_id: str
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def case_id(self) -> str:
        return case_id(self.patient_id, self.study_id)

    @property
    def missing(self) -> list[str]:
        """The sequences the manifest needs (t2w, hbv, adc) that this study lacks."""
        return [seq for seq in SEQUENCES.values() if seq not in self.files]


@dataclass
class ArchiveScan:
    """What is under the image root: the studies, and the files that are not a study's image."""

    root: Path
    studies: dict[str, PicaiStudy]
    unrecognised: list[Path] = field(default_factory=list)

    @property
    def patients(self) -> set[str]:
        return {s.patient_id for s in self.studies.values()}


def find_studies(root: PathLike) -> ArchiveScan:
    """Every ``<pid>/<pid>_<sid>_<sequence>.mha`` under ``root``, at any depth (the five fold folders included).

    macOS resource forks (``._name.mha``) and hidden files are skipped, as PI-CAI's own tools do;
    a file whose folder is not its patient id is listed as unrecognised, not guessed at. The same
    study's sequence found twice (two copies of a fold) is refused: which one is meant is the
    user's call.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingInputError(f"{root}: the PI-CAI image folder does not exist or is not a folder")
    studies: dict[str, PicaiStudy] = {}
    unrecognised: list[Path] = []
    twice: list[str] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        match = _NAME.match(path.name)
        if not match or path.parent.name != match["pid"] or match["seq"].lower() not in ARCHIVE_SEQUENCES:
            if path.name.lower().endswith(".mha"):
                unrecognised.append(path)
            continue
        study = studies.setdefault(case_id(match["pid"], match["sid"]), PicaiStudy(match["pid"], match["sid"]))
        seq = match["seq"].lower()
        if seq in study.files:
            twice.append(f"{study.files[seq]} and {path}")
        study.files[seq] = path
    if twice:
        raise InputError(f"{root}: {len(twice)} image(s) found twice (is a fold extracted twice?): "
                         + "; ".join(twice[:5]) + (" ..." if len(twice) > 5 else "") + "; keep one copy of each")
    return ArchiveScan(root, dict(sorted(studies.items())), unrecognised)


def find_marksheet(root: PathLike, labels: PathLike | None = None) -> Path:
    """The marksheet: in the image root, else in the labels folder or the ``picai_labels`` checkout above it.

    ``picai_labels`` keeps it in ``clinical_information/marksheet.csv`` beside the delineations,
    and ``--labels`` usually points a few folders down from there.
    """
    places = [Path(root) / p for p in MARKSHEET_PLACES]
    if labels is not None:
        labels = Path(labels).absolute()
        for folder in [labels, *list(labels.parents)[:4]]:
            places += [folder / p for p in MARKSHEET_PLACES]
    for place in places:
        if place.is_file():
            return place
    looked = ", ".join(str(p) for p in dict.fromkeys(places))
    raise MissingInputError(f"no PI-CAI marksheet.csv found; looked in {looked}. Put picai_labels/clinical_information/"
                            f"marksheet.csv into the image folder, or point --labels into your picai_labels checkout")


def read_marksheet(path: PathLike) -> pd.DataFrame:
    """The marksheet as text, one row per study, with lower-case headers, ids normalised and its CSV ``line``.

    Refused: no ``patient_id``/``study_id`` column, or one study on two rows (which row holds
    its outcome would be a guess).
    """
    path = Path(path)
    try:
        separator = detect_separator(path)
        table = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False, skipinitialspace=True,
                            encoding="utf-8-sig")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable marksheet CSV ({exc})") from exc
    table.columns = [str(c).strip().lower() for c in table.columns]
    absent = [c for c in ("patient_id", "study_id") if c not in table.columns]
    if absent:
        raise InputError(f"{path}: not a PI-CAI marksheet: no {' or '.join(absent)} column "
                         f"(columns: {', '.join(table.columns)})")
    table = table.map(lambda v: v.strip() if isinstance(v, str) else v)
    for column in ("patient_id", "study_id"):
        table[column] = table[column].map(normalise_id)
    table.insert(0, "line", range(2, len(table) + 2))
    blank = table[(table["patient_id"] == "") | (table["study_id"] == "")]
    table = table.drop(blank.index)
    key = table["patient_id"] + "_" + table["study_id"]
    repeated = table[key.duplicated(keep=False)]
    if len(repeated):
        shown = "; ".join(f"{k} on lines {', '.join(map(str, g['line']))}"
                          for k, g in repeated.groupby(key[repeated.index]))
        raise InputError(f"{path}: a study is listed more than once ({shown}); keep one row per study")
    table.index = key.to_numpy()
    table.attrs["blank_lines"] = blank["line"].tolist()
    return table


def parse_yes_no(value: Any, *, where: str) -> int | None:
    """``YES``/``NO`` (PI-CAI's ``case_csPCa``), ``1``/``0``, true/false; None for blank or ``N/A``."""
    if is_missing(value):
        return None
    text = str(value).strip().lower()
    if text in _YES:
        return 1
    if text in _NO:
        return 0
    try:
        number = float(text)
    except ValueError:
        number = None
    if number in (0.0, 1.0):
        return int(number)  # type: ignore[arg-type]
    raise InputError(f"{where}: {str(value)!r} is not yes/no or 1/0")


def gleason_sums(text: Any, *, where: str) -> list[int]:
    """The Gleason sums of a ``lesion_GS`` list, one per lesion graded with cancer.

    ``0+0`` (benign) and ``N/A`` (not graded) lesions give none; anything that is not
    ``primary+secondary`` is refused.
    """
    if is_missing(text):
        return []
    sums = []
    for token in str(text).split(","):
        token = token.strip()
        if is_missing(token):
            continue
        match = _GLEASON.match(token)
        if not match:
            raise InputError(f"{where}: lesion_GS {str(text)!r}: {token!r} is not a Gleason score such as 3+4")
        primary, secondary = int(match[1]), int(match[2])
        if (primary == 0) != (secondary == 0) or primary > 5 or secondary > 5:
            raise InputError(f"{where}: lesion_GS {str(text)!r}: {token!r} is not a Gleason score (patterns 1-5, "
                             f"or 0+0 for a benign lesion)")
        if primary:
            sums.append(primary + secondary)
    return sums


def highest_gleason(text: Any, *, where: str = "lesion_GS") -> int | None:
    """The highest Gleason sum among a study's lesions (None: no lesion graded with cancer)."""
    sums = gleason_sums(text, where=where)
    return max(sums) if sums else None


def number(value: Any, *, where: str, column: str) -> float | None:
    """A numeric marksheet cell; None when blank or ``N/A``."""
    if is_missing(value):
        return None
    try:
        out = float(str(value).strip())
    except ValueError:
        raise InputError(f"{where}: {column} {str(value)!r} is not a number") from None
    if out != out:
        return None
    return out


def read_own_labels(path: PathLike) -> pd.DataFrame:
    """A user's label table: ``patient_id`` (PI-CAI's), ``label`` (1/0, yes/no), optionally ``study_id``.

    For joining one's own outcome (bone metastasis) to the archive. Headers follow the
    manifest's spellings (``bm``, ``bone_metastasis``, ``patient``...). Returns columns
    ``patient_id``, ``study_id`` (None when not given), ``label`` (int or None), ``line``.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: label file does not exist")
    try:
        table = pd.read_csv(path, sep=detect_separator(path), dtype=str, keep_default_na=False,
                            skipinitialspace=True, encoding="utf-8-sig")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable label CSV ({exc})") from exc
    renamed = {}
    for column in table.columns:
        key = str(column).strip().lower().replace(" ", "_").replace("-", "_")
        renamed[column] = COLUMN_ALIASES.get(key, key)
    table = table.rename(columns=renamed)
    absent = [c for c in ("patient_id", "label") if c not in table.columns]
    if absent:
        raise InputError(f"{path}: a label file needs patient_id and label columns (study_id optional); "
                         f"missing {', '.join(absent)} (columns: {', '.join(map(str, table.columns))})")
    problems = []
    rows = []
    for i, row in enumerate(table.to_dict(orient="records")):
        line = i + 2
        pid = normalise_id(row["patient_id"])
        sid = normalise_id(row.get("study_id", "")) or None
        where = f"{path}: line {line} (patient {pid!r})"
        try:
            value = parse_yes_no(row["label"], where=where)
        except InputError as exc:
            problems.append(str(exc))
            continue
        if pid:
            rows.append({"patient_id": pid, "study_id": sid, "label": value, "line": line})
    out = pd.DataFrame(rows, columns=["patient_id", "study_id", "label", "line"])
    key = out["patient_id"] + "_" + out["study_id"].fillna("*")
    for k, group in out[key.duplicated(keep=False)].groupby(key):
        problems.append(f"{path}: {k.removesuffix('_*')} is labelled on lines {', '.join(map(str, group['line']))}")
    if problems:
        raise InputError(f"{len(problems)} problem(s) in the label file: " + "; ".join(problems[:10])
                         + (" ..." if len(problems) > 10 else ""))
    return out


def choose_study(candidates: Sequence[tuple[str, Any]]) -> str:
    """The study a patient is imported with: the latest ``mri_date``, then the highest study id.

    ``candidates``: (study_id, mri_date) of the patient's usable studies. The manifest holds
    one row per patient, so that no patient's scans can fall into two splits; the rule does
    not look at outcomes, so it cannot select for them.
    """
    if not candidates:
        raise ValueError("no candidate study")

    def key(item: tuple[str, Any]) -> tuple:
        sid, date = item
        when = pd.to_datetime(date, errors="coerce") if not is_missing(date) else pd.NaT
        stamp = when.value if not pd.isna(when) else -(2 ** 63)
        return (stamp, (0, int(sid), "") if sid.isdigit() else (1, 0, sid))

    return max(candidates, key=key)[0]


def delineation_folders(labels: PathLike) -> list[Path]:
    """The folders a ``--labels`` path stands for: itself, or, for a ``picai_labels`` checkout, the expert
    lesion delineations on the T2 grid (``human_expert/resampled``, then ``Pooch25`` for the rest)."""
    labels = Path(labels)
    if not labels.is_dir():
        raise MissingInputError(f"{labels}: the delineation folder does not exist or is not a folder")
    inside = [labels / sub for sub in LESION_FOLDERS if (labels / sub).is_dir()]
    return inside or [labels]


def find_delineations(folders: Iterable[Path]) -> dict[str, Path]:
    """``<pid>_<sid>`` -> delineation file; the first folder that has a study's file wins."""
    found: dict[str, Path] = {}
    for folder in folders:
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            name = path.name
            suffix = next((s for s in DELINEATION_SUFFIXES if name.lower().endswith(s)), None)
            if suffix is None:
                continue
            found.setdefault(name[: -len(suffix)], path)
    return found


def header_geometry(path: PathLike):
    """An image's grid from its header alone (no voxels read): for checking a delineation against its T2."""
    import SimpleITK as sitk

    from osteomet.data.geometry import Geometry
    from osteomet.data.image_header import check_image_header

    check_image_header(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return Geometry(tuple(int(s) for s in reader.GetSize()), tuple(float(s) for s in reader.GetSpacing()),
                    tuple(float(o) for o in reader.GetOrigin()), tuple(float(d) for d in reader.GetDirection()))


def read_delineation(path: PathLike, t2: PathLike):
    """A delineation's integer labels on its T2's exact grid, checked as every osteomet mask is.

    Label values are kept (ISUP 2-5 per lesion); an all-zero file (a negative study) is
    allowed here and tells the caller there is no lesion. A float, negative-valued or
    off-grid file raises :class:`~osteomet.data.label_masks.MaskError` /
    :class:`~osteomet.data.geometry.GeometryMismatchError` naming it.
    """
    import SimpleITK as sitk

    from osteomet.data.geometry import check_same_geometry
    from osteomet.data.label_masks import read_lesion_labels

    labels = read_lesion_labels(path, allow_empty=True)
    grid = header_geometry(t2).blank(sitk.sitkUInt8)
    check_same_geometry(labels, grid, name=path, reference_name=t2)
    labels.CopyInformation(grid)  # header round-off below the tolerance: the T2's header, exactly
    return labels
