"""End-to-end nnU-Net v2 run on a synthetic CT cohort: export, plan + preprocess, train, predict, import.

Prints the seconds of every stage, then the Dice, precision and recall of each held-out (test)
patient and their means. The default (CPU) preset trains nnU-Net's 2d configuration with
``nnUNetTrainer_OsteometCPU`` (18 epochs x 25 iterations of 8 slices, one torch thread) on
20 abdomen-pelvis CTs with large sclerotic lesions: about 6 minutes on 2 CPU cores, enough
for nnU-Net to learn the lesions (held-out lesion Dice well above 0; a run is not
deterministic, nnU-Net's augmentation is not seeded). ``--gpu`` is a larger preset for when a
GPU is lent: 40 finer CTs, 3d_fullres, ``nnUNetTrainer_OsteometShort`` (50 x 50 iterations
at the plans' batch size), 8 worker processes. Any option given explicitly overrides the preset.

Usage: .venv/bin/python benchmarks/bench_nnunet.py [--gpu] [--n 20] [--size 96] [--slice-mm 5]
       [--fov-mm 400] [--configuration 2d] [--trainer T] [--device cpu|cuda] [--threads 1]
       [--processes 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

#: Preset values of the options (CPU: minutes on 2 cores; GPU: a larger cohort, 3D network, longer schedule).
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": dict(n=20, size=96, slice_mm=5.0, fov_mm=400.0, configuration="2d", trainer="nnUNetTrainer_OsteometCPU",
                threads=1, processes=1),
    "gpu": dict(n=40, size=128, slice_mm=3.0, fov_mm=400.0, configuration="3d_fullres",
                trainer="nnUNetTrainer_OsteometShort", threads=None, processes=8),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="the larger GPU preset (default: the CPU preset)")
    parser.add_argument("--n", type=int, help="patients (split 80:20 train/test, val from train)")
    parser.add_argument("--size", type=int, help="in-plane matrix of the synthetic CTs")
    parser.add_argument("--slice-mm", type=float, help="slice thickness of the synthetic CTs (mm)")
    parser.add_argument("--fov-mm", type=float, help="in-plane field of view of the synthetic CTs (mm)")
    parser.add_argument("--configuration", help="nnU-Net configuration (2d, 3d_fullres)")
    parser.add_argument("--trainer", help="nnU-Net trainer class")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--threads", type=int, help="torch threads of CPU training (default: 1 on the CPU preset, "
                                                    "as a shared machine's cores are oversubscribed by more)")
    parser.add_argument("--processes", type=int, help="nnU-Net worker processes (preprocessing, augmentation)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this new folder instead of a temporary one")
    args = parser.parse_args()
    for key, value in PRESETS["gpu" if args.gpu else "cpu"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def cohort_config(args: argparse.Namespace) -> Any:
    """Synthetic abdomen-pelvis CTs whose lesions a short training can learn: large, sclerotic, most patients."""
    from osteomet.data.synth.ct import CTSynthConfig

    return CTSynthConfig(inplane_size=args.size, fov_mm=args.fov_mm, slice_thickness_mm=args.slice_mm,
                         region="abdomen_pelvis", lytic_fraction=0.0, focal_diameter_mm=(20.0, 40.0),
                         lesion_free_fraction=0.1, mean_lesions=4.0)


def main() -> None:
    args = parse_args()
    from osteomet.ct.nnunet.export import export_dataset
    from osteomet.ct.nnunet.importer import import_predictions
    from osteomet.ct.nnunet.run import default_device, plan_and_preprocess, predict, require_nnunetv2, train
    from osteomet.ct.nnunet.trainers.osteomet_nnunet_trainers import THREADS_ENV
    from osteomet.data.synth.ct import generate_ct_cohort

    device = args.device or default_device()
    if args.threads is not None:
        os.environ[THREADS_ENV] = str(args.threads)  # inherited by nnU-Net's training child process
    print(f"nnunetv2 {require_nnunetv2()}, device {device}, configuration {args.configuration}, "
          f"trainer {args.trainer}, torch threads {args.threads or 'nnU-Net default'}, processes {args.processes}")
    print(f"cohort: {args.n} abdomen-pelvis CTs, {args.size}x{args.size} over {args.fov_mm:g} mm, "
          f"{args.slice_mm:g} mm slices")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        timings: dict[str, float] = {}

        def stage(name: str, fn: Callable[..., Any], *a: Any, **kw: Any) -> Any:
            start = time.perf_counter()
            result = fn(*a, **kw)
            timings[name] = time.perf_counter() - start
            print(f"{name:12s} {timings[name]:7.1f} s", flush=True)
            return result

        manifest = stage("synthesise", generate_ct_cohort, work / "cohort", args.n, seed=11,
                         config=cohort_config(args), jobs=args.processes)
        layout = stage("export", export_dataset, manifest, work / "nnunet")
        stage("plan", plan_and_preprocess, layout, configurations=(args.configuration,),
              num_processes=args.processes)
        stage("train", train, layout, configuration=args.configuration, trainer=args.trainer, device=device,
              num_processes=args.processes, n_proc_da=args.processes)
        predictions = stage("predict", predict, layout, configuration=args.configuration, trainer=args.trainer,
                            device=device, num_processes=args.processes)
        table = stage("import", import_predictions, predictions, layout.root, work / "scored")
        print(f"total        {sum(timings.values()):7.1f} s")
        print(table[["patient_id", "split", "dice", "precision", "recall", "predicted_voxels", "reference_voxels"]]
              .to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        with_lesions = table[table["reference_voxels"] > 0]
        lesion_free = table[table["reference_voxels"] == 0]
        print(f"held-out patients: {len(table)}; mean Dice {table['dice'].mean():.3f} "
              f"(lesion-free patients count 1 when predicted empty, else 0)")
        print(f"mean lesion Dice over the {len(with_lesions)} patients with lesions: "
              f"{with_lesions['dice'].mean():.3f}")
        if len(lesion_free):
            print(f"lesion-free patients with false-positive voxels: "
                  f"{int((lesion_free['predicted_voxels'] > 0).sum())} of {len(lesion_free)}")


if __name__ == "__main__":
    main()
