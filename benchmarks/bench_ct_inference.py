"""CT inference speed: detection slices per second, segmentation seconds per patient.

Prints, measured in one run on the device chosen (CPU always; CUDA too when present):

1. detection: slices per second of each classifier (EfficientNet-B0, ResNet34, DenseNet121)
   on bone-windowed ``--size`` x ``--size`` slices (default 256, the method's), batch 32,
   best of ``--repeat`` passes over ``--slices`` slices (network only: the windowed slices
   are already in memory, as they are from the slice cache);
2. segmentation: seconds per patient for a 512 x 512 x ``--depth`` CT (default 100 slices)
   through the whole predict path for each network (UNet, residual UNet, AttentionUnet, the
   default preset's widths): in-plane resampling and windowing, slice-by-slice prediction,
   stacking and resampling back onto the 512 x 512 grid, and the NIfTI written atomically.

The networks are untrained (timing does not depend on the weights). Run the same script on
each machine you compare, and say which gave each number.

Usage: .venv/bin/python benchmarks/bench_ct_inference.py [--size 256] [--slices 256] [--depth 100] [--repeat 2]
       [--device cpu|cuda|all] [--only detection|segmentation]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from osteomet.ct.detection.models import build_classifier
from osteomet.ct.segmentation.config import load_segmentation_config
from osteomet.ct.segmentation.models import build_segmenter
from osteomet.ct.segmentation.train import volume_probabilities
from osteomet.ct.slices import prepare_ct, to_ct_geometry
from osteomet.data.io import write_image


def synthetic_ct(depth: int, seed: int = 0) -> sitk.Image:
    """A 512 x 512 x depth CT in HU: air, a body ellipse of soft tissue, a bright 'spine'."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:512, :512]
    body = ((x - 256) / 200) ** 2 + ((y - 256) / 150) ** 2 < 1
    spine = ((x - 256) / 25) ** 2 + ((y - 330) / 25) ** 2 < 1
    plane = np.where(body, 40.0, -1000.0) + np.where(spine, 600.0, 0.0)
    volume = (plane[None] + rng.normal(0, 15, (depth, 512, 512))).astype(np.int16)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.8, 0.8, 2.0))
    return image


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_detection(device: torch.device, size: int, n_slices: int, repeat: int) -> None:
    x = torch.rand(n_slices, 1, size, size)
    for name in ("efficientnet-b0", "resnet34", "densenet121"):
        model = build_classifier(name).to(device).eval()

        def run() -> None:
            with torch.no_grad():
                for start in range(0, n_slices, 32):
                    model(x[start:start + 32].to(device)).cpu()

        run()  # warm-up (allocations, cuDNN autotuning)
        seconds = best_of(repeat, run)
        print(f"  detection {name:16s} {device.type:4s} {size}x{size}: {n_slices / seconds:8.1f} slices/s "
              f"({seconds:.2f} s for {n_slices})")


def bench_segmentation(device: torch.device, depth: int, repeat: int) -> None:
    config = load_segmentation_config("default")
    ct = sitk.Cast(synthetic_ct(depth), sitk.sitkFloat32)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("unet", "resunet", "attention_unet"):
            model = build_segmenter(name, config).to(device).eval()

            def run() -> None:
                arrays, meta = prepare_ct(ct, config.slices)
                probability = volume_probabilities(model, arrays["image"], config.batch_size, device)
                write_image(to_ct_geometry(probability, meta), Path(tmp) / f"{name}.nii.gz")

            run()
            seconds = best_of(repeat, run)
            print(f"  segmentation {name:14s} {device.type:4s} 512x512x{depth} at "
                  f"{config.slices.inplane_size}x{config.slices.inplane_size}: {seconds:6.2f} s/patient")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--slices", type=int, default=256)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--only", choices=("detection", "segmentation"), default=None)
    args = parser.parse_args()
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    elif args.device == "cuda":
        raise SystemExit("no CUDA device here")
    print(f"CPU threads: {torch.get_num_threads()}; torch {torch.__version__}")
    for device in devices:
        if args.only in (None, "detection"):
            bench_detection(device, args.size, args.slices, args.repeat)
        if args.only in (None, "segmentation"):
            bench_segmentation(device, args.depth, args.repeat)


if __name__ == "__main__":
    main()
