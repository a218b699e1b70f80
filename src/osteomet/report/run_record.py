"""What a run did and with what: stage timings, package versions, seeds and settings, made safe to show,
and the report section that shows them (:func:`run_section`, the page's last).

Read from each stage folder's ``stage.json`` and ``settings.yaml`` (see :mod:`osteomet.stage`)
and from ``run.json`` when the run wrote one. Settings are free-form, so before anything is
shown: keys that name a DICOM patient/study identifier (PS3.15 basic profile, as a user's
config or an imported header might carry them) are dropped, and paths are shown relative to
the run directory or not at all (folder names of DICOM exports often hold patient names).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from osteomet.config import recorded_settings
from osteomet.layout import MARKER, RUN_RECORD, SETTINGS, STAGE_RECORD, RunLayout
from osteomet.report.html import Section, esc, key_values, note, table
from osteomet.utils.files import read_json

#: DICOM attributes that identify a person or a visit (keyword, compared without case and separators).
IDENTIFYING_KEYS = frozenset(k.lower() for k in (
    "PatientName", "PatientsName", "PatientBirthDate", "PatientsBirthDate", "PatientBirthTime", "PatientSex",
    "PatientsSex", "PatientAge", "PatientsAge", "PatientAddress", "PatientsAddress", "OtherPatientNames",
    "OtherPatientIDs", "PatientTelephoneNumbers", "PatientMotherBirthName", "MilitaryRank", "EthnicGroup",
    "AccessionNumber", "StudyID", "StudyDate", "StudyTime", "SeriesDate", "AcquisitionDate", "ContentDate",
    "InstitutionName", "InstitutionAddress", "ReferringPhysicianName", "PerformingPhysicianName",
    "OperatorsName", "NameOfPhysiciansReadingStudy", "RequestingPhysician", "StudyInstanceUID",
    "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID", "DeviceSerialNumber", "StationName",
    "IssuerOfPatientID", "MedicalRecordLocator", "BirthDate", "DateOfBirth", "FirstName", "LastName",
    "Surname", "FamilyName", "GivenName", "Email", "Phone",
))
#: The same attributes by tag (group, element), as header dumps write them.
IDENTIFYING_TAGS = frozenset({"00100010", "00100030", "00100032", "00100040", "00101000", "00101001", "00101010",
                              "00101040", "00102154", "00080050", "00080080", "00080081", "00080090", "00081050",
                              "00081070", "00200010", "0020000d", "0020000e", "00080018"})
HIDDEN = "(hidden: identifying field)"
OUTSIDE = "(path outside the run directory)"
_SEPARATORS = re.compile(r"[^a-z0-9]")


def identifying(key: str) -> bool:
    """True for a key naming a DICOM identifier (``PatientName``, ``patient_name``, ``0010,0010`` tags too)."""
    flat = _SEPARATORS.sub("", str(key).lower())
    return flat in IDENTIFYING_KEYS or flat in IDENTIFYING_TAGS


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", "~", "\\\\")) or bool(re.match(r"^[A-Za-z]:[\\/]", text))


def safe_value(value: Any, run: Path) -> Any:
    """A setting value as shown: paths relative to the run directory, or hidden when outside it."""
    if isinstance(value, str) and _looks_like_path(value):
        try:
            return str(Path(value).resolve().relative_to(run.resolve()))
        except (ValueError, OSError):
            return OUTSIDE
    return value


def flatten(data: Any, run: Path, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted keys and scalar values of nested settings; identifying keys dropped, paths made safe."""
    if isinstance(data, dict):
        for key, value in data.items():
            if identifying(str(key)):
                yield f"{prefix}{key}", HIDDEN
                continue
            yield from flatten(value, run, f"{prefix}{key}.")
    elif isinstance(data, (list, tuple)):
        if all(not isinstance(v, (dict, list, tuple)) for v in data):
            yield prefix.rstrip("."), ", ".join(str(safe_value(v, run)) for v in data)
        else:
            for i, value in enumerate(data):
                yield from flatten(value, run, f"{prefix}{i}.")
    else:
        yield prefix.rstrip("."), safe_value(data, run)


