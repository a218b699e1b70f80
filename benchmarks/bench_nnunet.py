"""Tiny end-to-end nnU-Net v2 run on a synthetic CT cohort: export, plan + preprocess, train, predict, import.

Prints the seconds of every stage and the per-patient Dice of the held-out patients. The
default trainer (nnUNetTrainer_OsteometTiny: 2 epochs x 10 iterations) only shows that the
whole pipeline runs; use ``--trainer nnUNetTrainer_OsteometShort`` (30 x 25 iterations,
meant for a GPU) to see nnU-Net learn the synthetic lesions.

Usage: .venv/bin/python benchmarks/bench_nnunet.py [--n 6] [--size 48] [--trainer T] [--device cpu|cuda]
       [--keep DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=6, help="patients (split 80:20 train/test, val from train)")
    parser.add_argument("--size", type=int, default=48, help="in-plane matrix of the synthetic CTs")
    parser.add_argument("--slice-mm", type=float, default=10.0, help="slice thickness of the synthetic CTs")
    parser.add_argument("--trainer", default="nnUNetTrainer_OsteometTiny")
    parser.add_argument("--configuration", default="3d_fullres")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--processes", type=int, default=1, help="nnU-Net worker processes")
    parser.add_argument("--keep", type=Path, default=None, help="work in this new folder instead of a temporary one")
    args = parser.parse_args()

    from osteomet.ct.nnunet.export import export_dataset
    from osteomet.ct.nnunet.importer import import_predictions
    from osteomet.ct.nnunet.run import default_device, plan_and_preprocess, predict, require_nnunetv2, train
    from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort

    print(f"nnunetv2 {require_nnunetv2()}, device {args.device or default_device()}, trainer {args.trainer}")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        timings: dict[str, float] = {}

        def stage(name: str, fn, *a, **kw):
            start = time.perf_counter()
            result = fn(*a, **kw)
            timings[name] = time.perf_counter() - start
            print(f"{name:12s} {timings[name]:7.1f} s")
            return result

        config = CTSynthConfig(inplane_size=args.size, region="abdomen_pelvis", slice_thickness_mm=args.slice_mm)
        manifest = stage("synthesise", generate_ct_cohort, work / "cohort", args.n, seed=11, config=config)
        layout = stage("export", export_dataset, manifest, work / "nnunet")
        stage("plan", plan_and_preprocess, layout, configurations=(args.configuration,),
              num_processes=args.processes)
        stage("train", train, layout, configuration=args.configuration, trainer=args.trainer, device=args.device,
              num_processes=args.processes, n_proc_da=args.processes)
        predictions = stage("predict", predict, layout, configuration=args.configuration, trainer=args.trainer,
                            device=args.device, num_processes=args.processes)
        table = stage("import", import_predictions, predictions, layout.root, work / "scored")
        total = sum(timings.values())
        print(f"total        {total:7.1f} s")
        print(table[["patient_id", "split", "dice", "precision", "recall", "pred_voxels", "ref_voxels"]]
              .to_string(index=False))
        scored = table.dropna(subset=["dice"])
        print(f"held-out patients: {len(table)}; mean Dice {scored['dice'].mean():.3f} over {len(scored)}")


if __name__ == "__main__":
    main()
