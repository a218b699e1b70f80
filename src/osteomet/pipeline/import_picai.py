"""``osteomet import picai``: the PI-CAI public archive as an osteomet bpMRI manifest, ready for ``run mri``.

What is decided here, and written down in ``summary.md`` / ``summary.json`` for every study:

- **One study per patient.** The manifest holds one row per patient (splits are by patient,
  so two studies of one man can never sit in train and test). A patient's study is the
  latest ``mri_date`` among those with all three sequences (t2w, hbv, adc) readable, a
  marksheet row and a label (then the highest study id); the others are listed with why they
  were left.
  A label file with a ``study_id`` column picks the study itself.
- **Label.** A yes/no marksheet column (``case_csPCa`` by default: YES -> 1), or a CSV of the
  user's own labels (``patient_id``, ``label``, optional ``study_id``) joined by PI-CAI patient id.
- **Clinical columns.** ``patient_age`` -> age, ``psa`` -> psa, ``center`` -> centre,
  ``case_ISUP`` -> isup (0, no cancer, is left empty: the manifest's scale is 1-5), the highest
  Gleason sum of ``lesion_GS`` -> gleason (``0+0`` benign and ``N/A`` lesions skipped; pre-2005
  sums below 6 are written as 6, the floor of ISUP grade group 1, and listed). With a label that
  the histopathology defines (``case_csPCa``...), gleason and isup are left empty: csPCa *is*
  ISUP >= 2, so as predictors they would hand the clinical model its label. Hematuria and
  leukocyturia are not in PI-CAI and stay missing (the clinical model takes missing values).
- **Masks.** A delineation (``--labels``) with a lesion is the patient's mask, its ISUP-valued
  labels kept; an all-zero delineation (a negative study) gives no mask, since osteomet refuses
  an empty tumour mask. Each is checked against its T2's grid here, so ``run mri`` meets no
  off-grid file hours later.

Images are referenced where they are (absolute paths into ROOT); ``convert`` writes them (and
the masks) under ``OUT/images`` and ``OUT/labels`` instead, without the DICOM metadata an MHA
header may carry. Nothing is written inside ROOT or the labels folder, every file is written
atomically, and ``OUT`` must be new, empty, or an earlier import's folder holding only its files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from osteomet import __version__
from osteomet.data.formats import CONVERSIONS
from osteomet.data.picai import (
    HISTOPATHOLOGY_COLUMNS,
    SEQUENCES,
    choose_study,
    delineation_folders,
    find_delineations,
    find_marksheet,
    find_studies,
    gleason_sums,
    is_missing,
    number,
    parse_yes_no,
    read_marksheet,
    read_own_labels,
)
from osteomet.errors import InputError, OutputExistsError
from osteomet.layout import MANIFEST
from osteomet.stage import refuse_output_inside
from osteomet.utils.files import read_json, temporary_original, write_json_atomic, write_text_atomic

PathLike = str | os.PathLike[str]

FORMAT = "osteomet.import_picai/1"
RECORD = "summary.json"
SUMMARY = "summary.md"
IMAGES = "images"
LABELS = "labels"
#: Marksheet columns kept beside the manifest's own (ignored by the models, for the researcher's tables).
EXTRA_COLUMNS = ("study_id", "psad", "prostate_volume")
#: The lowest Gleason sum the manifest holds: ISUP grade group 1 is "Gleason 6 or lower".
MIN_GLEASON = 6


def import_picai(root: PathLike, out: PathLike, *, labels: PathLike | None = None, label: str = "case_csPCa",
                 convert: str | None = None, log: Callable[[str], None] = print,
                 marksheet: PathLike | None = None) -> dict[str, Any]:
    """Write ``out/manifest.csv``, ``summary.md`` and ``summary.json`` for the PI-CAI archive in ``root``.

    ``labels``: delineation folder (or a ``picai_labels`` checkout: its expert lesion
    delineations are used). ``label``: a yes/no marksheet column, or the path of a CSV of
    one's own labels. ``convert``: None (reference ROOT's MHA files), ``nifti`` or ``mha``.
    ``marksheet``: its path, when it is neither in ``root`` nor in the ``picai_labels``
    checkout above ``labels``. Returns the summary (``summary.json``'s content).
    """
    root, out = Path(root), Path(out)
    if convert is not None and str(convert).lower() not in CONVERSIONS:
        raise InputError(f"--convert {convert!r}: choose {' or '.join(CONVERSIONS)} (or leave it out to reference "
                         f"the archive's MHA files where they are)")
    convert = None if convert is None else str(convert).lower()
    refuse_output_inside(out, root, "the PI-CAI image folder", option="output folder")
    if labels is not None:
        refuse_output_inside(out, Path(labels), "the delineation folder", option="output folder")
    label_file = _label_file(label)
    previous = claim_output(out)

    scan = find_studies(root)
    sheet_path = Path(marksheet) if marksheet is not None else find_marksheet(root, labels)
    sheet = read_marksheet(sheet_path)
    log(f"PI-CAI archive {root}: {len(scan.studies)} studies of {len(scan.patients)} patients; "
        f"marksheet {sheet_path}: {len(sheet)} studies")
    own = read_own_labels(label_file) if label_file is not None else None
    studies = _study_table(scan, sheet, label, own)
    chosen = _choose(studies)
    if chosen.empty:
        reasons = studies["reason"].value_counts()
        raise InputError(f"{root}: no study can be imported: " + "; ".join(f"{n} {r}" for r, n in reasons.items())
                         + f" (marksheet {sheet_path})")
    folders = delineation_folders(labels) if labels is not None else []
    masks, found = _check_masks(chosen, folders)
    withheld = label_file is None and label.strip().lower() in HISTOPATHOLOGY_COLUMNS
    frame, notes = _manifest_rows(chosen, sheet, masks, withhold_histopathology=withheld)

    planned = [MANIFEST, SUMMARY, RECORD]
    if convert is not None:
        planned += _converted_paths(frame, convert)
    write_json_atomic(out / RECORD, {"format": FORMAT, "status": "started", "osteomet": __version__,
                                     "files": sorted(set(planned) | previous)})
    if convert is not None:
        frame = _convert(frame, masks, out, convert, log)
    from osteomet.data.manifest import write_manifest

    write_manifest(frame, out / MANIFEST, kind="mri", overwrite=True)
    summary = _summary(root=root, sheet_path=sheet_path, folders=folders, label=label, label_file=label_file, own=own,
                       convert=convert, scan=scan, sheet=sheet, studies=studies, chosen=chosen, masks=masks,
                       found=found, frame=frame, notes=notes, withheld=withheld, files=sorted(planned))
    write_text_atomic(out / SUMMARY, _markdown(summary))
    for stale in sorted(previous - set(planned)):
        (out / stale).unlink(missing_ok=True)  # an earlier import's own file (its recorded list)
    for folder in (out / IMAGES, out / LABELS):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    write_json_atomic(out / RECORD, summary)
    counts = summary["counts"]
    log(f"imported {counts['imported']} patients ({counts['positive']} positive, {counts['negative']} negative by "
        f"{summary['label']['name']}), {counts['masks']} with a lesion mask -> {out / MANIFEST}")
    for warning in summary["warnings"]:
        log(f"note: {warning}")
    return summary


# ---- the output folder ---------------------------------------------------------------------------

def claim_output(out: Path) -> set[str]:
    """The files an earlier import recorded in ``out`` (replaced by this one); refuse a folder holding anything else.

    A folder is the importer's while it holds only the files its ``summary.json`` names (that
    record is written first, so an interrupted import is recognised too) and their temporary
    siblings; a user's notes, images or manifest make the command refuse before a byte is written.
    """
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder; choose another output folder")
    if not out.exists() or not any(out.iterdir()):
        return set()
    record = read_json(out / RECORD)
    if not record or record.get("format") != FORMAT or not isinstance(record.get("files"), list):
        raise OutputExistsError(f"{out}: the folder is not empty and holds no earlier `osteomet import picai` output "
                                f"(no {RECORD} of one); osteomet never writes into or over your files: choose a new or "
                                f"empty output folder")
    own = {str(f) for f in record["files"]}
    foreign = []
    for path in sorted(out.rglob("*")):
        if path.is_dir():
            continue
        relative = path.relative_to(out).as_posix()
        folder, _, name = relative.rpartition("/")
        original = temporary_original(name)
        if relative in own or (original is not None and (f"{folder}/{original}" if folder else original) in own):
            continue
        foreign.append(relative)
    if foreign:
        raise OutputExistsError(f"{out}: holds {len(foreign)} file(s) an earlier import did not write ("
                                + ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
                                + "); osteomet never overwrites your files: choose a new or empty output folder")
    return own


# ---- studies, labels and the one study per patient ---------------------------------------------------

def _label_file(label: str) -> Path | None:
    """``label`` as a file of one's own labels, or None when it names a marksheet column."""
    text = str(label).strip()
    if not text:
        raise InputError("--label is empty: give a yes/no marksheet column (case_csPCa) or a CSV of your own labels")
    path = Path(text)
    if path.suffix.lower() in (".csv", ".tsv", ".txt") or os.sep in text or "/" in text or path.is_file():
        if not path.is_file():
            raise InputError(f"--label {text}: no such label file (a marksheet column name has no file suffix)")
        return path
    return None


