"""The bpMRI study at the published study's size, and `predict mri` for one new patient.

Prints, measured in one run:
1. ``--study``: `run mri` on a synthetic two-centre cohort (default 414 patients: the study's
   label and centre counts) with a study config (default ``tiny``): wall time per stage, then
   AUC with DeLong 95% CI of every model on internal and external test, and DeLong tests of
   fusion against each other model (Holm-adjusted), i.e. whether the published pattern
   (fusion >= deep and radiomics > clinical) appears;
2. ``--predict``: `predict mri` on a held-out patient, time per stage. With ``--full-size`` the
   run it reads is trained (one epoch: inference time does not depend on training) with the
   default, full-size models: the default UNETR (224x224x64), the published winner ResNet101
   (Adam, 1e-3) at full width, pyradiomics' `mri` parameters.

Usage: .venv/bin/python benchmarks/bench_mri_study.py --work DIR [--n 414] [--config tiny|FILE]
       [--masks unetr|manifest] [--predict] [--full-size]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
import yaml


def cohort(work: Path, n: int, seed: int) -> Path:
    from osteomet.data.synth.mri import MRISynthConfig, generate_mri_cohort

    folder = work / f"cohort_{n}_{seed}"
    if (folder / "manifest.csv").exists():
        return folder / "manifest.csv"
    start = time.perf_counter()
    path = generate_mri_cohort(folder, n, seed=seed, config=MRISynthConfig(), jobs=os.cpu_count() or 1)
    print(f"cohort: {n} patients in {time.perf_counter() - start:.0f} s", flush=True)
    return path


def full_size_study(work: Path) -> Path:
    """Default UNETR, ResNet101/Adam/1e-3 at full width, `mri` radiomics; one epoch each."""
    folder = work / "full_size_config"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "grid.yaml").write_text(yaml.safe_dump({"depths": [101], "learning_rates": [1.0e-3],
                                                      "optimizers": ["adam"], "max_epochs": 1}))
    (folder / "study.yaml").write_text(yaml.safe_dump({
        "segmentation": {"masks": "unetr", "config": "default", "max_epochs": 1},
        "radiomics": {"params": "mri"}, "deep": {"config": "grid.yaml", "oof_folds": 0, "gradcam_patients": 1},
        "evaluation": {"n_resamples": 200}}))
    return folder / "study.yaml"


def print_study(record: dict) -> None:
    from osteomet.pipeline.run_mri import summary_table

    print("\nstage wall times (s):")
    for name, stage in record["stages"].items():
        print(f"  {name:22s} {stage['seconds']:8.1f}{'  (up to date)' if stage['skipped'] else ''}")
    print(f"  {'total':22s} {record['seconds']:8.1f}")
    print("\nAUC (DeLong 95% CI):")
    print(summary_table(record["metrics"]).to_string())


def print_delong(run: Path) -> None:
    delong = pd.read_csv(run / "evaluation" / "delong.csv")
    fusion = delong[((delong["model_a"] == "fusion") | (delong["model_b"] == "fusion"))
                    & delong["split"].isin(["test", "external"])]
    print("\nDeLong tests involving fusion:")
    print(fusion.to_string(index=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--n", type=int, default=414)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--masks", choices=["unetr", "manifest"], default=None)
    parser.add_argument("--predict", action="store_true")
    parser.add_argument("--full-size", action="store_true")
    args = parser.parse_args()

    from osteomet.pipeline.predict_mri import CLINICAL, predict_mri
    from osteomet.pipeline.run_mri import run_mri
    from osteomet.pipeline.study import load_study_config

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    manifest = cohort(work, args.n, args.seed)
    config = load_study_config(full_size_study(work) if args.full_size else args.config)
    if args.masks:
        config = config.model_copy(update={"segmentation": config.segmentation.model_copy(
            update={"masks": args.masks})})
    run = work / ("run_full_size" if args.full_size else f"run_{Path(str(args.config)).stem}_{config.segmentation.masks}")
    print(f"run mri: {args.n} patients, config {args.config if not args.full_size else 'full-size'}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    record = run_mri(manifest, run, config, log=lambda line: print(f"  {line}", flush=True))
    print_study(record)
    print_delong(run)
    if args.predict:
        study = pd.read_csv(run / "split" / "manifest.csv", dtype={"patient_id": str})
        row = study[study["split"] == "external"].iloc[0]
        base = run / "split"
        clinical = {k: float(row[k]) for k in CLINICAL if pd.notna(row[k])}
        start = time.perf_counter()
        result = predict_mri(run, work / f"predict_{row['patient_id']}_{int(time.time())}", t2=base / row["t2"],
                             dwi=base / row["dwi"], adc=base / row["adc"], clinical=clinical,
                             patient_id=row["patient_id"], log=lambda line: print(f"  {line}", flush=True))
        print(f"\npredict mri, one patient: {time.perf_counter() - start:.1f} s end to end "
              f"(stages {result['seconds']}); fusion probability {result['probability']:.3f}")


if __name__ == "__main__":
    main()
