"""How long `osteomet --help` and each command's `--help` take (goal: under 1 s), and what they import.

A fresh interpreter per call, best of ``--repeat``; prints the time per command, the ratio to the goal,
and whether torch, MONAI, SimpleITK or pyradiomics were imported (none should be: heavy imports live
inside the commands).

Usage: .venv/bin/python benchmarks/bench_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from timing import best_of

COMMANDS = [[], ["run", "mri"], ["run", "ct"], ["predict", "mri"], ["predict", "ct"], ["import", "dicom"], ["demo"]]
HEAVY = ("torch", "monai", "SimpleITK", "radiomics", "xgboost", "dask")
GOAL_S = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    probe = ("import sys; from osteomet.cli.main import app; from typer.main import get_command; "
             "get_command(app); print(','.join(m for m in {heavy!r} if m in sys.modules))").format(heavy=HEAVY)
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    print(f"heavy modules imported by the CLI itself: {loaded or 'none'}")
    for command in COMMANDS:
        call = [sys.executable, "-m", "osteomet", *command, "--help"]
        seconds = best_of(args.repeat, lambda: subprocess.run(call, capture_output=True, check=True))
        print(f"osteomet {' '.join(command + ['--help']):28s} {seconds:6.2f} s  ({seconds / GOAL_S:.2f} of the goal)")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    print(f"for scale, `import torch` alone: {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