def _study_table(scan, sheet: pd.DataFrame, label: str, own: pd.DataFrame | None) -> pd.DataFrame:
    """One row per study in the archive or the marksheet: its label, date and whether it can be imported."""
    values = _labels(sheet, label, own)
    cases = sorted(set(scan.studies) | set(sheet.index))
    rows = []
    for case in cases:
        study = scan.studies.get(case)
        in_sheet = case in sheet.index
        if study is not None:
            pid, sid = study.patient_id, study.study_id
        else:
            pid, sid = sheet.at[case, "patient_id"], sheet.at[case, "study_id"]
        value = values(pid, sid)
        if study is None:
            reason = "marksheet row without images"
        elif study.missing:
            reason = f"missing {', '.join(study.missing)}"
        elif not in_sheet:
            reason = "images without a marksheet row"
        elif value is None:
            reason = "no label"
        else:
            reason = _unreadable(study)
        date = sheet.at[case, "mri_date"] if in_sheet and "mri_date" in sheet.columns else None
        rows.append({"case_id": case, "patient_id": pid, "study_id": sid,
                     "mri_date": None if is_missing(date) else date,
                     "label": value, "in_archive": study is not None, "in_marksheet": in_sheet,
                     "missing": study.missing if study else list(SEQUENCES.values()),
                     "files": {col: study.files.get(seq) for col, seq in SEQUENCES.items()} if study else {},
                     "reason": reason})
    return pd.DataFrame(rows, columns=["case_id", "patient_id", "study_id", "mri_date", "label", "in_archive",
                                       "in_marksheet", "missing", "files", "reason"])


