"""A cohort on disk: one process-pool task per patient, manifest, lesion truth, synth record."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from osteomet.data.images import write_image
from osteomet.data.manifest import write_manifest
from osteomet.data.synth._cohort import patient_files, start_cohort, write_synth_record
from osteomet.data.synth.ct.materials import CTSynthConfig
from osteomet.data.synth.ct.render import synthesize_ct_patient
from osteomet.layout import CT_TRUTH
from osteomet.utils.files import write_text_atomic
from osteomet.utils.parallel import map_tasks

TRUTH_COLUMNS = ["patient_id", "lesion_id", "bone_id", "bone_name", "group", "kind", "type", "centre_x_mm",
                 "centre_y_mm", "centre_z_mm", "volume_ml", "n_voxels", "max_slice_fraction"]


def _patient_task(args: tuple) -> dict[str, Any]:
    """Generate and write one patient (a process-pool task; RNG from its own SeedSequence)."""
    index, seed_seq, config, out = args
    pid, files = patient_files("ct", index)
    ct, lesions, bones, rows = synthesize_ct_patient(np.random.default_rng(seed_seq), config)
    paths = {key: out / relative for key, relative in files.items()}
    write_image(ct, paths["ct"])
    write_image(lesions, paths["lesion_mask"])
    write_image(bones, paths["bone_map"])
    return {
        "manifest": {"patient_id": pid, "centre": "C1", **{k: str(p.relative_to(out)) for k, p in paths.items()},
                     "split": None},
        "truth": [{"patient_id": pid, **row} for row in rows],
    }


def generate_ct_cohort(out: str | Path, n: int, *, seed: int = 0, config: CTSynthConfig | None = None,
                       progress: Callable[[], None] | None = None, overwrite: bool = False, jobs: int = 1) -> Path:
    """Write ``n`` synthetic CT patients, their manifest and lesion truth into ``out``; return the manifest path.

    Files: ``images/<pid>_ct.nii.gz``, ``labels/<pid>_lesions.nii.gz`` (empty for lesion-free
    patients), ``labels/<pid>_bones.nii.gz``, ``manifest.csv`` (kind ct, split left empty),
    ``lesions_truth.csv`` and ``synth.json`` (seed, config, version).
    """
    config = config or CTSynthConfig()
    out, manifest_path = start_cohort(out, n, "ct", seed=seed, config=config, overwrite=overwrite)
    start = time.perf_counter()
    children = np.random.SeedSequence(seed).spawn(n)
    tasks = [(i, children[i], config, out) for i in range(n)]
    results = map_tasks(_patient_task, tasks, jobs=jobs, progress=progress)
    manifest = pd.DataFrame([r["manifest"] for r in results])
    truth = pd.DataFrame([row for r in results for row in r["truth"]], columns=TRUTH_COLUMNS)
    write_text_atomic(out / CT_TRUTH, truth.to_csv(index=False))
    write_synth_record(out, "ct", n=n, seed=seed, config=config, started=start)
    write_manifest(manifest, manifest_path, kind="ct")  # last: its presence means complete
    return manifest_path
