"""One table over several runs of ``bench_ct_training.py``: each model's test metric per cohort seed and the mean.

Why: with 20 patients a test set holds 4-5, and one cohort draw moves a model's Dice or AUC by
0.3 (seed 0 vs 1 of the same generator); the spread over seeds is the honest error bar.

Each DIR is an ``--out`` folder of ``bench_ct_training.py`` (its cohort's seed is read from
``DIR/cohort/synth.json``); a DIR may hold one task or both, and several DIRs may share a seed
when they ran different models. A model measured twice on one seed is refused.

Usage: .venv/bin/python benchmarks/summarise_ct_training.py DIR [DIR ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def read_runs(dirs: list[Path]) -> pd.DataFrame:
    """All rows of the runs' ``bench_ct_training_*.csv`` with a ``seed`` column."""
    frames = []
    for folder in dirs:
        seed = json.loads((folder / "cohort" / "synth.json").read_text())["seed"]
        for path in sorted(folder.glob("bench_ct_training_*.csv")):
            frames.append(pd.read_csv(path).assign(seed=seed, run=str(folder)))
    if not frames:
        raise SystemExit("no bench_ct_training_*.csv in " + ", ".join(map(str, dirs)))
    rows = pd.concat(frames, ignore_index=True)
    twice = rows[rows.duplicated(["task", "model", "seed"], keep=False)]
    if len(twice):
        raise SystemExit("measured twice on one seed:\n" + twice[["task", "model", "seed", "run"]].to_string(index=False))
    return rows


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per task and model: seeds, CPU range, the test metric per seed and its mean, and the secondary results."""
    out = []
    for (task, model), part in rows.sort_values("seed").groupby(["task", "model"], sort=False):
        metric = "dice" if task == "segmentation" else "auc"
        row = {"task": task, "model": model, "seeds": "/".join(str(s) for s in part["seed"]),
               "train CPU s": f"{part['train_cpu_s'].min():.0f}-{part['train_cpu_s'].max():.0f}",
               "test metric": "Dice" if metric == "dice" else "slice AUC",
               "per seed": " / ".join(f"{v:.3f}" for v in part[metric]),
               "mean": round(float(part[metric].mean()), 3)}
        if task == "segmentation":
            row["lesion patients (mean Dice)"] = round(float(part["dice_lesion_patients"].mean()), 3)
            row["lesion-free left empty"] = f"{int(part['lesion_free_left_empty'].sum())} of {len(part)}"
        else:
            found = (part["patient_sensitivity"] * part["patient_n_positive"]).round().astype(int)
            row["patients found"] = f"{int(found.sum())} of {int(part['patient_n_positive'].sum())}"
            hits = (part["gradcam_within_10mm"] * part["gradcam_tp"]).round().astype(int)
            row["Grad-CAM within 10 mm"] = f"{int(hits.sum())} of {int(part['gradcam_tp'].sum())}"
        out.append(row)
    return pd.DataFrame(out)


def markdown(table: pd.DataFrame) -> str:
    """A Markdown table (no tabulate dependency)."""
    cells = [list(map(str, table.columns))] + [[str(v) for v in row] for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join([lines[0], "|" + "---|" * len(table.columns), *lines[1:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", type=Path)
    args = parser.parse_args()
    table = summary(read_runs(args.dirs))
    for task, part in table.groupby("task", sort=False):
        print(markdown(part.dropna(axis=1, how="all")))
        print()


if __name__ == "__main__":
    main()
