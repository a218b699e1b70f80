"""GPU check of the default presets: one script, one run, one table (CPU with ``--tiny`` in CI so it does not rot).

Prints the device, torch/CUDA/cuDNN versions and the host CPU model, then a table of one row per
measurement (section, setting, value, unit; a skip row says why), each row as it is taken:

1. ``unetr``: the UNETR of the segmentation preset: one training step (forward, DiceCE loss, backward,
   AdamW step; fp16 autocast + GradScaler on CUDA as ``train_unetr`` does) on the preset's batch of
   patches, and sliding-window inference of one whole volume at the preset's grid (224x224x64 by default);
   median of ``--steps`` timed calls after ``--warmup``, synchronised on CUDA.
2. ``resnet``: training throughput (crops/s: forward, BCE loss, backward, Adam step, batch of the
   preset) of the 3D ResNet of every depth of the classifier grid on 3x32x64x64 crops, fp32 and
   under bf16 autocast (bf16 only where the device supports it natively: ``torch.cuda.is_bf16_supported()``,
   on CPU oneDNN with AMX-BF16 or AVX512-BF16; otherwise a skip row says why).
3. ``pipeline``: training throughput of one ResNet (ResNet50, or the grid's deepest) fed by the package's
   training pipeline (``RoiDataset`` with augmentation + ``DataLoader``, crops written to a temporary
   folder through the preprocessing cache) over the same model fed random tensors already on the device;
   the ratio should be >= 0.9 on a GPU (the pipeline must not starve it).
4. ``predict``: ``predict mri`` end to end on one patient of a finished study (``--study RUN``, the run
   directory of ``osteomet run mri``; the first external, else test, patient of its split), first call
   in the process (cold) and second (warm); goal < 5 s. Without ``--study``: a skip row (the script never
   trains a study).
5. ``ct``: CT lesion segmentation of a synthetic 512x512x300 CT (``bench_ct_inference.synthetic_ct``) through
   the predict path of every architecture of the CT preset (windowing and bone crop, sliding windows per
   slice, back to the CT grid, NIfTI written), total and network-only seconds per patient.

``--tiny`` uses the tiny presets and tiny shapes (UNETR 64x64x16, crops 3x16x32x32, CT 128x128x20): what
CI runs on CPU, in well under a minute on 2 cores. Networks are untrained (timing does not depend on the
weights). The script installs nothing: a missing package stops it before any timing, with its name.

On a lent GPU machine (it has torch, numpy, pandas, PyYAML, not MONAI, SimpleITK or pydantic), carry these
wheels (cp312, see /work/.library/device/README.md): here, in the repository root,
``echo /.whl/ >> .git/info/exclude`` then
``python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl
monai==1.6.1 SimpleITK==2.5.7 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection``,
and run, carrying ``.whl``:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl && export PYTHONPATH=/tmp/site:src || exit; \
    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --device cuda --json $OUT/gpu_check.json

(``--study RUN`` for section 4 needs a finished run folder and the package's whole install there.)

Usage: .venv/bin/python benchmarks/gpu_check.py [--device cuda|cpu] [--tiny] [--only unetr resnet pipeline
       predict ct] [--steps N] [--warmup N] [--study RUN] [--ct-depth N] [--ct-repeat N] [--workers N]
       [--threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("unetr", "resnet", "pipeline", "predict", "ct")
_CORE = ["torch", "numpy", "yaml", "pydantic", "monai", "SimpleITK"]
#: the modules each section imports that a bare torch machine may lack (checked before any timing)
REQUIRES: dict[str, list[str]] = {
    "unetr": _CORE + ["einops"],
    "resnet": _CORE,
    "pipeline": _CORE,
    # predict mri runs the whole study bundle: the package's full install
    "predict": _CORE + ["pandas", "scipy", "sklearn", "statsmodels", "matplotlib", "nibabel", "nrrd", "cc3d",
                        "pydicom", "highdicom", "dask", "distributed", "radiomics", "xgboost", "inmoose", "shap",
                        "dcurves", "crepes", "slicerio"],
    "ct": _CORE + ["pandas", "scipy"],
}
PIP_NAMES = {"yaml": "PyYAML", "sklearn": "scikit-learn", "cc3d": "connected-components-3d", "nrrd": "pynrrd",
             "radiomics": "pyradiomics", "xgboost": "xgboost-cpu", "pydantic_core": "pydantic-core",
             "annotated_types": "annotated-types", "typing_inspection": "typing-inspection"}
#: shapes for --tiny (CI on CPU) and the defaults (the method's sizes)
SHAPES = {"tiny": {"roi": (32, 32, 16), "ct": (128, 20)}, "default": {"roi": (64, 64, 32), "ct": (512, 300)}}


@dataclass
class Row:
    """One measurement, or a skip with its reason (``value`` None)."""

    section: str
    setting: str
    value: float | None
    unit: str = ""
    note: str = ""

    def line(self) -> str:
        value = f"{self.value:12.4g}" if self.value is not None else ""
        text = f"{self.section:<9} {self.setting:<58} {value:>12} {self.unit}"
        return (text + (f"  {self.note}" if self.note else "")).rstrip()


class Report:
    """Rows printed as they are measured (a run cut short still shows what it had)."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, section: str, setting: str, value: float | None, unit: str = "", note: str = "") -> None:
        row = Row(section, setting, value, unit, note)
        self.rows.append(row)
        print(row.line(), flush=True)

    def skip(self, section: str, setting: str, reason: str) -> None:
        self.add(section, setting, None, "", f"skipped: {reason}")


