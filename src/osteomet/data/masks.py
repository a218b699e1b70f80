"""Which tumour mask each patient uses: the single place that decides.

A segmentation run folder ``SEGDIR`` holds the UNETR proposals in ``auto/<patient>.nii.gz``
and the radiologist-refined masks (imported by :func:`osteomet.mri.review.import_review`)
in ``reviewed/<patient>.nii.gz``, with ``provenance.json`` recording who changed what.
Every later stage (radiomics, classifiers) must take its masks from :func:`apply_masks` so
that the rule "reviewed, else auto, else the manifest's own mask" is applied identically
everywhere and a hand-replaced reviewed file is caught instead of silently used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from osteomet.data.label_masks import MaskError
from osteomet.data.manifest import Manifest, ManifestError, check_patient_id
from osteomet.errors import InputError
from osteomet.layout import AUTO_DIR, MASK_SUFFIX, PROVENANCE, QC_DIR, QC_TABLE, REVIEWED_DIR
from osteomet.utils.files import sha256_file

PathLike = str | os.PathLike[str]


#: Mask sources, in order of preference; ``excluded``: the automatic mask was flagged by the mask QC and the
#: study's ``segmentation.on_flagged`` gives the patient no other (see :func:`qc_decisions`).
SOURCES = ("reviewed", "auto", "manifest", "excluded", "none")


def auto_mask_path(segdir: PathLike, patient_id: str) -> Path:
    """``SEGDIR/auto/<patient>.nii.gz``: the UNETR proposal (never written by the review loop)."""
    return Path(segdir) / AUTO_DIR / f"{check_patient_id(patient_id)}{MASK_SUFFIX}"


def reviewed_mask_path(segdir: PathLike, patient_id: str) -> Path:
    """``SEGDIR/reviewed/<patient>.nii.gz``: the radiologist-refined mask, on the T2 grid."""
    return Path(segdir) / REVIEWED_DIR / f"{check_patient_id(patient_id)}{MASK_SUFFIX}"


def qc_folder(segdir: PathLike) -> Path:
    """``SEGDIR/qc``: the automatic-mask QC stage (:func:`osteomet.pipeline.cohort.qc_masks`)."""
    return Path(segdir) / QC_DIR


def qc_decisions(segdir: PathLike) -> dict[str, str]:
    """What the mask QC decided per patient (``use``, ``reviewed``, ``review``, ``manifest``, ``exclude``);
    empty when the folder's masks were never checked (``segment predict`` on its own)."""
    path = qc_folder(segdir) / QC_TABLE
    if not path.is_file():
        return {}
    table = pd.read_csv(path, dtype={"patient_id": str}, usecols=["patient_id", "action"])
    return dict(zip(table["patient_id"], table["action"]))


def provenance_path(segdir: PathLike) -> Path:
    return Path(segdir) / PROVENANCE


