"""3D-ResNet classifier grid: parallel speed-up, CPU cost per depth, GPU throughput.

Prints, measured in one run:
1. a grid of 8 tiny configurations (tiny preset: 2 depths x 2 learning rates x 2 optimisers)
   trained one after another in this process, then with ``--jobs 2`` (a LocalCluster of two
   single-threaded workers); the speed-up (target >= 1.7x on a 2-core machine) and whether
   both grids reached the same validation AUCs;
2. CPU seconds per epoch per patient for each default depth (18, 34, 50, 101) at 64x64x32
   with the default network (training steps on the real data pipeline);
3. with CUDA: the same per depth under bf16 autocast, and the training throughput fed by the
   real data pipeline (RoiDataset + DataLoader) over the model alone fed synthetic tensors
   already on the GPU (target >= 0.9: the pipeline must not starve the GPU);
4. with ``--precision``: the tiny grid (``--jobs 2``) trained in float32 and under bfloat16
   autocast (:mod:`osteomet.utils.precision`), its time and every configuration's validation
   AUC side by side, and whether this CPU runs bfloat16 natively.

Usage: .venv/bin/python benchmarks/bench_deep_grid.py [--n 24] [--epochs 2] [--patients 4] [--skip-grid]
       [--skip-depths] [--precision]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from timing import samples_per_second

from osteomet.data.manifest import read_manifest
from osteomet.data.synth.mri import MRISynthConfig, generate_mri_cohort
from osteomet.mri.classifier.config import load_classifier_config
from osteomet.mri.classifier.data import RoiDataset, roi_patients, split_ids
from osteomet.mri.classifier.grid import run_grid, select_winner
from osteomet.mri.classifier.labels import LabelGuard
from osteomet.mri.classifier.model import build_resnet
from osteomet.mri.preprocess import PreprocessConfig, preprocess_cohort


def grid_speedup(pre: Path, manifest, patients, epochs: int, work: Path) -> None:
    config = load_classifier_config("tiny").model_copy(update={"max_epochs": epochs, "patience": epochs})
    times, tables = {}, {}
    # every configuration trains on one torch thread (in this process or in a worker), so the
    # serial grid is the one-after-another baseline of the same work
    for key, jobs in (("serial", 1), ("jobs2", 2)):
        start = time.perf_counter()
        tables[key], _ = run_grid(pre, work / f"grid_{key}", config, LabelGuard.from_manifest(manifest),
                                  patients, jobs=jobs)
        times[key] = time.perf_counter() - start
        print(f"grid of {len(tables[key])} tiny configurations, {epochs} epochs, --jobs {jobs}: {times[key]:.1f} s; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    same = np.allclose(tables["serial"]["val_auc"], tables["jobs2"]["val_auc"], atol=1e-9, equal_nan=True)
    print(f"speed-up --jobs 2 vs one after another: {times['serial'] / times['jobs2']:.2f}x (target >= 1.7x); "
          f"same validation AUCs: {same}")


def precision_check(pre: Path, manifest, patients, epochs: int, work: Path, jobs: int = 2) -> None:
    """The tiny grid in float32 and under bfloat16 autocast: seconds, validation AUCs, winners."""
    import pandas as pd

    from osteomet.utils.precision import native_bf16

    native, why = native_bf16("cpu")
    print(f"bfloat16 native on this CPU: {native} ({why})", flush=True)
    tables, times = {}, {}
    for precision in ("fp32", "bf16"):
        config = load_classifier_config("tiny").model_copy(update={"max_epochs": epochs, "precision": precision})
        start = time.perf_counter()
        tables[precision], _ = run_grid(pre, work / f"grid_{precision}", config, LabelGuard.from_manifest(manifest),
                                        patients, jobs=jobs)
        times[precision] = time.perf_counter() - start
        print(f"grid, {precision}, {epochs} epochs, --jobs {jobs}: {times[precision]:.1f} s", flush=True)
    both = pd.DataFrame({p: t.set_index("name")["val_auc"] for p, t in tables.items()})
    print(both.round(3).to_string())
    winners = {p: select_winner(t)["name"] for p, t in tables.items()}
    print(f"bf16 / fp32 time: {times['fp32'] / times['bf16']:.2f}x faster; mean |validation AUC difference| "
          f"{(both['bf16'] - both['fp32']).abs().mean():.3f}; winners: {winners}")


def seconds_per_patient(pre: Path, ids: list[str], device: torch.device, *, bf16: bool = False,
                        steps: int = 2) -> dict[int, float]:
    """Training seconds per patient (forward + backward + step) for each default depth at the ROI size."""
    config = load_classifier_config("default")
    dataset = RoiDataset(pre, ids, [float(i % 2) for i in range(len(ids))], config, augment=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=min(len(ids), 2), shuffle=False)
    out = {}
    for depth in config.depths:
        torch.manual_seed(0)
        model = build_resnet(depth, config.resnet).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.BCEWithLogitsLoss()

        def step(x, y):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(model(x).float(), y)
            loss.backward()
            optimizer.step()

        x, y = next(iter(loader))
        step(x.to(device), y.to(device))  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, seen = time.perf_counter(), 0
        for _ in range(steps):
            for x, y in loader:
                step(x.to(device), y.to(device))
                seen += len(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        out[depth] = (time.perf_counter() - start) / seen
        print(f"ResNet{depth} at {tuple(x.shape[2:])} (z, y, x), {device.type}{' bf16' if bf16 else ''}: "
              f"{out[depth]:.3f} s per patient per epoch", flush=True)
    return out


def gpu_pipeline_ratio(pre: Path, ids: list[str], steps: int = 30, depth: int = 50) -> None:
    """Training samples/s fed by RoiDataset + DataLoader over the same model fed tensors already on the GPU."""
    config = load_classifier_config("default")
    device = torch.device("cuda")
    model = build_resnet(depth, config.resnet).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(model(x).float(), y)
        loss.backward()
        optimizer.step()

    dataset = RoiDataset(pre, ids, [float(i % 2) for i in range(len(ids))], config, augment=True)
    batch = config.batch_size
    x0, _ = dataset[0]
    x, y = torch.randn(batch, *x0.shape, device=device), torch.ones(batch, 1, device=device)
    synthetic = samples_per_second(step, (x, y), batch, steps)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=8, pin_memory=True,
                                         persistent_workers=True, drop_last=True)
    done, start = 0, None
    while done < steps:
        for xb, yb in loader:
            step(xb.to(device, non_blocking=True), yb.to(device, non_blocking=True))
            if start is None:  # the first batch pays the workers' start-up
                torch.cuda.synchronize()
                start = time.perf_counter()
                continue
            done += 1
            if done >= steps:
                break
    torch.cuda.synchronize()
    real = done * batch / (time.perf_counter() - start)
    print(f"GPU ResNet{depth} bf16: {synthetic:.1f} samples/s on synthetic tensors, {real:.1f} with the data "
          f"pipeline, ratio {real / synthetic:.2f} (target >= 0.9)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24, help="synthetic patients")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per grid configuration")
    parser.add_argument("--patients", type=int, default=4, help="patients per timing epoch (per depth)")
    parser.add_argument("--skip-grid", action="store_true")
    parser.add_argument("--skip-depths", action="store_true", help="skip the per-depth CPU/GPU timings")
    parser.add_argument("--precision", action="store_true", help="the tiny grid in float32 and in bfloat16")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        manifest_path = generate_mri_cohort(work / "cohort", args.n, seed=0,
                                            config=MRISynthConfig(split_ratios=(0.5, 0.3, 0.2)))
        manifest = read_manifest(manifest_path)
        pre = work / "pre"
        preprocess_cohort(manifest, pre, PreprocessConfig(seg_size=(64, 64, 16)))  # ROI 64x64x32 (default)
        patients = roi_patients(pre, manifest)
        if args.precision:
            precision_check(pre, manifest, patients, args.epochs, work)
        if not args.skip_grid:
            grid_speedup(pre, manifest, patients, args.epochs, work)
        if args.skip_depths:
            return
        ids = split_ids(patients, "train")[: args.patients]
        seconds_per_patient(pre, ids, torch.device("cpu"))
        if torch.cuda.is_available():
            seconds_per_patient(pre, ids, torch.device("cuda"), bf16=True, steps=10)
            gpu_pipeline_ratio(pre, split_ids(patients, "train"))
        else:
            print("no CUDA device: bf16 timings and the GPU pipeline ratio were not measured")


if __name__ == "__main__":
    main()