def _unreadable(study) -> str:
    """Why a study's header says it cannot be used ("" when all three are 3D volumes on a physical grid).

    Checked from the headers alone, before a study is chosen, so that a damaged download leaves
    the patient's other study (or the patient) out with its reason instead of failing `run mri`.
    """
    from osteomet.data.image_errors import ImageError
    from osteomet.data.image_header import check_image_header

    for seq in SEQUENCES.values():
        try:
            check_image_header(study.files[seq])
        except ImageError as exc:
            return f"unreadable {seq}: {' '.join(str(exc).split())}"  # one line: it is a table cell
    return ""


def _labels(sheet: pd.DataFrame, label: str, own: pd.DataFrame | None) -> Callable[[str, str], int | None]:
    """A study's label: from the marksheet column ``label``, or from the user's table (study row, else patient row)."""
    if own is not None:
        table = own
        by_study = {(r.patient_id, r.study_id): r.label for r in table.itertuples() if r.study_id}
        by_patient = {r.patient_id: r.label for r in table.itertuples() if not r.study_id}
        named = {pid for pid, _ in by_study}
        return lambda pid, sid: by_study.get((pid, sid)) if pid in named else by_patient.get(pid)
    column = label.strip().lower()
    if column not in sheet.columns:
        binary = [c for c in sheet.columns if c != "line" and _is_yes_no(sheet[c])]
        raise InputError(f"--label {label}: no such marksheet column; yes/no columns: {', '.join(binary) or 'none'} "
                         f"(or give the path of a CSV with patient_id and label columns)")
    parsed, problems = {}, []
    for case, row in sheet.iterrows():
        try:
            parsed[case] = parse_yes_no(row[column], where=f"marksheet line {row['line']} (study {case})")
        except InputError as exc:
            problems.append(str(exc))
    if problems:
        raise InputError(f"--label {label}: not a yes/no column ({len(problems)} value(s) are not): "
                         + "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")
                         + "; choose a yes/no column such as case_csPCa, or give a CSV of your own labels")
    return lambda pid, sid: parsed.get(f"{pid}_{sid}")


