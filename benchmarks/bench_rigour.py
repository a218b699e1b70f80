"""Study rigour on and off: internal/external AUC of every model with feature stability, ComBat harmonization and
nested XGBoost tuning.

Runs `run mri` on a synthetic two-centre cohort (default 414 patients, the study's size; C2 is the
external centre) once with both rigour steps on, then with each switch off and both off, in the
same run directory, then with tuning off (the XGBoost models with the preset values): the stage
fingerprints rerun only the model-feature table, the models and the evaluation, so the expensive
stages (preprocessing, extraction, stability extraction, deep grid) run once. Prints, measured in this one run:

1. the centre effect on the radiomics features (median |standardized mean difference| of C2 from
   C1 and the SD ratio, before and after ComBat);
2. AUC with DeLong 95% CI of every model on the internal test and the external cohort, per variant;
3. paired DeLong tests of each model with a step on against the same model with it off.

Masks are the manifest's (``segmentation.masks: manifest``; UNETR masks are a separate question)
and the deep grid is one narrow ResNet10 trained for at most 6 epochs without cross-fitted training
predictions (``oof_folds: 0``), so the run fits a shared CPU: the deep model's own AUC is not the
study's, and it enters fusion through its features (unharmonized, the default).

``--c2-noise 2`` makes centre C2's images twice as noisy (half the SNR) on every sequence, a larger
scanner effect than the default cohort's (vendor intensity scale, resolution, obliquity), which
pyradiomics' per-image z-scoring does not remove.

Usage: .venv/bin/python benchmarks/bench_rigour.py --work DIR [--n 414] [--seed 0] [--jobs 2] [--c2-noise 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import yaml

VARIANTS = {"both on": (True, True, True), "stability off": (False, True, True),
            "harmonization off": (True, False, True), "both off": (False, False, True),
            "tuning off": (True, True, False)}
MODELS = ("clinical", "radiomics", "deep", "fusion")
#: One narrow ResNet10 for a few epochs: the deep model only feeds its features to fusion here (measured on a
#: loaded 2-core CPU, a full-width ResNet10 took 150-300 s per epoch at 414 patients).
GRID = {"depths": [10], "learning_rates": [1.0e-3], "optimizers": ["adam"], "max_epochs": 6, "patience": 3,
        "resnet": {"widen_factor": 0.25}}


def cohort(work: Path, n: int, seed: int, jobs: int, c2_noise: float) -> Path:
    from osteomet.data.synth.mri import MRISynthConfig, generate_mri_cohort

    folder = work / f"cohort_{n}_{seed}" if c2_noise == 1.0 else work / f"cohort_{n}_{seed}_c2noise{c2_noise:g}"
    if (folder / "manifest.csv").exists():
        return folder / "manifest.csv"
    start = time.perf_counter()
    path = generate_mri_cohort(folder, n, seed=seed, config=MRISynthConfig(c2_noise_factor=c2_noise), jobs=jobs)
    print(f"cohort: {n} patients in {time.perf_counter() - start:.0f} s", flush=True)
    return path


def study(work: Path, jobs: int):
    from osteomet.pipeline.study import load_study_config

    folder = work / "config"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "grid.yaml").write_text(yaml.safe_dump(GRID))
    (folder / "study.yaml").write_text(yaml.safe_dump({
        "jobs": jobs, "segmentation": {"masks": "manifest", "config": "tiny"}, "radiomics": {"params": "tiny"},
        "deep": {"config": "grid.yaml", "oof_folds": 0, "gradcam_patients": 0}, "evaluation": {"n_resamples": 200}}))
    return load_study_config(folder / "study.yaml")


def variant(config, stability: bool, harmonization: bool, tuning: bool = True):
    return config.model_copy(update={
        "stability": config.stability.model_copy(update={"enabled": stability}),
        "harmonization": config.harmonization.model_copy(update={"enabled": harmonization}),
        "tuning": config.tuning.model_copy(update={"enabled": tuning})})


def auc_cell(metrics: pd.DataFrame, model: str, cohort: str) -> str:
    row = metrics[(metrics["metric"] == "auc") & (metrics["ci_method"] == "delong") & (metrics["model"] == model)
                  & (metrics["cohort"] == cohort)]
    if row.empty:
        return "n/a"
    r = row.iloc[0]
    return f"{r['estimate']:.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--n", type=int, default=414)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--c2-noise", type=float, default=1.0, help="noise of centre C2 relative to C1 (synth)")
    args = parser.parse_args()

    import torch

    from osteomet.evaluation.delong import delong_test
    from osteomet.pipeline.run_mri import run_mri

    torch.set_num_threads(1)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    manifest = cohort(work, args.n, args.seed, args.jobs, args.c2_noise)
    config = study(work, args.jobs)
    run = work / ("run" if args.c2_noise == 1.0 else f"run_c2noise{args.c2_noise:g}")
    print(f"run mri: {args.n} patients, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    metrics, predictions = {}, {}
    for name, (stability, harmonization, tuning) in VARIANTS.items():
        start = time.perf_counter()
        record = run_mri(manifest, run, variant(config, stability, harmonization, tuning),
                         log=lambda line: print(f"  {line}", flush=True))
        print(f"variant '{name}': {time.perf_counter() - start:.0f} s", flush=True)
        metrics[name] = record["metrics"]
        saved = work / "variants" / name.replace(" ", "_")
        saved.mkdir(parents=True, exist_ok=True)
        for model in MODELS:
            shutil.copy(run / "models" / model / "predictions.csv", saved / f"{model}.csv")
            predictions[(name, model)] = pd.read_csv(saved / f"{model}.csv", dtype={"patient_id": str})
        if name == "both on":
            effect = pd.read_csv(run / "model_features" / "harmonization_summary.csv")
            icc = pd.read_csv(run / "stability" / "icc_by_class.csv")
            kept = pd.read_csv(run / "model_features" / "stability_filter.csv")["kept"]
            print("\ncentre effect on the stable radiomics features (C2 against C1):")
            print(effect.to_string(index=False))
            print(f"\nstability: {int(kept.sum())} of {len(kept)} features with ICC >= 0.75; ICC by class:")
            print(icc.to_string(index=False))

    print("\nAUC (DeLong 95% CI), internal test | external:")
    rows = [{"model": m, **{v: f"{auc_cell(metrics[v], m, 'test')} | {auc_cell(metrics[v], m, 'external')}"
                            for v in VARIANTS}} for m in MODELS]
    print(pd.DataFrame(rows).to_string(index=False))

    print("\npaired DeLong, step on vs off (p):")
    tests = []
    for step, off in (("stability", "stability off"), ("harmonization", "harmonization off"), ("both", "both off"),
                      ("tuning", "tuning off")):
        for model in ("clinical", "radiomics", "fusion") if step == "tuning" else ("radiomics", "fusion"):
            a, b = predictions[("both on", model)], predictions[(off, model)]
            both = a.merge(b[["patient_id", "prob"]], on="patient_id", suffixes=("_on", "_off")).dropna(
                subset=["prob_on", "prob_off", "label"])
            for cohort_name in ("test", "external"):
                part = both[both["split"] == cohort_name]
                result = delong_test(part["label"].astype(int), part["prob_on"], part["prob_off"])
                tests.append({"step": step, "model": model, "cohort": cohort_name, "n": len(part),
                              "auc_on": round(result.auc1, 3), "auc_off": round(result.auc2, 3),
                              "diff_ci": f"{result.diff_low:+.3f} to {result.diff_high:+.3f}",
                              "p": round(result.p, 4)})
    print(pd.DataFrame(tests).to_string(index=False))


if __name__ == "__main__":
    main()