# --- environment --------------------------------------------------------------------------------------------


def ensure_package_path() -> None:
    """Run from a bare checkout (the GPU machine has no install of osteomet): use the repository's src/."""
    try:
        importlib.import_module("osteomet")
    except ModuleNotFoundError:
        sys.path.insert(0, str(REPO / "src"))


def missing_packages(sections: list[str]) -> dict[str, list[str]]:
    """Module -> sections needing it, for each required module that does not import (transitive needs too)."""
    missing: dict[str, list[str]] = {}
    for section in sections:
        for module in REQUIRES[section]:
            try:
                importlib.import_module(module)
            except ImportError as error:  # ModuleNotFoundError names the module actually missing
                name = getattr(error, "name", None) or module
                missing.setdefault(name, []).append(section)
    return missing


def cpu_model() -> str:
    """The host CPU's model name (lscpu's "Model name", read from /proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_bf16() -> tuple[bool, str]:
    """Whether CPU bf16 autocast runs natively (oneDNN on AMX-BF16 or AVX512-BF16), and why not."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return False, "torch has no oneDNN (mkldnn): bf16 would be emulated"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    found = [f for f in ("amx_bf16", "avx512_bf16") if f in flags.split()]
    if not found:
        return False, "CPU has neither AMX-BF16 nor AVX512-BF16: bf16 would be emulated"
    return True, "+".join(found)


