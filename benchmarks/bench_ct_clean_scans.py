"""Do clean scans come back clean? `osteomet run ct` on several synthetic cohorts, patient-level numbers pooled.

For each ``--seeds`` value: a synthetic CT cohort of ``--n`` patients (``osteomet synth ct``'s
defaults: 40% lesion-free, bone islands and osteophytes in everyone) and a whole `run ct` with the
``--config`` study (default ``tiny``: ResNet34 and UNet) into ``OUT/seed_<S>``; its patient-rules
stage chooses each model's patient rule on that cohort's validation patients. The test patients'
calls (``ct/rules/patient_calls.csv``) of every cohort are then pooled per model:

* patient sensitivity and specificity (Wilson 95% CIs) under the chosen rule and under the old
  one (any slice above the slice threshold / any predicted lesion), pooled by summing each
  cohort's numerators and denominators;
* false-positive lesions per lesion-free patient (percentile bootstrap over the pooled patients)
  and lesion sensitivity, for segmenters;
* how many cohorts meet the issue's goals: patient specificity >= 0.8 at sensitivity >= 0.9
  (detectors and segmenters), <= 0.3 false lesions per lesion-free patient at lesion
  sensitivity >= 0.8 (segmenters).

Finished seeds are reused (`run ct` skips every stage), so the script can be stopped and rerun.

Usage: .venv/bin/python benchmarks/bench_ct_clean_scans.py --out DIR [--seeds 0-9] [--n 20] [--size 128]
       [--region whole_body] [--config tiny] [--detection-epochs N] [--segmentation-epochs N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd


def seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = (int(v) for v in text.split("-"))
        return list(range(lo, hi + 1))
    return [int(v) for v in text.split(",")]


def one_cohort(out: Path, seed: int, n: int, size: int, region: str, config: str,
               epochs: tuple[int | None, int | None] = (None, None)) -> Path:
    from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort
    from osteomet.pipeline.ct_study import load_ct_study_config
    from osteomet.pipeline.run_ct import run_ct

    folder = out / f"seed_{seed}"
    manifest = folder / "cohort" / "manifest.csv"
    if not manifest.is_file():
        generate_ct_cohort(folder / "cohort", n, seed=seed, config=CTSynthConfig(region=region, inplane_size=size))
    study = load_ct_study_config(config)
    update: dict = {"seed": seed}
    for task, max_epochs in zip(("detection", "segmentation"), epochs):
        if max_epochs:  # shorter schedules than the preset's, said in the command line
            update[task] = getattr(study, task).model_copy(update={"max_epochs": max_epochs})
    study = study.model_copy(update=update)
    start = time.perf_counter()
    run_ct(manifest, folder / "run", study, log=lambda line: print(f"  seed {seed}: {line}", flush=True))
    print(f"seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return folder / "run"


def pooled(runs: list[Path]) -> pd.DataFrame:
    """Pooled test-split metrics per task, model and rule, with the per-cohort goal counts."""
    from osteomet.ct.patient_rules import PatientRuleSettings, patient_metrics
    from osteomet.evaluation.proportions import wilson_interval
    from osteomet.layout import RunLayout
    from osteomet.pipeline.ct_rules import PATIENT_CALLS, PATIENT_METRICS, rules_folder

    calls, metrics = [], []
    for run in runs:
        folder = rules_folder(RunLayout(run))
        table = pd.read_csv(folder / PATIENT_CALLS, dtype={"patient_id": str})
        calls.append(table.assign(cohort=run.parent.name, patient_id=run.parent.name + "/" + table["patient_id"]))
        metrics.append(pd.read_csv(folder / PATIENT_METRICS).assign(cohort=run.parent.name))
    calls_all, metrics_all = pd.concat(calls, ignore_index=True), pd.concat(metrics, ignore_index=True)
    test = metrics_all[metrics_all["split"] == "test"]
    rows = []
    for (task, model), part in calls_all[calls_all["split"] == "test"].groupby(["task", "model"]):
        chosen = patient_metrics(part.drop(columns=["task", "model", "cohort"]), PatientRuleSettings())
        for _, row in chosen.iterrows():
            rows.append({"task": task, "model": model, "rule": "chosen", "metric": row["metric"],
                         "estimate": row["estimate"], "ci_low": row["ci_low"], "ci_high": row["ci_high"],
                         "numerator": row["numerator"], "denominator": row["denominator"]})
        mine = test[(test["task"] == task) & (test["model"] == model)]
        # a cohort whose chosen rule is the old one has no "old" rows (ct_rules writes them only when they differ)
        old = pd.concat([part[part["rule"] == "old"] if (part["rule"] == "old").any() else part[part["rule"] == "chosen"]
                         for _, part in mine.groupby("cohort")], ignore_index=True)
        for metric in ("patient_sensitivity", "patient_specificity", "lesion_sensitivity"):
            got = old[old["metric"] == metric]
            if len(got):
                k, n = int(got["numerator"].sum()), int(got["denominator"].sum())
                estimate, low, high = wilson_interval(k, n, 0.95)
                rows.append({"task": task, "model": model, "rule": "old", "metric": metric, "estimate": estimate,
                             "ci_low": low, "ci_high": high, "numerator": k, "denominator": n})
        got = old[old["metric"] == "fp_lesions_per_lesion_free_patient"]
        if len(got):
            k, n = float(got["numerator"].sum()), int(got["denominator"].sum())
            rows.append({"task": task, "model": model, "rule": "old", "metric": "fp_lesions_per_lesion_free_patient",
                         "estimate": k / n if n else np.nan, "ci_low": np.nan, "ci_high": np.nan, "numerator": k,
                         "denominator": n})
        chosen_rows = mine[mine["rule"] == "chosen"]
        wide = chosen_rows.pivot_table(index="cohort", columns="metric", values="estimate")
        goal = (wide.get("patient_specificity", np.nan) >= 0.8) & (wide.get("patient_sensitivity", np.nan) >= 0.9)
        if task == "segmenter":
            goal_fp = (wide.get("fp_lesions_per_lesion_free_patient", np.nan) <= 0.3) & \
                      (wide.get("lesion_sensitivity", np.nan) >= 0.8)
            rows.append({"task": task, "model": model, "rule": "chosen", "metric": "cohorts_meeting_fp_goal",
                         "estimate": int(goal_fp.sum()), "denominator": len(wide)})
        rows.append({"task": task, "model": model, "rule": "chosen", "metric": "cohorts_meeting_patient_goal",
                     "estimate": int(goal.sum()), "denominator": len(wide)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", default="0-9")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--region", default="whole_body")
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--detection-epochs", type=int, default=None, help="cap on the detectors' epochs")
    parser.add_argument("--segmentation-epochs", type=int, default=None, help="cap on the segmenters' epochs")
    args = parser.parse_args()
    runs = [one_cohort(args.out, s, args.n, args.size, args.region, args.config,
                       (args.detection_epochs, args.segmentation_epochs)) for s in seeds(args.seeds)]
    table = pooled(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "clean_scans.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
