"""`osteomet predict ct` on one 512 x 512 x 300 CT: wall time of the whole command against the 60 s goal.

The CT is the simple phantom of ``bench_ct_inference.py`` (body, spine, a rib-cage ring: the bone
crop spans most of the body, so the timing is not flattered by a small crop). The models are
those of a finished ``osteomet run ct`` folder (``--model``, e.g. the demo's tiny study): the
command runs every detector, the best segmenter, the per-lesion table, overlays and SEG note,
as a clinician would run it, in a fresh process (imports included).

Prints the seconds of each of ``--repeat`` runs, the best, and its ratio to the goal.

Usage: .venv/bin/python benchmarks/bench_predict_ct.py --model RUN [--depth 300] [--repeat 2] [--bones]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk
from bench_ct_inference import synthetic_ct

GOAL_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a finished `osteomet run ct` folder")
    parser.add_argument("--depth", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    osteomet = Path(sys.executable).with_name("osteomet")
    with tempfile.TemporaryDirectory() as tmp:
        ct = Path(tmp) / "ct.nii.gz"
        sitk.WriteImage(synthetic_ct(args.depth), str(ct))
        times = []
        for i in range(args.repeat):
            start = time.perf_counter()
            subprocess.run([str(osteomet), "predict", "ct", "--model", str(args.model), "--ct", str(ct),
                            "-o", str(Path(tmp) / f"out{i}")], check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - start)
            print(f"run {i + 1}: {times[-1]:.1f} s")
    best = min(times)
    print(f"predict ct, 512 x 512 x {args.depth}: best {best:.1f} s; goal {GOAL_S:.0f} s; "
          f"ratio {best / GOAL_S:.2f} (below 1 meets it)")


if __name__ == "__main__":
    main()