def _is_yes_no(values: pd.Series) -> bool:
    try:
        known = [parse_yes_no(v, where="") for v in values]
    except InputError:
        return False
    return any(k is not None for k in known)


def _choose(studies: pd.DataFrame) -> pd.DataFrame:
    """The imported study of each patient (:func:`osteomet.data.picai.choose_study`); the others' reason is set in
    ``studies``, for the summary."""
    usable = studies[studies["reason"] == ""]
    picked = {pid: choose_study(list(zip(group["study_id"], group["mri_date"])))
              for pid, group in usable.groupby("patient_id", sort=True)}
    for index, row in usable.iterrows():
        best = picked[row["patient_id"]]
        if row["study_id"] != best:
            date = studies.loc[studies["case_id"] == f"{row['patient_id']}_{best}", "mri_date"].iloc[0]
            studies.at[index, "reason"] = f"another study of the patient was imported ({best}, {date or 'no date'})"
    chosen = studies[studies["reason"] == ""]
    order = sorted(range(len(chosen)), key=lambda i: _id_order(chosen["patient_id"].iloc[i]))
    return chosen.iloc[order].copy()


def _id_order(value: str) -> tuple[int, int, str]:
    """PI-CAI ids are numbers: 9999 before 10000."""
    return (0, int(value), value) if value.isdigit() else (1, 0, value)


# ---- masks and clinical values ------------------------------------------------------------------------

def _check_masks(chosen: pd.DataFrame, folders: list[Path]) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """Per imported study: its delineation, whether it has a lesion and its labels; every unusable file at once.

    Also how many delineation files the folders hold, and how many belong to no imported study.
    """
    from osteomet.data.image_errors import ImageError
    from osteomet.utils.progress import progress_bar

    if not folders:
        return {case: {"status": "no labels folder", "path": None, "labels": []} for case in chosen["case_id"]}, \
            {"count": 0, "unused": 0}
    import numpy as np
    import SimpleITK as sitk

    from osteomet.data.picai import read_delineation

    found = find_delineations(folders)
    out, problems = {}, []
    with progress_bar("check delineations", len(chosen), transient=True) as advance:
        for row in chosen.itertuples():
            path = found.get(row.case_id)
            if path is None:
                out[row.case_id] = {"status": "no delineation", "path": None, "labels": []}
            else:
                try:
                    labels = read_delineation(path, row.files["t2"])
                except ImageError as exc:
                    problems.append(f"{row.case_id}: {exc}")
                    advance()
                    continue
                values = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(labels)) if v > 0]
                out[row.case_id] = {"status": "lesion" if values else "empty delineation",
                                    "path": path if values else None, "labels": values}
            advance()
    if problems:
        raise InputError(f"{len(problems)} delineation(s) cannot be used as tumour masks: " + "; ".join(problems[:8])
                         + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
                         + ". A mask must lie on its T2's grid (picai_labels' human_expert/resampled folder holds the "
                           "delineations so; human_expert/original does not)")
    return out, {"count": len(found), "unused": len(set(found) - set(chosen["case_id"]))}


