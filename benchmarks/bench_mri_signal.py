"""Does the synthetic bpMRI cohort reproduce the study's learning pattern? (issues 15 and 16)

Generates a cohort of the study's size (414 patients: centre C1 318 with 95 BM, split 6:1:3
into train/val/test, the test part 95 patients; centre C2 96 with 41 BM, the external test),
then trains on split=train only and prints, measured in this one run, the AUC with its
DeLong 95% CI on the internal test and the external test of:

- clinical: XGBoost on the clinical variables (published 0.713 / 0.757);
- radiomics: the ``tiny`` pyradiomics parameters on the tumour mask, selection + XGBoost
  (published 0.899 / 0.852);
- deep: the ``tiny`` 3D-ResNet grid (depth x learning rate x optimiser on train, the winner
  chosen on val only) on the tumour ROI crops (published 0.907 / 0.862);
- fusion: clinical variables + selected radiomics features + the winner's deep features
  (PCA fitted on train), XGBoost (published 0.934 / 0.903);

and the paired DeLong p-values of fusion vs deep and radiomics vs clinical. The pattern the
issues ask for: fusion >= deep and radiomics > clinical on both test sets, deep clearly above
0.5.

Usage: .venv/bin/python benchmarks/bench_mri_signal.py [--n 414] [--seed 0] [--epochs 24]
       [--depths 10,18] [--jobs 1] [--work DIR]
--work keeps every output and lets an interrupted run continue (cohort reused, stages cached,
the grid resumed). At n=414 on one CPU thread: ~3 min cohort, ~6 min radiomics, 3-8 min per
depth-10 grid configuration.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from osteomet.data.manifest import read_manifest
from osteomet.data.synth.mri import MRISynthConfig, generate_mri_cohort
from osteomet.layout import SETTINGS
from osteomet.models.fusion import fusion_inputs, train_fusion
from osteomet.mri.classifier.config import load_classifier_config
from osteomet.mri.classifier.data import roi_patients
from osteomet.mri.classifier.features import deep_features
from osteomet.mri.classifier.grid import run_grid
from osteomet.mri.classifier.labels import LabelGuard
from osteomet.mri.classifier.predict import predict_patients, write_prediction_table
from osteomet.pipeline.clinical import train_clinical_model
from osteomet.pipeline.evaluate import evaluate_prediction_files
from osteomet.pipeline.preprocess import preprocess_mri
from osteomet.pipeline.radiomics import extract_features, train_radiomics_model
from osteomet.radiomics.features import read_feature_table

PUBLISHED = {"clinical": (0.713, 0.757), "radiomics": (0.899, 0.852), "deep": (0.907, 0.862),
             "fusion": (0.934, 0.903)}


def _step(name: str, start: float) -> None:
    print(f"  {name}: {time.perf_counter() - start:.0f} s", flush=True)


def run(work: Path, args: argparse.Namespace) -> None:
    start = time.perf_counter()
    manifest_path = work / "cohort" / "manifest.csv"
    if manifest_path.exists():  # --work of an interrupted run: every later stage is cached or resumed too
        print(f"  reusing the cohort in {manifest_path.parent} (made by an earlier run with --work)")
    else:
        generate_mri_cohort(work / "cohort", args.n, seed=args.seed, config=MRISynthConfig(), jobs=args.jobs)
    _step("cohort", start)
    cohort = read_manifest(manifest_path, kind="mri")
    frame = cohort.to_frame()
    counts = frame.groupby(["centre", "split"])["label"].agg(n="size", bm="sum")
    print(counts.to_string(), flush=True)

    start = time.perf_counter()
    train_clinical_model(manifest_path, work / "clinical")
    extract_features(manifest_path, work / "radiomics", params="tiny", jobs=args.jobs)
    train_radiomics_model(work / "radiomics" / "features.parquet", manifest_path, work / "radiomics_model")
    _step("clinical and radiomics", start)

    start = time.perf_counter()
    preprocess_mri(manifest_path, work / "pre", seg_config="tiny", jobs=args.jobs)
    patients = roi_patients(work / "pre", cohort)
    config = load_classifier_config("tiny").model_copy(
        update={"max_epochs": args.epochs, "depths": [int(d) for d in args.depths.split(",")]})
    grid = work / f"grid_depths{'-'.join(map(str, config.depths))}_epochs{args.epochs}"
    table, winner = run_grid(work / "pre", grid, config, LabelGuard.from_manifest(cohort), patients,
                             jobs=args.jobs, resume=(grid / SETTINGS).exists())
    print(table[["name", "val_auc", "val_auc_low", "val_auc_high", "best_epoch"]].round(3).to_string(index=False))
    print(f"  winner on val: {winner['name']}", flush=True)
    write_prediction_table(predict_patients(grid, work / "pre", patients, frame), work / "deep.csv")
    _step("deep grid", start)

    start = time.perf_counter()
    deep, _ = deep_features(grid, work / "pre", patients, pca_components=args.pca)
    inputs = fusion_inputs(frame, radiomics=read_feature_table(work / "radiomics" / "features.parquet"), deep=deep)
    train_fusion(inputs, frame, work / "fusion")
    _step("fusion", start)

    files = [work / "clinical" / "predictions.csv", work / "radiomics_model" / "predictions.csv",
             work / "deep.csv", work / "fusion" / "predictions.csv"]
    _, metrics = evaluate_prediction_files(files, work / "evaluation", manifest=manifest_path,
                                           names=["clinical", "radiomics", "deep", "fusion"])
    auc = metrics[(metrics["metric"] == "auc") & (metrics["ci_method"] == "delong")]
    print(f"\nAUC (DeLong 95% CI), n={args.n}, seed={args.seed}; published internal / external in brackets")
    for model, (internal, external) in PUBLISHED.items():
        cells = []
        for split in ("test", "external"):
            row = auc[(auc["model"] == model) & (auc["cohort"] == split)].iloc[0]
            cells.append(f"{split} {row.estimate:.3f} ({row.ci_low:.3f}-{row.ci_high:.3f}, n={row.n}, BM {row.n_pos})")
        print(f"{model:10s} " + "; ".join(cells) + f"  [{internal} / {external}]")
    delong = pd.read_csv(work / "evaluation" / "delong.csv")
    print("\npaired DeLong tests:")
    pairs = {frozenset(p) for p in (("deep", "fusion"), ("clinical", "radiomics"), ("clinical", "deep"))}
    wanted = [frozenset((a, b)) in pairs for a, b in zip(delong["model_a"], delong["model_b"])]
    chosen = delong[delong["split"].isin(["test", "external"]).to_numpy() & np.array(wanted)]
    print(chosen[["split", "model_a", "model_b", "n", "auc_a", "auc_b", "p", "p_holm"]].round(4).to_string(index=False))

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=414, help="patients (414 = the study)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=24, help="max epochs per grid configuration")
    parser.add_argument("--depths", default="10,18", help="ResNet depths of the tiny grid")
    parser.add_argument("--pca", type=int, default=8, help="deep features kept for fusion (PCA on train)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None, help="keep the cohort and every output here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.work is not None:
        run(args.work, args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), args)


if __name__ == "__main__":
    main()
