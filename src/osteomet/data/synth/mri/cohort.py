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
from osteomet.data.synth._cohort import patient_files, start_cohort, write_synth_record
from osteomet.data.synth.clinical import (
    CENTRE_PREVALENCE,
    apply_missingness,
    draw_labels,
    sample_clinical,
    sample_tumour_phenotype,
)
from osteomet.data.synth.mri.config import MRISynthConfig
from osteomet.data.synth.mri.render import synthesize_mri_patient
from osteomet.errors import InputError
from osteomet.layout import MRI_TRUTH
from osteomet.utils.files import write_text_atomic
from osteomet.utils.parallel import map_tasks


def _patient_task(args: tuple) -> dict:
    """Generate and write one patient (a process-pool task; RNG from its own SeedSequence)."""
    index, centre, label, seed_seq, config, out = args
    rng = np.random.default_rng(seed_seq)
    pid, files = patient_files("mri", index, config.image_format)
    clinical = sample_clinical(label, rng)
    phenotype = sample_tumour_phenotype(label, clinical["isup"], rng)
    images = synthesize_mri_patient(centre, phenotype, rng, config)
    paths = {key: out / files[key] for key in ("t2", "dwi", "adc", "mask")}
    for key, path in paths.items():
        write_image(images[key], path)
    prostate_path = write_image(images["prostate"], out / files["prostate"])
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


#: What ``run mri`` needs of each class among the internal (C1) patients: 2 to train on (its cross-fitted
#: training predictions need two folds), 1 in validation (early stopping on an AUC) and 1 in test.
SPLIT_MINIMUM = {"train": 2, "val": 1, "test": 1}
#: The fewest internal patients whose default split ``run mri`` can use (both classes at the minimum).
MIN_INTERNAL = 2 * sum(SPLIT_MINIMUM.values())


def centre_counts(n: int, external_fraction: float) -> tuple[int, int]:
    """Patients of the internal centre C1 and of the external C2 (none rather than one: one patient has no AUC)."""
    n_c2 = int(round(n * external_fraction)) if n >= 4 else 0
    n_c2 = 0 if n_c2 == 1 else n_c2
    return n - n_c2, n_c2


def check_run_mri_size(n: int, external_fraction: float) -> None:
    """Refuse a cohort too small for ``run mri`` to use its default split (:data:`MIN_INTERNAL` internal patients)."""
    n_c1, n_c2 = centre_counts(n, external_fraction)
    if n_c1 < MIN_INTERNAL:
        needed = next(m for m in range(n, 10 * MIN_INTERNAL + 100) if centre_counts(m, external_fraction)[0] >= MIN_INTERNAL)
        raise InputError(
            f"--n {n} gives {n_c1} internal patient(s) ({n_c2} external), too few for `osteomet run mri`: it needs "
            f"{MIN_INTERNAL} internal patients, {', '.join(f'{v} {k}' for k, v in SPLIT_MINIMUM.items())} of each class; "
            f"give --n {needed} or more" + (" or a lower --external-fraction" if n_c2 else ""))


def plan_centres(n: int, external_fraction: float, rng: np.random.Generator) -> list[tuple[str, int]]:
    """Centre and BM label per patient: C1 first, then the external centre C2.

    A one-patient external cohort (one class: no AUC) is folded into C1. Where C1 has room,
    each class gets at least :data:`SPLIT_MINIMUM`'s total, so its split can serve ``run mri``.
    """
    n_c1, n_c2 = centre_counts(n, external_fraction)
    per_class = sum(SPLIT_MINIMUM.values())
    plan = [("C1", int(lab)) for lab in draw_labels(n_c1, CENTRE_PREVALENCE["C1"], rng, min_per_class=per_class)]
    plan += [("C2", int(lab)) for lab in draw_labels(n_c2, CENTRE_PREVALENCE["C2"], rng)]
    return plan


def scorable_splits(manifest: pd.DataFrame, split: pd.Series) -> pd.Series:
    """``split`` with each class of the internal patients topped up to :data:`SPLIT_MINIMUM` where possible.

    Largest-remainder rounding can leave a small cohort's validation (or test) split without
    one class, which ``run mri`` refuses. A split short of a class takes that class's last
    patient of the split with the most of it to spare; a split that already meets the minimum
    is never changed, so larger cohorts keep exactly the split :func:`assign_splits` drew.
    """
    split = split.copy()
    internal = split != "external"
    for label in (0, 1):
        members = manifest.index[internal & (manifest["label"] == label)]
        for name, need in SPLIT_MINIMUM.items():
            while (split[members] == name).sum() < need:
                spare = {donor: int((split[members] == donor).sum()) - SPLIT_MINIMUM[donor]
                         for donor in SPLIT_MINIMUM if donor != name}
                donor = max(spare, key=lambda d: (spare[d], d == "train"))
                if spare[donor] <= 0:
                    break
                split[members[(split[members] == donor).to_numpy()][-1]] = name
    return split


def generate_mri_cohort(out: str | Path, n: int, *, seed: int = 0, config: MRISynthConfig | None = None,
                        progress: Callable[[], None] | None = None, overwrite: bool = False, jobs: int = 1) -> Path:
    """Write ``n`` synthetic bpMRI patients and their manifest into ``out``; return the manifest path.

    Each patient draws from its own child of ``SeedSequence(seed)``, so the cohort is the
    same whatever ``jobs`` is. Centre C2 patients are the external test set; C1 is split
    6:1:3 into train/val/test by patient, stratified by label, each class with at least
    :data:`SPLIT_MINIMUM` patients per split where the cohort is large enough
    (:data:`MIN_INTERNAL` internal patients), so ``run mri`` can use the split as it is.
    ``out`` must be missing, empty or an earlier cohort's folder (``overwrite`` to replace it).
    """
    config = config or MRISynthConfig()
    out, manifest_path = start_cohort(out, n, "mri", seed=seed, config=config, overwrite=overwrite)
    start = time.perf_counter()
    root = np.random.SeedSequence(seed)
    plan_rng = np.random.default_rng(root.spawn(1)[0])
    plan = plan_centres(n, config.external_fraction, plan_rng)
    children = np.random.SeedSequence(seed, spawn_key=(1,)).spawn(n)
    tasks = [(i, centre, label, children[i], config, out) for i, (centre, label) in enumerate(plan)]
    results = map_tasks(_patient_task, tasks, jobs=jobs, progress=progress)

    manifest = pd.DataFrame([r["manifest"] for r in results])
    manifest["split"] = scorable_splits(manifest, assign_splits(manifest, ratios=config.split_ratios, seed=seed,
                                                                external_centres=("C2",)))
    truth = pd.DataFrame([r["truth"] for r in results])
    write_text_atomic(out / MRI_TRUTH, truth.to_csv(index=False))
    write_synth_record(out, "mri", n=n, seed=seed, config=config, started=start)
    write_manifest(manifest, manifest_path, kind="mri")  # last: its presence means complete
    return manifest_path