def _manifest_rows(chosen: pd.DataFrame, sheet: pd.DataFrame, masks: dict[str, dict[str, Any]], *,
                   withhold_histopathology: bool) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The manifest's rows, each checked by the manifest's own schema against its marksheet line."""
    from pydantic import ValidationError

    from osteomet.data.manifest import ClinicalRecord

    rows, problems = [], []
    notes: dict[str, Any] = {"gleason_below_6": [], "isup_0": [], "age_missing": [], "psa_missing": []}
    for row in chosen.itertuples():
        line = sheet.loc[row.case_id]
        where = f"marksheet line {line['line']} (study {row.case_id})"
        try:
            clinical = _clinical(line, where=where, notes=notes, case=row.case_id,
                                 histopathology=not withhold_histopathology)
            extra = {c: number(line.get(c), where=where, column=c) for c in EXTRA_COLUMNS[1:] if c in line.index}
            ClinicalRecord(patient_id=row.patient_id, label=row.label,
                           **{k: v for k, v in clinical.items() if k != "centre"})
        except InputError as exc:
            problems.append(str(exc))
            continue
        except ValidationError as exc:
            for err in exc.errors():
                name = ".".join(str(p) for p in err["loc"]) or "row"
                problems.append(f"{where}: {name}: {err['msg'].removeprefix('Value error, ')}")
            continue
        rows.append({"patient_id": row.patient_id, "centre": clinical.pop("centre"), "label": row.label, **clinical,
                     **{col: str(row.files[col]) for col in SEQUENCES},
                     "mask": _as_text(masks[row.case_id]["path"]), "study_id": row.study_id, **extra})
    if problems:
        raise InputError(f"{len(problems)} problem(s) in the marksheet rows of the imported studies: "
                         + "; ".join(problems[:10]) + (" ..." if len(problems) > 10 else ""))
    columns = ["patient_id", "centre", "label", "age", "psa", "gleason", "isup", "t2", "dwi", "adc", "mask",
               *EXTRA_COLUMNS]
    frame = pd.DataFrame([{k: _cell(row.get(k)) for k in columns} for row in rows], columns=columns, dtype=object)
    return frame, notes


def _cell(value: Any) -> Any:
    """A manifest cell as the marksheet wrote it: ``67`` not ``67.0``, ``5.1`` not ``5.1000000001``; None stays None."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return value if value is None or isinstance(value, str) else str(value)


def _clinical(line: pd.Series, *, where: str, notes: dict[str, Any], case: str, histopathology: bool) -> dict[str, Any]:
    """age, psa, gleason, isup and centre of one marksheet row (the manifest's names and scales).

    Without ``histopathology`` gleason and isup are left empty (the label is defined by them).
    """
    age = number(line.get("patient_age"), where=where, column="patient_age")
    psa = number(line.get("psa"), where=where, column="psa")
    centre = next((line.get(c) for c in ("center", "centre") if c in line.index and not is_missing(line.get(c))), None)
    if age is None:
        notes["age_missing"].append(case)
    if psa is None:
        notes["psa_missing"].append(case)
    if not histopathology:
        return {"age": age, "psa": psa, "gleason": None, "isup": None, "centre": centre}
    isup = number(line.get("case_isup"), where=where, column="case_ISUP")
    if isup is not None and (not float(isup).is_integer() or not 0 <= isup <= 5):
        raise InputError(f"{where}: case_ISUP {line.get('case_isup')!r} is not an ISUP grade group (0-5)")
    if isup == 0:
        notes["isup_0"].append(case)
        isup = None
    sums = gleason_sums(line.get("lesion_gs"), where=where)
    gleason = max(sums) if sums else None
    if gleason is not None and gleason < MIN_GLEASON:
        notes["gleason_below_6"].append(case)
        gleason = MIN_GLEASON
    return {"age": age, "psa": psa, "gleason": gleason, "isup": None if isup is None else int(isup), "centre": centre}


def _as_text(path: Path | None) -> str | None:
    return None if path is None else str(path)


# ---- conversion -----------------------------------------------------------------------------------------

def _converted_paths(frame: pd.DataFrame, convert: str) -> list[str]:
    suffix = CONVERSIONS[convert]
    paths = [f"{IMAGES}/{pid}_{col}{suffix}" for pid in frame["patient_id"] for col in SEQUENCES]
    paths += [f"{LABELS}/{pid}{suffix}" for pid, mask in zip(frame["patient_id"], frame["mask"]) if mask is not None]
    return paths


