"""Per-lesion analysis of one patient's files or of a whole CT manifest, and the files it writes.

Without predictions the manifest's ``lesion_mask`` is analysed (lesion table and per-patient
summary). With a folder of predicted masks (``PRED/<patient_id>.nii.gz``, on each patient's
CT grid) the predicted lesions are analysed and matched against the manifest's masks as
reference, and the lesion-, patient- and bone-level statistics are written.

Files written to the output folder (all CSV, atomically):

* ``lesions.csv``: one row per analysed lesion (predicted ones when evaluating, with their
  match columns); ``patients.csv``: one row per patient (counts, clusters, groups);
* with a reference: ``reference_lesions.csv`` (with ``detected``), ``bones.csv`` (one row
  per patient and bone with the bone-level calls), ``metrics.csv``
  (:mod:`osteomet.ct.lesions.metrics`); the settings go to ``settings.yaml`` (:mod:`osteomet.stage`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pandas as pd

from osteomet.ct.lesions.analysis import LesionAnalysis, analyse_lesions
from osteomet.ct.lesions.matching import check_criterion
from osteomet.ct.lesions.metrics import PatientEvaluation, evaluate_patient, lesion_metrics
from osteomet.errors import InputError, MissingInputError
from osteomet.layout import LESION_BONES, LESIONS, METRICS, PATIENTS, REFERENCE_LESIONS
from osteomet.utils.files import write_text_atomic
from osteomet.utils.tables import stack_rows

if TYPE_CHECKING:
    from osteomet.data.manifest import Manifest

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class LesionSettings:
    """Every choice of the analysis, recorded in the stage folder's ``settings.yaml`` so a table can be reproduced."""

    diffuse_fraction: float = 0.5
    cluster_gap: float = 10.0
    cluster_unit: str = "slices"
    criterion: str = "iou"
    iou_threshold: float = 0.1
    n_resamples: int = 2000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        check_criterion(self.criterion, self.iou_threshold)
        if self.cluster_unit not in ("slices", "mm"):
            raise InputError(f"cluster unit must be 'slices' or 'mm', got {self.cluster_unit!r}")
        if not 0 < self.diffuse_fraction < 1:
            raise InputError(f"diffuse fraction must be between 0 and 1, got {self.diffuse_fraction}")


@dataclass
class LesionResult:
    """Analyses (and evaluations, with a reference) of one or more patients."""

    analyses: list[LesionAnalysis] = field(default_factory=list)
    references: list[LesionAnalysis] = field(default_factory=list)
    evaluations: list[PatientEvaluation] = field(default_factory=list)
    settings: LesionSettings = field(default_factory=LesionSettings)


def analyse_files(mask: PathLike, bones: PathLike | None, *, ct: PathLike | None = None,
                  reference: PathLike | None = None, patient_id: str | None = None,
                  settings: LesionSettings | None = None) -> tuple[LesionAnalysis, LesionAnalysis | None,
                                                                    PatientEvaluation | None]:
    """Read one patient's files (grids checked) and analyse, and evaluate against ``reference`` if given."""
    from osteomet.data.images import read_image
    from osteomet.data.label_masks import read_label_map, read_mask

    settings = settings or LesionSettings()
    who = f"patient {patient_id!r}: " if patient_id else ""
    mask_image = read_mask(mask, allow_empty=True)
    bone_image = read_label_map(bones, reference=mask_image, reference_name=mask) if bones is not None else None
    ct_image = read_image(ct) if ct is not None else None
    kwargs = dict(diffuse_fraction=settings.diffuse_fraction, cluster_gap=settings.cluster_gap,
                  cluster_unit=settings.cluster_unit, patient_id=patient_id)
    analysis = analyse_lesions(mask_image, bone_image, ct_image, names=(str(mask), str(bones), str(ct)), **kwargs)
    if reference is None:
        return analysis, None, None
    ref_image = read_mask(reference, reference=mask_image, reference_name=f"{who}{mask}", allow_empty=True)
    ref = analyse_lesions(ref_image, bone_image, ct_image, names=(str(reference), str(bones), str(ct)), **kwargs)
    evaluation = evaluate_patient(analysis, ref, criterion=settings.criterion, iou_threshold=settings.iou_threshold,
                                  patient_id=patient_id)
    return analysis, ref, evaluation


#: Manifest columns the cohort analysis needs for every patient.
LESION_COLUMNS = ("lesion_mask", "bone_map")


def analyse_cohort(manifest: PathLike | Manifest, *, predictions: PathLike | None = None,
                   settings: LesionSettings | None = None, progress: Callable[[], None] | None = None) -> LesionResult:
    """Analyse every patient of a CT manifest (and evaluate ``PRED/<patient_id>.nii.gz`` against it).

    ``manifest`` is a path, or a manifest the caller has already read (it is then not read again).
    """
    from osteomet.data.manifest import Manifest, read_manifest

    settings = settings or LesionSettings()
    cohort = manifest if isinstance(manifest, Manifest) else read_manifest(manifest, kind="ct",
                                                                            require=LESION_COLUMNS)
    result = LesionResult(settings=settings)
    folder = Path(predictions) if predictions is not None else None
    if folder is not None:
        if not folder.is_dir():
            raise MissingInputError(f"{folder}: predictions folder does not exist")
        missing = [r.patient_id for r in cohort if not (folder / f"{r.patient_id}.nii.gz").is_file()]
        if missing:
            raise MissingInputError(f"{folder}: no predicted mask <patient_id>.nii.gz for {len(missing)} patient(s): "
                                    + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    for record in cohort:
        if folder is None:
            analysis, ref, evaluation = analyse_files(record.lesion_mask, record.bone_map, ct=record.ct,
                                                      patient_id=record.patient_id, settings=settings)
        else:
            analysis, ref, evaluation = analyse_files(folder / f"{record.patient_id}.nii.gz",
                                                      record.bone_map, ct=record.ct, reference=record.lesion_mask,
                                                      patient_id=record.patient_id, settings=settings)
        result.analyses.append(analysis)
        if ref is not None and evaluation is not None:
            result.references.append(ref)
            result.evaluations.append(evaluation)
        if progress:
            progress()
    return result


def _csv(path: Path, frame: pd.DataFrame) -> Path:
    return write_text_atomic(path, frame.to_csv(index=False))


def write_results(result: LesionResult, out: PathLike) -> dict[str, Path]:
    """Write the tables of :class:`LesionResult` into ``out`` (see module docstring)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if result.evaluations:
        lesions = stack_rows([e.predicted for e in result.evaluations])
        paths["reference_lesions"] = _csv(out / REFERENCE_LESIONS, stack_rows([e.reference for e in result.evaluations]))
        paths["bones"] = _csv(out / LESION_BONES, stack_rows([e.bones for e in result.evaluations]))
        s = result.settings
        paths["metrics"] = _csv(out / METRICS, lesion_metrics(result.evaluations, level=s.level,
                                                                    n_resamples=s.n_resamples, seed=s.seed))
        patients = pd.DataFrame([{**a.summary(), **e.summary()} for a, e in zip(result.analyses, result.evaluations)])
    else:
        lesions = stack_rows([a.table for a in result.analyses])
        patients = pd.DataFrame([a.summary() for a in result.analyses])
    paths["lesions"] = _csv(out / LESIONS, lesions)
    paths["patients"] = _csv(out / PATIENTS, patients)
    return paths
