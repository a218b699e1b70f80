"""Time the synthetic cohorts of the demo: 40 bpMRI + 10 CT patients (target: under 60 s on 2 cores).

Usage: .venv/bin/python benchmarks/bench_synth.py [--jobs 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort
from osteomet.data.synth.mri import MRISynthConfig, generate_mri_cohort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--n-mri", type=int, default=40)
    parser.add_argument("--n-ct", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_mri_cohort(Path(tmp) / "mri", args.n_mri, config=MRISynthConfig(), jobs=args.jobs)
        mri = time.perf_counter() - start
        start = time.perf_counter()
        generate_ct_cohort(Path(tmp) / "ct", args.n_ct, config=CTSynthConfig(region="whole_body"), jobs=args.jobs)
        ct = time.perf_counter() - start
    total = mri + ct
    print(f"bpMRI {args.n_mri} patients: {mri:.1f} s ({mri / args.n_mri:.2f} s/patient)")
    print(f"CT    {args.n_ct} patients: {ct:.1f} s ({ct / args.n_ct:.2f} s/patient)")
    print(f"total {total:.1f} s with jobs={args.jobs}; target < 60 s; ratio target/actual = {60 / total:.2f}")


if __name__ == "__main__":
    main()
