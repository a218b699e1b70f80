"""The CT per-lesion stages: one mask, or a cohort against its reference masks; and the radiomics ICC table."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from osteomet.ct.lesions.cohort import LesionResult, LesionSettings
from osteomet.layout import LESION_BONES, LESIONS, METRICS, PATIENTS, REFERENCE_LESIONS
from osteomet.pipeline.inputs import manifest_inputs
from osteomet.stage import Stage, StageOutcome
from osteomet.utils.progress import progress_bar

OUTPUTS = (LESIONS, PATIENTS, METRICS, LESION_BONES, REFERENCE_LESIONS)


def analyse_lesion_files(mask: Path, bones: Path, out: Path, *, settings: LesionSettings, ct: Path | None = None,
                         reference: Path | None = None, patient_id: str) -> tuple[StageOutcome, LesionResult | None]:
    """Lesions of one mask; with ``reference``, the matched lesion-level evaluation."""
    from osteomet.ct.lesions.cohort import analyse_files, write_results

    stage = Stage("ct-lesions", out, settings={**asdict(settings), "patient_id": patient_id},
                  inputs={"mask": mask, "bones": bones, "ct": ct, "reference": reference}, outputs=OUTPUTS)
    result: dict[str, LesionResult] = {}

    def work() -> dict:
        analysis, ref, evaluation = analyse_files(mask, bones, ct=ct, reference=reference, patient_id=patient_id,
                                                  settings=settings)
        result["r"] = LesionResult([analysis], [ref] if ref else [], [evaluation] if evaluation else [], settings)
        write_results(result["r"], out)
        return analysis.summary() | (evaluation.summary() if evaluation else {})

    return stage.run(work), result.get("r")


def analyse_lesion_cohort(manifest: Path, out: Path, *, settings: LesionSettings,
                          predictions: Path | None = None) -> StageOutcome:
    """Per-lesion analysis over a CT manifest; with ``predictions``, statistics against the manifest's masks."""
    from osteomet.ct.lesions.cohort import LESION_COLUMNS, analyse_cohort, write_results
    from osteomet.data.manifest import read_manifest

    cohort = read_manifest(manifest, kind="ct", require=LESION_COLUMNS)
    stage = Stage("ct-lesions-cohort", out, settings=asdict(settings),
                  inputs={**manifest_inputs(cohort, manifest), "predictions": predictions}, outputs=OUTPUTS)

    def work() -> dict:
        with progress_bar("lesions", len(cohort)) as advance:
            result = analyse_cohort(cohort, predictions=predictions, settings=settings, progress=advance)
        write_results(result, out)
        return {"patients": len(result.analyses), "lesions": int(sum(len(a.table) for a in result.analyses))}

    return stage.run(work)