def read_provenance(segdir: PathLike) -> dict[str, Any]:
    """The provenance record (``{"version": 1, "patients": {...}}``); empty when none was written yet."""
    path = provenance_path(segdir)
    if not path.exists():
        return {"version": 1, "patients": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not readable as JSON ({exc}); restore it from a backup rather than deleting it") from exc
    if not isinstance(data, dict) or not isinstance(data.get("patients"), dict):
        raise InputError(f"{path}: not a provenance file (no 'patients' mapping)")
    return data


def effective_mask(patient_id: str, segdir: PathLike, *, fallback: PathLike | None = None,
                   provenance: dict[str, Any] | None = None, verify: bool = True,
                   decisions: dict[str, str] | None = None) -> tuple[Path | None, str]:
    """The mask a patient uses and where it comes from: ``reviewed``, ``auto``, ``manifest``, ``excluded`` or
    ``none``.

    A reviewed mask wins over the auto proposal; without either, ``fallback`` (the manifest's
    own mask) is used. An auto mask the mask QC flagged is replaced as it decided
    (``decisions``, default: read from ``SEGDIR/qc``): by the manifest's mask, or by none
    (``excluded``; also while it waits for review). With ``verify``, a reviewed mask whose
    content no longer matches the hash recorded at import raises :class:`MaskError`: someone
    replaced it by hand, and using it would break the provenance the study reports.
    """
    reviewed = reviewed_mask_path(segdir, patient_id)
    if reviewed.is_file():
        if verify:
            record = (provenance if provenance is not None else read_provenance(segdir))["patients"].get(patient_id, {})
            expected = record.get("reviewed_sha256")
            if expected and sha256_file(reviewed) != expected:
                raise MaskError(
                    f"patient {patient_id!r}: {reviewed} was changed after it was imported (its hash differs from "
                    f"{provenance_path(segdir)}); re-import the radiologist's file with `osteomet segment import-review`"
                )
        return reviewed, "reviewed"
    auto = auto_mask_path(segdir, patient_id)
    decision = (decisions if decisions is not None else qc_decisions(segdir)).get(patient_id, "use")
    if decision == "manifest" and fallback is not None:
        return Path(fallback), "manifest"
    if decision in ("manifest", "exclude", "review"):
        return None, "excluded"
    if auto.is_file():
        return auto, "auto"
    if fallback is not None:
        return Path(fallback), "manifest"
    return None, "none"


def mask_sources(manifest: Manifest, segdir: PathLike, *, verify: bool = True) -> pd.DataFrame:
    """One row per patient: the mask used, its source, and the review details where there are any."""
    if manifest.kind != "mri":
        raise InputError(f"mask sources apply to bpMRI manifests, not {manifest.kind!r}")
    provenance = read_provenance(segdir)
    decisions = qc_decisions(segdir)
    rows = []
    problems = []
    for record in manifest:
        try:
            path, source = effective_mask(record.patient_id, segdir, fallback=record.mask,
                                          provenance=provenance, verify=verify, decisions=decisions)
        except (MaskError, ValueError) as exc:
            problems.append(str(exc))
            continue
        entry = provenance["patients"].get(record.patient_id, {}) if source == "reviewed" else {}
        rows.append({
            "patient_id": record.patient_id,
            "source": source,
            "mask": None if path is None else str(path),
            "reviewer": entry.get("reviewer"),
            "reviewed_at": entry.get("time"),
            "dice_auto_vs_reviewed": entry.get("dice"),
            "in_provenance": bool(entry) if source == "reviewed" else None,
        })
    if problems:
        raise ManifestError(provenance_path(segdir), problems)
    return pd.DataFrame(rows, columns=["patient_id", "source", "mask", "reviewer", "reviewed_at",
                                       "dice_auto_vs_reviewed", "in_provenance"])


def apply_masks(manifest: Manifest, segdir: PathLike, *, verify: bool = True) -> Manifest:
    """A copy of ``manifest`` whose ``mask`` is the reviewed mask, else the auto mask, else its own.

    The per-patient choice is :func:`mask_sources` (call it for the table); a one-line
    summary is appended to the copy's ``warnings`` so that stages can log which masks they used.
    """
    table = mask_sources(manifest, segdir, verify=verify)
    chosen = {pid: None if path is None else Path(path) for pid, path in zip(table["patient_id"], table["mask"])}
    counts = table["source"].value_counts()
    summary = ", ".join(f"{int(counts[s])} {s}" for s in SOURCES if s in counts)
    return redirect_masks(manifest, chosen, f"masks from {segdir}: {summary}")


def with_mask_folder(manifest: Manifest, folder: PathLike, *, suffix: str = MASK_SUFFIX) -> Manifest:
    """A copy whose tumour/lesion mask is ``folder/<patient_id><suffix>`` (e.g. a model's predicted masks).

    For comparing features from predicted and manual masks: the manifest keeps its images and
    only the mask column points elsewhere. Every patient must have a file; the missing ones are
    listed together.
    """
    folder = Path(folder)
    paths = {r.patient_id: folder / f"{check_patient_id(r.patient_id)}{suffix}" for r in manifest.records}
    missing = [f"patient {pid!r}: {path.name} not found" for pid, path in paths.items() if not path.is_file()]
    if missing:
        raise ManifestError(folder, missing)
    return redirect_masks(manifest, paths, f"{mask_field(manifest)} from {folder}")


def mask_field(manifest: Manifest) -> str:
    """The manifest column holding the mask: ``mask`` (bpMRI tumour) or ``lesion_mask`` (CT)."""
    return "mask" if manifest.kind == "mri" else "lesion_mask"


def redirect_masks(manifest: Manifest, masks: dict[str, Path | None], note: str) -> Manifest:
    """A copy of ``manifest`` with each patient's mask replaced by ``masks[patient_id]``; ``note`` says from where."""
    field_name = mask_field(manifest)
    records = [r.model_copy(update={field_name: masks[r.patient_id]}) for r in manifest.records]
    return Manifest(kind=manifest.kind, records=records, path=manifest.path, warnings=[*manifest.warnings, note],
                    extra_columns=list(manifest.extra_columns))
