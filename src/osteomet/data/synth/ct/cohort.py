"""A cohort on disk: one process-pool task per patient, manifest, lesion truth, synth record."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from osteomet.data.images import write_image
from osteomet.data.manifest import write_manifest
from osteomet.data.synth._cohort import patient_files, start_cohort, write_synth_record
from osteomet.data.synth.ct.lookalikes import LOOKALIKE_COLUMNS
from osteomet.data.synth.ct.materials import CTSynthConfig
from osteomet.data.synth.ct.render import lesion_free_draw, phantom_images, render_ct_phantom
from osteomet.layout import CT_TRUTH
from osteomet.utils.files import read_json, write_json_atomic, write_text_atomic
from osteomet.utils.parallel import map_tasks

TRUTH_COLUMNS = ["patient_id", "lesion_id", "bone_id", "bone_name", "group", "kind", "type", "centre_x_mm",
                 "centre_y_mm", "centre_z_mm", "volume_ml", "n_voxels", "max_slice_fraction"]


def lesion_free_patients(children: Sequence[np.random.SeedSequence], fraction: float) -> np.ndarray:
    """Which patients of a cohort are lesion-free: exactly ``round(n * fraction)`` (halves up) of them.

    The ones with the lowest own lesion-free draw (:func:`~.render.lesion_free_draw`, the first
    number of each patient's generator), so the choice is the patient's, not its position, and a
    patient lesion-free on its own (draw below ``fraction``) mostly stays so in a cohort. Drawn
    independently, a 10-patient cohort at 0.4 would hold no lesion-free patient in 0.6% of seeds
    and 1 or fewer lesion patients in 0.2%, and a split could miss lesions where the models need them.
    """
    n = len(children)
    k = int(np.floor(n * fraction + 0.5))
    draws = np.array([lesion_free_draw(np.random.default_rng(child)) for child in children])
    flags = np.zeros(n, bool)
    flags[np.argsort(draws, kind="stable")[:k]] = True
    return flags


def _patient_task(args: tuple) -> dict[str, Any]:
    """Generate and write one patient (a process-pool task; RNG from its own SeedSequence)."""
    index, seed_seq, lesion_free, config, out = args
    pid, files = patient_files("ct", index)
    phantom = render_ct_phantom(np.random.default_rng(seed_seq), config, lesion_free=lesion_free)
    paths = {key: out / relative for key, relative in files.items()}
    for image, key in zip(phantom_images(phantom), ("ct", "lesion_mask", "bone_map")):
        write_image(image, paths[key])
    return {
        "manifest": {"patient_id": pid, "centre": "C1", **{k: str(p.relative_to(out)) for k, p in paths.items()},
                     "split": None},
        "truth": [{"patient_id": pid, **row} for row in phantom.lesion_rows],
        "lookalikes": [{"patient_id": pid, **row} for row in phantom.lookalike_rows],
    }


def generate_ct_cohort(out: str | Path, n: int, *, seed: int = 0, config: CTSynthConfig | None = None,
                       progress: Callable[[], None] | None = None, overwrite: bool = False, jobs: int = 1) -> Path:
    """Write ``n`` synthetic CT patients, their manifest and lesion truth into ``out``; return the manifest path.

    Files: ``images/<pid>_ct.nii.gz``, ``labels/<pid>_lesions.nii.gz`` (empty for lesion-free
    patients: exactly ``round(n * lesion_free_fraction)`` of them, :func:`lesion_free_patients`),
    ``labels/<pid>_bones.nii.gz``, ``manifest.csv`` (kind ct, split left empty),
    ``lesions_truth.csv`` and ``synth.json`` (seed, config, version, and under ``lookalikes`` one
    record per benign look-alike, :data:`~.lookalikes.LOOKALIKE_COLUMNS` plus ``patient_id``: a
    cohort's files are fixed by its record, so the look-alikes travel in it rather than in a file
    of their own).
    """
    config = config or CTSynthConfig()
    out, manifest_path = start_cohort(out, n, "ct", seed=seed, config=config, overwrite=overwrite)
    start = time.perf_counter()
    children = np.random.SeedSequence(seed).spawn(n)
    free = lesion_free_patients(children, config.lesion_free_fraction)
    tasks = [(i, children[i], bool(free[i]), config, out) for i in range(n)]
    results = map_tasks(_patient_task, tasks, jobs=jobs, progress=progress)
    manifest = pd.DataFrame([r["manifest"] for r in results])
    truth = pd.DataFrame([row for r in results for row in r["truth"]], columns=TRUTH_COLUMNS)
    write_text_atomic(out / CT_TRUTH, truth.to_csv(index=False))
    record_path = write_synth_record(out, "ct", n=n, seed=seed, config=config, started=start)
    record = read_json(record_path) or {}
    columns = ["patient_id", *LOOKALIKE_COLUMNS]
    record["lookalikes"] = [{c: row[c] for c in columns} for r in results for row in r["lookalikes"]]
    write_json_atomic(record_path, record)
    write_manifest(manifest, manifest_path, kind="ct")  # last: its presence means complete
    return manifest_path