def bf16_support(device) -> tuple[bool, str]:
    import torch

    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, "" if ok else "torch.cuda.is_bf16_supported() is False"
    return cpu_bf16()


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def median_seconds(fn: Callable[[], Any], device, steps: int, warmup: int) -> float:
    """Median wall seconds of ``steps`` calls after ``warmup`` untimed ones (allocations, cuDNN autotuning)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def throughput(fn: Callable[[], Any], device, steps: int, warmup: int, batch: int) -> float:
    """Samples/s over ``steps`` back-to-back calls (as training runs them: the device queue and the loader's
    prefetching overlap), after ``warmup`` untimed ones."""
    for _ in range(max(warmup, 1)):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    synchronize(device)
    return steps * batch / (time.perf_counter() - start)


def header(device) -> None:
    import torch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    print(f"device: {name}; torch {torch.__version__}; CUDA {torch.version.cuda or 'none'}; cuDNN {cudnn or 'none'}")
    print(f"host CPU: {cpu_model()}; {os.cpu_count()} CPUs; torch CPU threads {torch.get_num_threads()}; "
          f"Python {platform.python_version()}", flush=True)


# --- 1. UNETR --------------------------------------------------------------------------------------------------


def bench_unetr(report: Report, device, preset: str, steps: int, warmup: int) -> None:
    """Training step on the preset's patch batch and sliding-window inference of one volume at its grid."""
    import torch
    from monai.losses import DiceCELoss

    from osteomet.mri.segmentation.config import load_segmentation_config
    from osteomet.mri.segmentation.model import build_unetr
    from osteomet.mri.segmentation.train import sliding_window_probabilities
    from osteomet.training.step import train_step

    config = load_segmentation_config(preset)
    torch.manual_seed(0)
    model = build_unetr(config).to(device)
    px, py, pz = config.patch_size
    sx, sy, sz = config.seg_size
    # train_unetr's loader: batch_size // samples_per_case cases, samples_per_case patches each
    batch = max(1, config.batch_size // config.samples_per_case) * config.samples_per_case
    x = torch.randn(batch, 3, pz, py, px, device=device)
    y = (torch.rand(batch, 1, pz, py, px, device=device) < 0.05).float()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=config.dice_include_background)
    model.train()
    seconds = median_seconds(lambda: train_step(model, optimizer, loss_fn, x, y, scaler=scaler), device, steps, warmup)
    precision = "fp16 AMP" if amp else "fp32"
    report.add("unetr", f"train step, {batch} patches {px}x{py}x{pz}, {precision}", seconds, "s/step")
    report.add("unetr", "  training throughput", batch / seconds, "patches/s")

    model.eval()
    volume = torch.randn(1, 3, sz, sy, sx)
    seconds = median_seconds(lambda: sliding_window_probabilities(model, volume, config, device), device, steps, warmup)
    report.add("unetr", f"inference {sx}x{sy}x{sz}, sliding window {px}x{py}x{pz} ov {config.sw_overlap:g}, "
               f"{precision}", seconds, "s/volume")


# --- 2. 3D-ResNet grid -------------------------------------------------------------------------------------------


def resnet_step(model, optimizer, bf16: bool, device) -> Callable[[Any, Any], Any]:
    """One training step (as the grid's, with bf16 autocast when asked); returns the loss."""
    import torch

    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step(x, y) -> Any:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(x).float(), y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def build_grid_model(depth: int, config, device):
    """The grid's ResNet of ``depth`` and the published winner's optimiser (Adam, 1e-3)."""
    import torch

    from osteomet.mri.classifier.model import build_resnet
    from osteomet.mri.classifier.train import RunSpec, make_optimizer

    torch.manual_seed(0)
    model = build_resnet(depth, config.resnet).to(device).train()
    return model, make_optimizer(model, RunSpec(depth, "adam", 1e-3), config)


def bench_resnet(report: Report, device, preset: str, roi: tuple[int, int, int], steps: int, warmup: int) -> None:
    """Training crops/s of every depth of the grid, fp32 and bf16 autocast."""
    import torch

    from osteomet.mri.classifier.config import load_classifier_config

    config = load_classifier_config(preset)
    batch, (rx, ry, rz) = config.batch_size, roi
    x = torch.randn(batch, 3, rz, ry, rx, device=device)
    y = (torch.rand(batch, 1, device=device) < 0.5).float()
    bf16_ok, why = bf16_support(device)
    for depth in config.depths:
        model, optimizer = build_grid_model(depth, config, device)
        for bf16 in (False, True):
            setting = f"ResNet{depth} train, batch {batch} crops 3x{rz}x{ry}x{rx}, {'bf16' if bf16 else 'fp32'}"
            if bf16 and not bf16_ok:
                report.skip("resnet", setting, why)
                continue
            step = resnet_step(model, optimizer, bf16, device)
            seconds = median_seconds(lambda: step(x, y), device, steps, warmup)
            report.add("resnet", setting, batch / seconds, "crops/s", why if bf16 and device.type == "cpu" else "")
        del model, optimizer
        if device.type == "cuda":
            torch.cuda.empty_cache()


