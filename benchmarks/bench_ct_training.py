"""CT lesion models on a synthetic cohort: training time and test metrics per model, as a new user would run them.

Measured in one run and printed (plus a Markdown table for the README):

1. the cohort: ``--n`` synthetic whole-body CTs at the demo's size (``osteomet synth ct
   --region whole_body --size 128``), generated once into ``OUT/cohort`` (reused when there);
2. segmentation (UNet, residual UNet, AttentionUnet, the ``--preset``): training wall time and
   CPU time per network, then prediction on every patient with masks on each CT's grid and the
   test patients' mean per-patient Dice with its 95% bootstrap CI, precision and recall, and
   the comparison (summary, Holm-adjusted paired tests, box plots) in ``OUT/seg_pred/comparison``;
   also the mean Dice of the test patients with lesions alone and how many lesion-free test
   patients were left empty (a lesion-free patient scores Dice 1 when left empty, 0 otherwise);
3. detection (EfficientNet-B0, ResNet34, DenseNet121): training wall and CPU time, slice-level
   test AUC, F1, precision and recall at the validation threshold (cluster-bootstrap CIs over
   patients), patient-level sensitivity and specificity, and the share of true-positive test slices whose
   Grad-CAM maximum lies within 10 mm of a lesion; the comparison table in ``OUT/det_pred``.

Both tasks cache their slices in ``OUT/slices``, each in the folder of its own window
(:func:`osteomet.ct.slices.cache.settings_root`), so they can run at once.

The patient split is the slice dataset's (80:20 train/test, val from train, stratified by
lesion status). ``--threads`` sets torch's CPU threads (1 by default: on a shared 2-core
machine two OpenMP threads competing with other jobs run many times slower than one).

Usage: .venv/bin/python benchmarks/bench_ct_training.py --out DIR [--n 20] [--preset tiny] [--threads 1]
       [--only segmentation|detection] [--models unet,resunet] [--max-epochs N] [--seed 0]

One cohort of 20 is a weak measure (4-5 test patients): run several ``--seed`` values into their
own ``--out`` folders and summarise them with ``benchmarks/summarise_ct_training.py DIR...``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch


def timed(fn):
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def cohort(out: Path, n: int, seed: int, size: int) -> Path:
    from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort

    manifest = out / "cohort" / "manifest.csv"
    if manifest.is_file():
        return manifest
    return generate_ct_cohort(out / "cohort", n, seed=seed, config=CTSynthConfig(region="whole_body", inplane_size=size))


def capped(config, max_epochs: int | None):
    """The preset with fewer epochs (a GPU lease too short for the default's schedule); said in the output."""
    if max_epochs is None or max_epochs >= config.max_epochs:
        return config
    print(f"max_epochs capped at {max_epochs} (preset: {config.max_epochs})")
    return config.model_copy(update={"max_epochs": max_epochs, "patience": min(config.patience, max_epochs)})


def segmentation(manifest_path: Path, out: Path, preset: str, models: list[str] | None,
                 max_epochs: int | None = None) -> list[dict]:
    from osteomet.ct.segmentation.compare import compare_segmentations
    from osteomet.ct.segmentation.config import load_segmentation_config
    from osteomet.ct.segmentation.infer import predict_segmentation
    from osteomet.ct.segmentation.train import train_segmenter
    from osteomet.ct.slices.dataset import read_index
    from osteomet.ct.slices.run import prepare_slice_run
    from osteomet.data.manifest import read_manifest
    from osteomet.evaluation.bootstrap import bootstrap_mean

    manifest = read_manifest(manifest_path, kind="ct")
    config = capped(load_segmentation_config(preset), max_epochs)
    run = out / "seg_run"
    (root, config), cache_s, _ = timed(lambda: prepare_slice_run(manifest, run, config, architectures=models,
                                                                 cache=out / "slices"))
    print(f"slice cache: {cache_s:.1f} s")
    rows = []
    for architecture in config.architectures:
        result, wall, cpu = timed(lambda: train_segmenter(root, run, config, architecture))
        print(f"train {architecture}: {wall:.1f} s wall, {cpu:.1f} s CPU, {result.epochs_run} epochs, "
              f"best val Dice {result.best_score:.3f} (epoch {result.best_epoch})", flush=True)
        rows.append({"task": "segmentation", "model": architecture, "train_s": wall, "train_cpu_s": cpu,
                     "epochs": result.epochs_run, "val": result.best_score})
    table, wall, _ = timed(lambda: predict_segmentation(manifest, run, out / "seg_pred", cache=out / "slices"))
    print(f"predict (all patients, all models): {wall:.1f} s")
    test = table[table["split"] == "test"]
    index = read_index(root)
    with_lesion = set(index.loc[index["label"] == 1, "patient_id"])
    for row in rows:
        part = test[test["model"] == row["model"]]
        ci = bootstrap_mean(part["dice"], 2000, 0)
        lesion = part["patient_id"].isin(with_lesion)  # not recall: a lesion-free patient left empty scores 1/1/1
        row.update({"n_test": len(part), "dice": ci.estimate, "dice_low": ci.low, "dice_high": ci.high,
                    "precision": part["precision"].mean(), "recall": part["recall"].mean(),
                    "n_lesion": int(lesion.sum()), "dice_lesion_patients": part.loc[lesion, "dice"].mean(),
                    "lesion_free_left_empty": int((part.loc[~lesion, "predicted_voxels"] == 0).sum())})
    compare_segmentations(table.dropna(subset=["dice"]), out / "seg_pred" / "comparison", split="test")
    return rows


def detection(manifest_path: Path, out: Path, preset: str, models: list[str] | None,
              max_epochs: int | None = None) -> list[dict]:
    from osteomet.ct.detection.config import load_detection_config
    from osteomet.ct.detection.infer import predict_detection
    from osteomet.ct.detection.train import train_detector
    from osteomet.ct.slices.run import prepare_slice_run
    from osteomet.data.manifest import read_manifest

    manifest = read_manifest(manifest_path, kind="ct")
    config = capped(load_detection_config(preset), max_epochs)
    run = out / "det_run"
    root, config = prepare_slice_run(manifest, run, config, architectures=models, cache=out / "slices")
    rows = []
    for architecture in config.architectures:
        result, wall, cpu = timed(lambda: train_detector(root, run, config, architecture))
        print(f"train {architecture}: {wall:.1f} s wall, {cpu:.1f} s CPU, {result.epochs_run} epochs, "
              f"best val AUC {result.best_score:.3f} (epoch {result.best_epoch})", flush=True)
        rows.append({"task": "detection", "model": architecture, "train_s": wall, "train_cpu_s": cpu,
                     "epochs": result.epochs_run, "val": result.best_score})
    _, wall, _ = timed(lambda: predict_detection(manifest, run, out / "det_pred", cache=out / "slices",
                                                    n_resamples=1000))
    print(f"predict (all patients, all models, Grad-CAM): {wall:.1f} s")
    comparison = pd.read_csv(out / "det_pred" / "comparison.csv")
    for row in rows:
        part = comparison[(comparison["architecture"] == row["model"]) & (comparison["split"] == "test")]
        s = part[part["level"] == "slice"].iloc[0]
        p = part[part["level"] == "patient"]
        local = json.loads((out / "det_pred" / row["model"] / "gradcam" / "localisation.json").read_text())
        row.update({"auc": s["auc"], "auc_low": s["auc_low"], "auc_high": s["auc_high"], "f1": s["f1"],
                    "precision": s["precision"], "recall": s["recall"],
                    "patient_sensitivity": p["recall"].iloc[0] if len(p) else float("nan"),
                    "patient_specificity": p["specificity"].iloc[0] if len(p) else float("nan"),
                    "patient_n": int(p["n"].iloc[0]) if len(p) else 0,
                    "patient_n_positive": int(p["n_positive"].iloc[0]) if len(p) else 0,
                    "gradcam_within_10mm": local["fraction"], "gradcam_tp": local["true_positives"]})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| task | model | train (wall / CPU s) | epochs | test metric (95% CI) | precision | recall | other |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["task"] == "segmentation":
            metric = f"Dice {r['dice']:.3f} ({r['dice_low']:.3f}-{r['dice_high']:.3f}), n={r['n_test']}"
            other = (f"Dice {r['dice_lesion_patients']:.3f} on the {r['n_lesion']} patients with lesions; "
                     f"{r['lesion_free_left_empty']} of {r['n_test'] - r['n_lesion']} lesion-free left empty")
        else:
            metric = f"slice AUC {r['auc']:.3f} ({r['auc_low']:.3f}-{r['auc_high']:.3f})"
            other = (f"F1 {r['f1']:.3f}; patients ({r['patient_n_positive']} of {r['patient_n']} with lesions) "
                     f"sensitivity {r['patient_sensitivity']:.2f}, specificity {r['patient_specificity']:.2f}; "
                     f"Grad-CAM within 10 mm "
                     f"{r['gradcam_within_10mm']:.2f} of {r['gradcam_tp']} TP slices")
        lines.append(f"| {r['task']} | {r['model']} | {r['train_s']:.0f} / {r['train_cpu_s']:.0f} | {r['epochs']} | "
                     f"{metric} | {r['precision']:.3f} | {r['recall']:.3f} | {other} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=128, help="in-plane matrix of the cohort over 500 mm")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=("segmentation", "detection"))
    parser.add_argument("--models", help="comma-separated architectures (default: the preset's)")
    parser.add_argument("--max-epochs", type=int, help="cap the preset's epochs (e.g. to fit a GPU lease); printed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    print(f"{device}; torch {torch.__version__}, {args.threads} CPU thread(s), preset {args.preset}, {args.n} patients, {args.size} x {args.size} matrix")
    manifest, wall, _ = timed(lambda: cohort(args.out, args.n, args.seed, args.size))
    print(f"cohort: {manifest} ({wall:.1f} s)")
    models = args.models.split(",") if args.models else None
    rows = []
    if args.only in (None, "segmentation"):
        rows += segmentation(manifest, args.out, args.preset, models if args.only else None, args.max_epochs)
    if args.only in (None, "detection"):
        rows += detection(manifest, args.out, args.preset, models if args.only else None, args.max_epochs)
    print(markdown(rows))
    pd.DataFrame(rows).to_csv(args.out / f"bench_ct_training_{args.only or 'all'}.csv", index=False)


if __name__ == "__main__":
    main()
