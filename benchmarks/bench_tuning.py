"""Nested tuning and SHAP: what they cost and what they change, at the study's size (414 patients, one run).

Prints, for the clinical model (the synthetic study's clinical variables, 10% missing) and a
radiomics model (the synthetic tumour phenotype as imaging features plus ``--noise`` pure-noise
features, the same LASSO selection as the study):

1. seconds of the final tuning (training cohort), of the out-of-fold refits (nested: tuning again
   in every outer fold; and not nested) and of the preset model's out-of-fold refits;
2. the chosen values and their CV AUC;
3. internal-test and external AUC (DeLong 95% CI) of the preset and the tuned model;
4. seconds of the SHAP values (TreeExplainer) of every patient.

Usage: .venv/bin/python benchmarks/bench_tuning.py [--n 414] [--seed 0] [--folds 5] [--noise 200] [--grid default|tiny]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from osteomet.data.splits import assign_splits
from osteomet.data.synth.clinical import EXTERNAL_FRACTION, sample_patients
from osteomet.evaluation import delong_ci
from osteomet.models.clinical import ClinicalModel, train_clinical
from osteomet.models.explain import explain
from osteomet.models.radiomics import RadiomicsModel, train_radiomics
from osteomet.models.selection import SelectionConfig
from osteomet.models.tuning import DEFAULT_GRID, TuningConfig
from osteomet.models.xgb import XGBConfig

TINY = {"max_depth": [2, 3], "learning_rate": [0.05, 0.1], "n_estimators": [100, 300]}
PHENOTYPE = ("tumour_volume_ml", "tumour_adc", "tumour_t2", "tumour_s0", "heterogeneity", "epe")


def cohort(n: int, seed: int) -> pd.DataFrame:
    n_external = round(n * EXTERNAL_FRACTION)
    internal = sample_patients(n - n_external, seed=seed, centre="C1", missing_rate=0.1)
    external = sample_patients(n_external, seed=seed + 1, centre="C2", missing_rate=0.1)
    internal["patient_id"] = [f"C1-{i:04d}" for i in range(len(internal))]
    external["patient_id"] = [f"C2-{i:04d}" for i in range(len(external))]
    internal["split"] = assign_splits(internal, ratios=(6, 1, 3), seed=seed)
    external["split"] = "external"
    return pd.concat([internal, external], ignore_index=True)


def features(frame: pd.DataFrame, noise: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    table = frame[["patient_id", *PHENOTYPE]].copy()
    table = table.rename(columns={c: f"adc_original_firstorder_{c}" for c in PHENOTYPE})
    noise_columns = pd.DataFrame(rng.normal(size=(len(table), noise)), index=table.index,
                                 columns=[f"t2_original_glcm_Noise{i}" for i in range(noise)])
    return pd.concat([table, noise_columns], axis=1)


class _Manifest:
    def __init__(self, frame: pd.DataFrame):
        self.frame = frame

    def to_frame(self) -> pd.DataFrame:
        return self.frame.copy()


def aucs(predictions: pd.DataFrame) -> str:
    parts = []
    for split in ("test", "external"):
        rows = predictions[(predictions["split"] == split) & predictions["prob"].notna()]
        ci = delong_ci(rows["label"].astype(int), rows["prob"])
        parts.append(f"{split} {ci.auc:.3f} ({ci.low:.3f}-{ci.high:.3f})")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=414)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--noise", type=int, default=200)
    parser.add_argument("--grid", choices=("default", "tiny"), default="default")
    args = parser.parse_args()
    grid = DEFAULT_GRID if args.grid == "default" else TINY
    frame = cohort(args.n, args.seed)
    table = features(frame, args.noise, args.seed)
    counts = frame.groupby("split")["label"].agg(["size", "sum"])
    print(f"cohort: {args.n} patients; " + ", ".join(f"{s} {int(r['size'])} ({int(r['sum'])} BM)"
                                                     for s, r in counts.iterrows()))
    print(f"grid ({args.grid}): {grid}, {args.folds}-fold CV")
    selection = SelectionConfig(max_features=20, seed=args.seed)
    makers = {
        "clinical": lambda tuning: (lambda out: train_clinical(
            frame, out, model=ClinicalModel(XGBConfig(n_estimators=200, max_depth=2, seed=args.seed), tuning=tuning),
            folds=5)),
        "radiomics": lambda tuning: (lambda out: train_radiomics(
            table, _Manifest(frame), out, model=RadiomicsModel(selection, XGBConfig(seed=args.seed), tuning=tuning),
            folds=5)),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in makers.items():
            results = {}
            for label, tuning in (("preset", None),
                                  ("tuned, nested out-of-fold", TuningConfig(folds=args.folds, grid=grid,
                                                                             seed=args.seed)),
                                  ("tuned, not nested", TuningConfig(folds=args.folds, grid=grid, seed=args.seed,
                                                                     nested_out_of_fold=False))):
                start = time.perf_counter()
                model, predictions = make(tuning)(Path(tmp) / f"{name}-{label[:5]}")
                seconds = time.perf_counter() - start
                train = predictions[predictions["split"] == "train"].dropna(subset=["prob"])
                oof = delong_ci(train["label"].astype(int), train["prob"]).auc
                chosen = f"; chosen {model.tuned.chosen} (CV AUC {model.tuned.cv_auc:.3f})" if model.tuned else ""
                print(f"{name}, {label}: {seconds:.1f} s (fit + out-of-fold refits); out-of-fold train AUC {oof:.3f}; "
                      f"{aucs(predictions)}{chosen}")
                results[label] = model
            model = results["tuned, nested out-of-fold"]
            X = frame if name == "clinical" else table
            start = time.perf_counter()
            explanation = explain(model, X)
            seconds = time.perf_counter() - start
            top = explanation.importance().head(3)
            print(f"{name}: SHAP of {len(X)} patients x {explanation.values.shape[1]} features in {seconds:.2f} s; "
                  f"top mean |SHAP|: " + ", ".join(f"{f} {v:.3f}" for f, v in zip(top["feature"], top["mean_abs_shap"])))


if __name__ == "__main__":
    main()