# --- 3. data pipeline vs model only ------------------------------------------------------------------------------


def write_synthetic_rois(root: Path, n: int, roi: tuple[int, int, int]) -> list[str]:
    """``n`` random 3-channel ROI crops in the preprocessing cache's layout (what RoiDataset reads)."""
    import numpy as np

    from osteomet.layout import TRANSFORM
    from osteomet.utils.case_cache import CaseCache

    rx, ry, rz = roi
    rng = np.random.default_rng(0)
    cache = CaseCache(root, TRANSFORM)
    ids = [f"p{i:03d}" for i in range(n)]
    for pid in ids:
        crop = rng.normal(size=(3, rz, ry, rx)).astype(np.float32)
        cache.write(pid, {"roi_image": crop}, {"patient_id": pid}, "gpu_check")
    return ids


def bench_pipeline(report: Report, device, preset: str, roi: tuple[int, int, int], steps: int, warmup: int,
                   workers: int, n_crops: int) -> None:
    """Crops/s of one ResNet fed by RoiDataset + DataLoader over the same model fed tensors on the device."""
    import torch

    from osteomet.mri.classifier.config import load_classifier_config
    from osteomet.mri.classifier.data import RoiDataset

    config = load_classifier_config(preset)
    depth = 50 if 50 in config.depths else max(config.depths)
    bf16, _ = bf16_support(device)
    bf16 = bf16 and device.type == "cuda"  # on CPU the model dominates either way: keep the plain fp32 step
    batch = config.batch_size
    model, optimizer = build_grid_model(depth, config, device)
    step = resnet_step(model, optimizer, bf16, device)
    rx, ry, rz = roi
    precision = "bf16" if bf16 else "fp32"

    x = torch.randn(batch, 3, rz, ry, rx, device=device)
    y = (torch.rand(batch, 1, device=device) < 0.5).float()
    model_only = throughput(lambda: step(x, y), device, steps, warmup, batch)
    report.add("pipeline", f"ResNet{depth} {precision}, random tensors on {device.type}", model_only, "crops/s")

    with tempfile.TemporaryDirectory(prefix="gpu_check_roi_") as tmp:
        ids = write_synthetic_rois(Path(tmp), max(n_crops, batch), roi)
        dataset = RoiDataset(tmp, ids, [float(i % 2) for i in range(len(ids))], config, augment=True)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True,
                                             num_workers=workers, pin_memory=device.type == "cuda",
                                             persistent_workers=workers > 0)
        batches = iter(())

        def fed_step() -> None:
            nonlocal batches
            try:
                xb, yb = next(batches)
            except StopIteration:  # a new epoch, as the training loop starts one
                dataset.set_epoch(dataset.epoch + 1)
                batches = iter(loader)
                xb, yb = next(batches)
            step(xb.to(device, non_blocking=True), yb.to(device, non_blocking=True))

        # the warm-up steps pay the workers' start-up
        fed = throughput(fed_step, device, steps, warmup, batch)
    report.add("pipeline", f"ResNet{depth} {precision}, RoiDataset+DataLoader ({workers} workers, "
               f"{len(ids)} crops)", fed, "crops/s")
    report.add("pipeline", "pipeline / model-only ratio (GPU target >= 0.9)", fed / model_only, "x")


# --- 4. predict mri -------------------------------------------------------------------------------------------


