"""CT inference speed: detection slices per second, segmentation seconds per patient.

Prints, measured in one run on the device chosen (CPU always; CUDA too when present):

1. detection: bone tiles per second of each classifier (EfficientNet-B0, ResNet34,
   DenseNet121) at the ``--preset``'s tile size, channels and width, batch 32, best of
   ``--repeat`` passes over ``--slices`` tiles (network only: a slice costs as many tiles as
   cover its bone, about 2-10);
2. segmentation: seconds per patient for a 512 x 512 x ``--depth`` CT (default 300 slices)
   through the whole predict path for each network (UNet, residual UNet, AttentionUnet, the
   preset's widths): windowing and bone crop, sliding-window prediction of every slice with
   its neighbours, back onto the 512 x 512 grid, and the NIfTI written atomically.

The networks are untrained (timing does not depend on the weights). Run the same script on
each machine you compare, and say which gave each number.

Usage: .venv/bin/python benchmarks/bench_ct_inference.py [--preset tiny|default] [--slices 256] [--depth 300]
       [--repeat 2] [--threads N] [--device cpu|cuda|all] [--only detection|segmentation]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from timing import best_of

from osteomet.ct.detection.config import load_detection_config
from osteomet.ct.detection.models import build_classifier
from osteomet.ct.segmentation.config import load_segmentation_config
from osteomet.ct.segmentation.models import build_segmenter
from osteomet.ct.segmentation.train import volume_probabilities
from osteomet.ct.slices.cache import prepare_ct, to_ct_geometry
from osteomet.data.case import CTCase
from osteomet.data.images import write_image


def synthetic_ct(depth: int, seed: int = 0) -> sitk.Image:
    """A 512 x 512 x depth CT in HU: air, a body ellipse of soft tissue, a bright 'spine' and a bone ring.

    The ring (a rib cage's outline) makes the bone crop span most of the body, as on chest and
    pelvis slices, so the timing is not flattered by a small crop.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:512, :512]
    body = ((x - 256) / 200) ** 2 + ((y - 256) / 150) ** 2 < 1
    spine = ((x - 256) / 25) ** 2 + ((y - 330) / 25) ** 2 < 1
    ring = (((x - 256) / 180) ** 2 + ((y - 256) / 130) ** 2 < 1) & (((x - 256) / 172) ** 2 + ((y - 256) / 122) ** 2 >= 1)
    plane = np.where(body, 40.0, -1000.0) + np.where(spine | ring, 600.0, 0.0)
    volume = (plane[None] + rng.normal(0, 15, (depth, 512, 512))).astype(np.int16)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.8, 0.8, 2.0))
    return image


def bench_detection(device: torch.device, preset: str, n_slices: int, repeat: int) -> None:
    config = load_detection_config(preset)
    size = config.tiles().size
    x = torch.rand(n_slices, config.in_channels, size, size)
    for name in ("efficientnet-b0", "resnet34", "densenet121"):
        model = build_classifier(name, config.in_channels, config.width).to(device).eval()

        def run() -> None:
            with torch.no_grad():
                for start in range(0, n_slices, 32):
                    model(x[start:start + 32].to(device)).cpu()

        run()  # warm-up (allocations, cuDNN autotuning)
        seconds = best_of(repeat, run)
        print(f"  detection {name:16s} {device.type:4s} {preset} tiles {size}x{size}: {n_slices / seconds:8.1f} tiles/s "
              f"({seconds:.2f} s for {n_slices})")


def bench_segmentation(device: torch.device, preset: str, depth: int, repeat: int) -> None:
    config = load_segmentation_config(preset)
    ct = sitk.Cast(synthetic_ct(depth), sitk.sitkFloat32)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("unet", "resunet", "attention_unet"):
            model = build_segmenter(name, config).to(device).eval()

            def run() -> None:
                arrays, meta = prepare_ct(CTCase("bench", ct, None, None), config.slices)
                probability = volume_probabilities(model, arrays["image"], config, device)
                write_image(to_ct_geometry(probability, meta), Path(tmp) / f"{name}.nii.gz")

            run()
            seconds = best_of(repeat, run)
            print(f"  segmentation {name:14s} {device.type:4s} {preset} 512x512x{depth}, patches "
                  f"{config.patch_size}: {seconds:6.2f} s/patient")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("tiny", "default"), default="tiny")
    parser.add_argument("--slices", type=int, default=256)
    parser.add_argument("--depth", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--only", choices=("detection", "segmentation"), default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    elif args.device == "cuda":
        raise SystemExit("no CUDA device here")
    print(f"CPU threads: {torch.get_num_threads()}; torch {torch.__version__}")
    for device in devices:
        if args.only in (None, "detection"):
            bench_detection(device, args.preset, args.slices, args.repeat)
        if args.only in (None, "segmentation"):
            bench_segmentation(device, args.preset, args.depth, args.repeat)


if __name__ == "__main__":
    main()
