"""A cohort on disk: one process-pool task per patient, manifest with splits, truth table, synth record."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import SimpleITK as sitk

from osteomet.data.images import write_image
from osteomet.data.manifest import write_manifest
from osteomet.data.splits import assign_splits
from osteomet.data.synth._cohort import start_cohort, write_synth_record
from osteomet.data.synth.clinical import (
    CENTRE_PREVALENCE,
    apply_missingness,
    draw_labels,
    sample_clinical,
    sample_tumour_phenotype,
)
from osteomet.data.synth.mri.config import MRISynthConfig
from osteomet.data.synth.mri.render import synthesize_mri_patient
from osteomet.layout import MRI_TRUTH
from osteomet.utils.files import write_text_atomic
from osteomet.utils.parallel import map_tasks


def _patient_task(args: tuple) -> dict:
    """Generate and write one patient (a process-pool task; RNG from its own SeedSequence)."""
    index, centre, label, seed_seq, config, out = args
    rng = np.random.default_rng(seed_seq)
    pid = f"MRI{index + 1:03d}"
    clinical = sample_clinical(label, rng)
    phenotype = sample_tumour_phenotype(label, clinical["isup"], rng)
    images = synthesize_mri_patient(centre, phenotype, rng, config)
    ext = config.image_format
    paths = {
        "t2": out / "images" / f"{pid}_t2.{ext}",
        "dwi": out / "images" / f"{pid}_dwi.{ext}",
        "adc": out / "images" / f"{pid}_adc.{ext}",
        "mask": out / "labels" / f"{pid}_tumour.{ext}",
    }
    for key, path in paths.items():
        write_image(images[key], path)
    prostate_path = write_image(images["prostate"], out / "labels" / f"{pid}_prostate.{ext}")
    mask = sitk.GetArrayViewFromImage(images["mask"])
    voxel_ml = float(np.prod(images["mask"].GetSpacing())) / 1000.0
    clinical = apply_missingness(clinical, config.missing_rate, rng)
    return {
        "manifest": {"patient_id": pid, "centre": centre, "label": label, **clinical,
                     **{k: str(p.relative_to(out)) for k, p in paths.items()}},
        "truth": {"patient_id": pid, "centre": centre, "label": label, **phenotype,
                  "mask_volume_ml": float(mask.sum()) * voxel_ml,
                  "prostate_mask": str(prostate_path.relative_to(out))},
    }


def plan_centres(n: int, external_fraction: float, rng: np.random.Generator) -> list[tuple[str, int]]:
    """Centre and BM label per patient: C1 first, then the external centre C2."""
    n_c2 = int(round(n * external_fraction)) if n >= 4 else 0
    n_c1 = n - n_c2
    plan = [("C1", int(lab)) for lab in draw_labels(n_c1, CENTRE_PREVALENCE["C1"], rng)]
    plan += [("C2", int(lab)) for lab in draw_labels(n_c2, CENTRE_PREVALENCE["C2"], rng)]
    return plan


def generate_mri_cohort(out: str | Path, n: int, *, seed: int = 0, config: MRISynthConfig | None = None,
                        progress: Callable[[], None] | None = None, overwrite: bool = False, jobs: int = 1) -> Path:
    """Write ``n`` synthetic bpMRI patients and their manifest into ``out``; return the manifest path.

    Each patient draws from its own child of ``SeedSequence(seed)``, so the cohort is the
    same whatever ``jobs`` is. Centre C2 patients are the external test set; C1 is split
    6:1:3 into train/val/test by patient, stratified by label.
    """
    out, manifest_path = start_cohort(out, n, overwrite=overwrite)
    config = config or MRISynthConfig()
    start = time.perf_counter()
    root = np.random.SeedSequence(seed)
    plan_rng = np.random.default_rng(root.spawn(1)[0])
    plan = plan_centres(n, config.external_fraction, plan_rng)
    children = np.random.SeedSequence(seed, spawn_key=(1,)).spawn(n)
    tasks = [(i, centre, label, children[i], config, out) for i, (centre, label) in enumerate(plan)]
    results = map_tasks(_patient_task, tasks, jobs=jobs, progress=progress)

    manifest = pd.DataFrame([r["manifest"] for r in results])
    manifest["split"] = assign_splits(manifest, ratios=config.split_ratios, seed=seed, external_centres=("C2",))
    write_manifest(manifest, manifest_path, kind="mri", overwrite=overwrite)
    truth = pd.DataFrame([r["truth"] for r in results])
    write_text_atomic(out / MRI_TRUTH, truth.to_csv(index=False))
    write_synth_record(out, "mri", n=n, seed=seed, config=config, started=start)
    return manifest_path