def _convert(frame: pd.DataFrame, masks: dict[str, dict[str, Any]], out: Path, convert: str,
             log: Callable[[str], None]) -> pd.DataFrame:
    """Each patient's three volumes (and mask) rewritten under ``out``: geometry kept, header metadata dropped."""
    from osteomet.data.images import read_image, write_image
    from osteomet.data.picai import read_delineation
    from osteomet.utils.progress import progress_bar

    suffix = CONVERSIONS[convert]
    frame = frame.copy()
    log(f"converting {len(frame)} patients to {convert} under {out / IMAGES}")
    with progress_bar(f"convert to {convert}", len(frame)) as advance:
        for index, row in frame.iterrows():
            for col in SEQUENCES:
                target = out / IMAGES / f"{row['patient_id']}_{col}{suffix}"
                write_image(_without_metadata(read_image(row[col])), target)
                frame.at[index, col] = str(target.absolute())
            if row["mask"] is not None:
                source = masks[f"{row['patient_id']}_{row['study_id']}"]["path"]
                target = out / LABELS / f"{row['patient_id']}{suffix}"
                write_image(_without_metadata(read_delineation(source, row["t2"])), target)
                frame.at[index, "mask"] = str(target.absolute())
            advance()
    return frame


def _without_metadata(image):
    """The image with no header key-value pairs: PI-CAI's MHA headers may carry the DICOM tags they came from."""
    for key in image.GetMetaDataKeys():
        image.EraseMetaData(key)
    return image


# ---- the summary ----------------------------------------------------------------------------------------

def _summary(*, root: Path, sheet_path: Path, folders: list[Path], label: str, label_file: Path | None,
             own: pd.DataFrame | None,
             convert: str | None, scan, sheet: pd.DataFrame, studies: pd.DataFrame, chosen: pd.DataFrame,
             masks: dict[str, dict[str, Any]], found: dict[str, int], frame: pd.DataFrame, notes: dict[str, Any],
             withheld: bool, files: list[str]) -> dict[str, Any]:
    left = studies[studies["reason"] != ""]
    positives = int((chosen["label"] == 1).sum())
    negatives = int((chosen["label"] == 0).sum())
    status = {case: masks[case]["status"] for case in chosen["case_id"]}
    n_masks = sum(s == "lesion" for s in status.values())
    others = {pid: group.loc[group["reason"].str.startswith("another study"), "study_id"].tolist()
              for pid, group in studies.groupby("patient_id")}
    patients = [{"patient_id": r.patient_id, "study_id": r.study_id, "mri_date": r.mri_date, "label": int(r.label),
                 "mask": status[r.case_id], "mask_labels": masks[r.case_id]["labels"],
                 "other_studies": others.get(r.patient_id, [])} for r in chosen.itertuples()]
    warnings = []
    if positives == 0 or negatives == 0:
        warnings.append(f"every imported patient has label {1 if positives else 0}: a study needs both classes")
    if not folders:
        warnings.append("no delineation folder (--labels) was given, so no patient has a mask; `run mri` trains its "
                        "tumour segmenter on the manifest's masks")
    elif n_masks < len(frame):
        warnings.append(f"{len(frame) - n_masks} of {len(frame)} imported patients have no lesion mask (negative "
                        f"studies ship an empty delineation). `run mri` segments them with the UNETR trained on the "
                        f"others; an empty automatic mask is flagged by its mask QC and, with no manifest mask to fall "
                        f"back on, the patient is excluded. For a region every patient has, give whole-gland masks "
                        f"(picai_labels/anatomical_delineations/whole_gland/AI/Bosma22b) as --labels")
    if withheld:
        warnings.append(f"gleason and isup are left empty: the label {label} is defined by the histopathology "
                        f"(csPCa = ISUP >= 2), so as predictors they would give the label away")
    in_archive = studies[studies["in_archive"]]
    return {
        "format": FORMAT, "status": "done", "osteomet": __version__,
        "root": str(root.absolute()), "marksheet": str(sheet_path.absolute()),
        "delineation_folders": [str(f.absolute()) for f in folders],
        "label": {"name": str(label_file) if label_file else label,
                  "source": "label file" if label_file else "marksheet column"},
        "convert": convert,
        "counts": {"studies_in_archive": len(scan.studies), "patients_in_archive": len(scan.patients),
                   "complete_studies": int((in_archive["missing"].map(len) == 0).sum()),
                   "marksheet_rows": len(sheet), "imported": len(frame), "positive": positives, "negative": negatives,
                   "masks": n_masks, "empty_delineations": sum(s == "empty delineation" for s in status.values()),
                   "no_delineation": sum(s == "no delineation" for s in status.values()),
                   "delineations_found": found["count"], "delineations_of_studies_not_imported": found["unused"],
                   "not_imported": len(left), "unrecognised_files": len(scan.unrecognised)},
        "clinical": {"mapping": {"age": "patient_age", "psa": "psa", "centre": "center",
                                 "isup": None if withheld else "case_ISUP (0 -> empty)",
                                 "gleason": None if withheld else "highest lesion_GS sum (below 6 -> 6)",
                                 "hematuria": None, "leukocyturia": None},
                     "histopathology_withheld": withheld, **notes},
        "patients": patients,
        "not_imported": [{"case_id": r.case_id, "patient_id": r.patient_id, "study_id": r.study_id, "reason": r.reason}
                         for r in left.itertuples()],
        "marksheet_rows_without_images": left.loc[~left["in_archive"], "case_id"].tolist(),
        "images_without_marksheet_rows": left.loc[left["in_archive"] & ~left["in_marksheet"], "case_id"].tolist(),
        "incomplete_studies": {r.case_id: list(r.missing) for r in in_archive.itertuples() if r.missing},
        "unrecognised_files": [str(p) for p in scan.unrecognised[:50]],
        "marksheet_blank_id_lines": sheet.attrs.get("blank_lines", []),
        "labelled_patients_without_images": [] if own is None else sorted(set(own["patient_id"]) - scan.patients),
        "warnings": warnings,
        "files": files,
    }


