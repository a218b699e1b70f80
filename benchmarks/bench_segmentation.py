"""Preprocessing cache and UNETR inference/training throughput.

Prints, measured in one run:
1. preprocessing of a synthetic cohort, then the cache-hit rerun as a % of the first run (target < 5%);
2. CPU seconds per case of sliding-window inference with the default UNETR at 224x224x64;
3. with CUDA: training throughput (patches/s) fed by the real data pipeline (PatchDataset +
   DataLoader from the preprocessed cache) vs the same model fed synthetic tensors already on
   the GPU; target ratio >= 0.9 (the data pipeline must not be the bottleneck).

Usage: .venv/bin/python benchmarks/bench_segmentation.py [--n 12] [--cases 2] [--steps 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from timing import samples_per_second

from osteomet.data.manifest import read_manifest
from osteomet.data.synth.mri import generate_mri_cohort
from osteomet.mri.preprocess import PreprocessConfig, preprocess_cohort
from osteomet.mri.segmentation.config import load_segmentation_config
from osteomet.mri.segmentation.data import PatchDataset, collate_patches, full_volume
from osteomet.mri.segmentation.model import build_unetr
from osteomet.mri.segmentation.train import sliding_window_probabilities


def gpu_throughput(root: Path, ids: list[str], steps: int) -> None:
    from monai.losses import DiceCELoss

    config = load_segmentation_config("default").model_copy(update={"num_workers": 8})
    device = torch.device("cuda")
    model = build_unetr(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda")
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False)

    def step(image, label):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16):
            loss = loss_fn(model(image), label)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    x, y, z = config.patch_size
    batch = config.batch_size
    image = torch.randn(batch, 3, z, y, x, device=device)
    label = (torch.rand(batch, 1, z, y, x, device=device) > 0.99).float()
    synthetic = samples_per_second(step, (image, label), batch, steps)

    dataset = PatchDataset(root, ids, config)
    loader = torch.utils.data.DataLoader(dataset, batch_size=max(1, batch // config.samples_per_case), shuffle=True,
                                         collate_fn=collate_patches, num_workers=config.num_workers,
                                         pin_memory=True, persistent_workers=True)
    done, start = 0, None
    while done < steps + 3:
        for item in loader:
            step(item["image"].to(device, non_blocking=True), item["label"].to(device, non_blocking=True))
            done += 1
            if done == 3:
                torch.cuda.synchronize()
                start = time.perf_counter()
            if done >= steps + 3:
                break
    torch.cuda.synchronize()
    real = steps * batch / (time.perf_counter() - start)
    print(f"GPU training throughput: synthetic on-GPU {synthetic:.1f} patches/s, real pipeline {real:.1f} patches/s, "
          f"ratio {real / synthetic:.2f} (target >= 0.9)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--cases", type=int, default=2, help="cases for the CPU inference timing")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    config = load_segmentation_config("default")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = read_manifest(generate_mri_cohort(root / "cohort", args.n, seed=2))
        pre = PreprocessConfig(seg_size=config.seg_size)
        start = time.perf_counter()
        preprocess_cohort(manifest, root / "pre", pre)
        first = time.perf_counter() - start
        start = time.perf_counter()
        index = preprocess_cohort(manifest, root / "pre", pre)
        again = time.perf_counter() - start
        assert (index["status"] == "cached").all()
        print(f"preprocessing {args.n} patients at {config.seg_size}: first {first:.1f} s "
              f"({first / args.n:.2f} s/case), cache-hit rerun {again:.3f} s = {100 * again / first:.2f}% (target < 5%)")

        torch.set_num_threads(max(1, torch.get_num_threads()))
        model = build_unetr(config).eval()
        seconds = []
        for pid in manifest.patient_ids[: args.cases]:
            image, _, _ = full_volume(root / "pre", pid)
            start = time.perf_counter()
            sliding_window_probabilities(model, image, config, torch.device("cpu"))
            seconds.append(time.perf_counter() - start)
        print(f"CPU sliding-window inference, default UNETR, 224x224x64, patch {config.patch_size}, overlap "
              f"{config.sw_overlap}: {sum(seconds) / len(seconds):.1f} s/case ({torch.get_num_threads()} threads)")
        if torch.cuda.is_available():
            gpu_throughput(root / "pre", manifest.patient_ids, args.steps)
        else:
            print("GPU training throughput: no CUDA device here (run on a GPU machine for the 0.9 ratio check)")


if __name__ == "__main__":
    main()