def bench_predict(report: Report, device, study: Path | None) -> None:
    """``predict mri`` end to end on one patient of a finished study, cold then warm (goal < 5 s)."""
    setting = "predict mri, one patient end to end"
    if study is None:
        report.skip("predict", setting, "give --study RUN (a finished `osteomet run mri` folder)")
        return
    import pandas as pd

    from osteomet.layout import RunLayout
    from osteomet.pipeline.predict_mri import CLINICAL, predict_mri

    layout = RunLayout(study)
    if not layout.manifest.is_file():
        report.skip("predict", setting, f"{layout.manifest} not found: not a finished `osteomet run mri` folder")
        return
    table = pd.read_csv(layout.manifest, dtype={"patient_id": str})
    for split in ("external", "test"):
        if (table["split"] == split).any():
            table = table[table["split"] == split]
            break
    row, base = table.iloc[0], layout.split
    clinical = {k: float(row[k]) for k in CLINICAL if k in row and pd.notna(row[k])}
    with tempfile.TemporaryDirectory(prefix="gpu_check_predict_") as tmp:
        for label in ("cold (first in process)", "warm (second)"):
            out = Path(tmp) / label.split()[0]
            start = time.perf_counter()
            result = predict_mri(study, out, t2=base / row["t2"], dwi=base / row["dwi"], adc=base / row["adc"],
                                 clinical=clinical, patient_id=str(row["patient_id"]), device=device.type,
                                 log=lambda _line: None)
            seconds = time.perf_counter() - start
            stages = ", ".join(f"{k} {v:.2f}" for k, v in (result.get("seconds") or {}).items()
                               if isinstance(v, (int, float)))
            report.add("predict", f"{setting}, {label}", seconds, "s",
                       f"goal < 5 s {'met' if seconds < 5 else 'NOT met'}; stages: {stages}")


# --- 5. CT segmentation ----------------------------------------------------------------------------------------


def bench_ct(report: Report, device, preset: str, size: int, depth: int, repeat: int) -> None:
    """Seconds per patient of each CT segmenter through the predict path (as bench_ct_inference measures it)."""
    import SimpleITK as sitk
    import torch
    from bench_ct_inference import synthetic_ct

    from osteomet.ct.segmentation.config import load_segmentation_config
    from osteomet.ct.segmentation.models import build_segmenter
    from osteomet.ct.segmentation.train import volume_probabilities
    from osteomet.ct.slices.cache import prepare_ct, to_ct_geometry
    from osteomet.data.case import CTCase
    from osteomet.data.images import write_image

    config = load_segmentation_config(preset)
    ct = synthetic_ct(depth)
    if size != 512:  # tiny: the same body, fewer pixels (spacing scaled so the anatomy keeps its size)
        step = 512 // size
        ct = ct[::step, ::step, :]
    ct = sitk.Cast(ct, sitk.sitkFloat32)
    with tempfile.TemporaryDirectory(prefix="gpu_check_ct_") as tmp:
        for name in config.architectures:
            torch.manual_seed(0)
            model = build_segmenter(name, config).to(device).eval()
            totals, networks = [], []
            arrays, meta = prepare_ct(CTCase("bench", ct, None, None), config.slices)
            volume_probabilities(model, arrays["image"][:16], config, device)  # warm-up: allocations, autotuning
            for _ in range(repeat):
                start = time.perf_counter()
                arrays, meta = prepare_ct(CTCase("bench", ct, None, None), config.slices)
                before_net = time.perf_counter()
                probability = volume_probabilities(model, arrays["image"], config, device)
                networks.append(time.perf_counter() - before_net)
                write_image(to_ct_geometry(probability, meta), Path(tmp) / f"{name}.nii.gz")
                totals.append(time.perf_counter() - start)
            report.add("ct", f"{name} {size}x{size}x{depth}, patches {config.patch_size}, predict path",
                       statistics.median(totals), "s/patient")
            report.add("ct", f"  {name} network only (sliding windows)", statistics.median(networks), "s/patient")
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()


# --- main -------------------------------------------------------------------------------------------------------