def _markdown(summary: dict[str, Any]) -> str:
    c = summary["counts"]
    lines = [
        "# PI-CAI import", "",
        f"- archive: `{summary['root']}`: {c['studies_in_archive']} studies of {c['patients_in_archive']} patients "
        f"({c['complete_studies']} with t2w, hbv and adc)",
        f"- marksheet: `{summary['marksheet']}`: {c['marksheet_rows']} studies",
        "- delineations: " + (", ".join(f"`{f}`" for f in summary["delineation_folders"]) or "none given"),
        f"- label: {summary['label']['name']} ({summary['label']['source']})",
        "- images: " + (f"converted to {summary['convert']} under images/" if summary["convert"]
                         else "referenced in the archive (absolute paths)"),
        "",
        f"**Imported {c['imported']} patients** (one study each): {c['positive']} positive, {c['negative']} negative; "
        f"{c['masks']} with a lesion mask, {c['empty_delineations']} with an empty delineation (no mask), "
        f"{c['no_delineation']} without a delineation file.", "",
        "One study per patient: the latest mri_date among the studies with t2w, hbv and adc readable, a marksheet row "
        "and a label (then the highest study id).", "",
    ]
    mapping = summary["clinical"]["mapping"]
    lines += ["## Clinical columns", "", "| manifest | from the marksheet |", "|---|---|"]
    lines += [f"| {k} | {v or 'left empty'} |" for k, v in mapping.items()]
    lines += [""]
    if summary["warnings"]:
        lines += ["## Notes", ""] + [f"- {w}" for w in summary["warnings"]] + [""]
    several = [p for p in summary["patients"] if p["other_studies"]]
    if several:
        lines += ["## Patients with several studies", "", "| patient | imported | date | not imported |",
                  "|---|---|---|---|"]
        lines += [f"| {p['patient_id']} | {p['study_id']} | {p['mri_date'] or ''} | {', '.join(p['other_studies'])} |"
                  for p in several]
        lines += [""]
    left = summary["not_imported"]
    if left:
        lines += [f"## Studies not imported ({len(left)})", "", "| study | reason |", "|---|---|"]
        lines += [f"| {r['case_id']} | {r['reason'].replace('|', '/')} |" for r in left[:500]]
        if len(left) > 500:
            lines += [f"| ... | {len(left) - 500} more in summary.json |"]
        lines += [""]
    lines += ["## Patients", "", "| patient | study | label | mask |", "|---|---|---|---|"]
    lines += [f"| {p['patient_id']} | {p['study_id']} | {p['label']} | {p['mask']}"
              + (f" ({', '.join(map(str, p['mask_labels']))})" if p["mask_labels"] else "") + " |"
              for p in summary["patients"]]
    return "\n".join(lines) + "\n"
