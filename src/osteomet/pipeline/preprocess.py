"""The bpMRI preprocessing stage: a manifest (and optionally a segmentation folder's masks) to cached arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from osteomet.data.manifest import read_manifest
from osteomet.layout import INDEX
from osteomet.mri.preprocess import PreprocessConfig, preprocess_cohort
from osteomet.pipeline.inputs import manifest_inputs
from osteomet.stage import Stage, StageOutcome
from osteomet.utils.progress import progress_bar

STAGE = "preprocess-mri"


def preprocess_mri(manifest: str | Path, out: str | Path, *, seg_config: str | None = None,
                   roi_size: Sequence[int] = (64, 64, 32), segdir: str | Path | None = None,
                   jobs: int = 1) -> tuple[StageOutcome, pd.DataFrame]:
    """Preprocess every patient (reviewed > auto > manifest masks when ``segdir`` is given); returns the index."""
    from osteomet.mri.segmentation.config import load_segmentation_config

    cohort = read_manifest(manifest, kind="mri")
    if segdir is not None:
        from osteomet.data.masks import apply_masks

        cohort = apply_masks(cohort, segdir)
    config = PreprocessConfig(seg_size=load_segmentation_config(seg_config).seg_size, roi_size=tuple(roi_size))
    inputs = manifest_inputs(cohort, manifest)
    out = Path(out)
    stage = Stage(STAGE, out, settings=config, inputs=inputs, outputs=(INDEX,))

    def work() -> dict:
        with progress_bar("preprocess mri", len(cohort)) as advance:
            index = preprocess_cohort(cohort, out, config, jobs=jobs, progress=advance)
        return {k: int(v) for k, v in index["status"].value_counts().items()}

    outcome = stage.run(work)
    index = pd.read_csv(out / INDEX, dtype={"patient_id": str})
    if outcome.skipped:
        index["status"] = index["status"].where(index["status"] == "failed", "cached")
    return outcome, index


def refuse_failed_patients(index: pd.DataFrame, out: str | Path, what: str = "preprocessing") -> None:
    """Stop a study at the stage where patients failed, each named with its own reason (the root cause, not a
    later stage's "not in the cache")."""
    from osteomet.errors import PatientsFailedError

    failed = index[index["status"] == "failed"]
    if failed.empty:
        return
    listing = "; ".join(f"{row.patient_id}: {row.error}" for row in failed.head(10).itertuples())
    more = f"; and {len(failed) - 10} more (see {Path(out) / INDEX})" if len(failed) > 10 else ""
    raise PatientsFailedError(
        f"{what} failed for {len(failed)} of {len(index)} patient(s): {listing}{more}. Fix or re-export these files, "
        f"or remove the patients from the manifest; then rerun the same command (finished patients are kept)",
        failed=len(failed), total=len(index))