def pick(requested: str | None):
    """The device asked for; CUDA when present by default, else the CPU with a note."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: --device cuda, but torch sees no CUDA device here (use --device cpu)")
    if requested is None and not torch.cuda.is_available():
        print("note: no CUDA device here; measuring on the CPU (--device cpu)")
    return torch.device(requested or ("cuda" if torch.cuda.is_available() else "cpu"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda when present")
    parser.add_argument("--tiny", action="store_true", help="tiny presets and shapes (CI on CPU)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), metavar="SECTION",
                        help=f"sections to run: {' '.join(SECTIONS)} (default: all)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per setting (default 10; tiny 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; tiny 1)")
    parser.add_argument("--study", type=Path, default=None, help="finished `osteomet run mri` folder (section 4)")
    parser.add_argument("--ct-depth", type=int, default=None, help="CT slices (default 300; tiny 20)")
    parser.add_argument("--ct-repeat", type=int, default=None, help="timed CT patients per network (default 2; tiny 1)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers for section 3 (default: min(8, CPUs) on CUDA, 0 on CPU)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's; 1 with --tiny on the CPU)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()

    sections = [s for s in SECTIONS if s in args.only]
    if "predict" in sections and args.study is None:
        sections_needing = [s for s in sections if s != "predict"]  # its skip needs no packages
    else:
        sections_needing = sections
    ensure_package_path()
    missing = missing_packages(sections_needing)
    if missing:
        listing = "; ".join(f"{PIP_NAMES.get(m.split('.')[0], m)} (import {m}; for {', '.join(sorted(set(s)))})"
                            for m, s in missing.items())
        print(f"gpu_check: missing Python package(s): {listing}. This script installs nothing: carry their wheels "
              f"(see its docstring) or leave those sections out with --only.", file=sys.stderr)
        return 2

    import torch

    device = pick(args.device)
    tiny = args.tiny
    if args.threads:
        torch.set_num_threads(args.threads)
    elif tiny and device.type == "cpu":
        # a smoke test, not a CPU benchmark: two threads on a shared 2-core CI host ran 10x slower than one
        torch.set_num_threads(1)
    preset = "tiny" if tiny else "default"
    shapes = SHAPES[preset]
    steps = args.steps or (2 if tiny else 10)
    warmup = args.warmup if args.warmup is not None else (1 if tiny else 3)
    ct_size, ct_depth = shapes["ct"][0], args.ct_depth or shapes["ct"][1]
    ct_repeat = args.ct_repeat or (1 if tiny else 2)
    workers = args.workers if args.workers is not None else (min(8, os.cpu_count() or 1) if device.type == "cuda"
                                                             else 0)
    header(device)
    print(f"presets: {preset}; {steps} timed steps after {warmup} warm-up; sections: {' '.join(sections)}\n")
    print(f"{'section':<9} {'setting':<58} {'value':>12} unit", flush=True)

    report, failed = Report(), []
    started = time.perf_counter()
    runs: dict[str, Callable[[], None]] = {
        "unetr": lambda: bench_unetr(report, device, preset, steps, warmup),
        "resnet": lambda: bench_resnet(report, device, preset, shapes["roi"], steps, warmup),
        # more steps than elsewhere: the ratio spans epoch boundaries (the loader refills its queue there)
        "pipeline": lambda: bench_pipeline(report, device, preset, shapes["roi"], steps if tiny else max(steps, 30),
                                           warmup, workers, n_crops=32 if tiny else 128),
        "predict": lambda: bench_predict(report, device, args.study),
        "ct": lambda: bench_ct(report, device, preset, ct_size, ct_depth, ct_repeat),
    }
    for section in sections:
        try:
            runs[section]()
        except ModuleNotFoundError as error:  # a lazy import deeper in the package
            failed.append(section)
            report.add(section, "(section failed)", None, "", f"FAILED: missing Python package {error.name}")
        except Exception as error:  # keep the other sections' numbers; report and exit non-zero
            failed.append(section)
            report.add(section, "(section failed)", None, "", f"FAILED: {type(error).__name__}: {error}")

    print(f"\ntotal {time.perf_counter() - started:.1f} s on {device.type}"
          + (f"; failed sections: {', '.join(failed)}" if failed else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": str(device), "preset": preset,
                                         "rows": [asdict(r) for r in report.rows]}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