def stage_folders(run: Path) -> list[Path]:
    """Every stage folder below the run directory (a folder holding ``stage.json``), in path order."""
    return sorted(p.parent for p in run.rglob(STAGE_RECORD) if p.is_file())


def settings_folders(run: Path) -> list[Path]:
    """Every folder with recorded settings: stage folders and those (a classifier grid) with ``settings.yaml`` only."""
    found = {p.parent for name in (STAGE_RECORD, SETTINGS) for p in run.rglob(name) if p.is_file()}
    return sorted(found)


def timings(run: Path) -> list[dict[str, Any]]:
    """One row per stage folder: folder, stage, status, start, end and seconds (from ``stage.json``)."""
    rows = []
    for folder in stage_folders(run):
        record = read_json(folder / STAGE_RECORD) or {}
        rows.append({"folder": str(folder.relative_to(run)), "stage": record.get("stage"),
                     "status": record.get("status"), "started": record.get("started"),
                     "finished": record.get("finished"), "seconds": record.get("seconds")})
    return rows


def versions(run: Path) -> dict[str, str]:
    """Package versions: ``run.json``'s when recorded, else those of the most recent finished stage."""
    record = read_json(run / RUN_RECORD) or {}
    found = record.get("versions") or record.get("package_versions")
    if isinstance(found, dict) and found:
        return {str(k): str(v) for k, v in found.items()}
    latest: tuple[str, dict] = ("", {})
    for folder in stage_folders(run):
        stage = read_json(folder / STAGE_RECORD) or {}
        if stage.get("status") == "complete" and isinstance(stage.get("versions"), dict):
            if str(stage.get("finished", "")) >= latest[0]:
                latest = (str(stage.get("finished", "")), stage["versions"])
    return {str(k): str(v) for k, v in latest[1].items()}


def seeds(run: Path) -> list[tuple[str, Any]]:
    """Every recorded seed: ``run.json``'s and each stage's settings keys named ``seed``."""
    found: list[tuple[str, Any]] = []
    record = read_json(run / RUN_RECORD) or {}
    found += [(f"run.json: {k}", v) for k, v in flatten(record, run) if k.split(".")[-1] in ("seed", "seeds")
              or k.startswith("seeds.")]
    for folder in settings_folders(run):
        settings = recorded_settings(folder) or {}
        found += [(f"{folder.relative_to(run)}: {k}", v) for k, v in flatten(settings, run)
                  if k.split(".")[-1] == "seed"]
    return found


def run_kind(run: Path) -> str | None:
    return (read_json(run / MARKER) or {}).get("kind")


def run_section(layout: RunLayout) -> Section:
    section = Section("run", "Versions, seeds, settings and timings")
    run = layout.root
    rows = timings(run)
    record = read_json(run / RUN_RECORD)
    if not rows and record is None:
        section.note = "no stage.json in any stage folder and no run.json"
        return section
    parts = ["<h3>Package versions</h3>" + key_values(sorted(versions(run).items())),
             "<h3>Seeds</h3>" + key_values(seeds(run))]
    if rows:
        frame = pd.DataFrame(rows)
        total = pd.to_numeric(frame["seconds"], errors="coerce").sum()
        parts.append("<h3>Stage timings</h3>" + table(frame, ("folder", "stage", "status", "started", "finished",
                                                               "seconds"))
                     + note(f"Total over the stages: {total:.1f} s."))
    if record is not None:
        parts.append("<details><summary>run.json</summary>" + key_values(list(flatten(record, run))[:400])
                     + "</details>")
    parts.append("<h3>Settings per stage</h3>")
    for folder in settings_folders(run):
        settings = recorded_settings(folder)
        if settings:
            parts.append(f"<details><summary>{esc(folder.relative_to(run))}</summary>"
                         + key_values(list(flatten(settings, run))[:400]) + "</details>")
    kind = run_kind(run)
    if kind:
        parts.insert(0, note(f"Run kind: {kind}."))
    section.body = "".join(parts)
    return section
