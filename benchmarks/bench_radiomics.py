"""Radiomics extraction speed: osteomet --jobs 2 vs a plain single-process pyradiomics loop.

Measured in one run on the same cases and parameters (default: the packaged MRI parameters
with original, LoG and wavelet images and every feature class). Targets: speed-up >= 1.8x
with 2 jobs; a cache-hit rerun < 5% of the first run.

Also prints a hand-written split: the plain loop run as ``--jobs`` forked processes on fixed shares of
the cases at once (no cluster, no imports), so a shortfall can be told apart from the host's scaling.

Usage: .venv/bin/python benchmarks/bench_radiomics.py [--n 40] [--params mri] [--jobs 2]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from osteomet.data.case import load_mri_case
from osteomet.data.manifest import read_manifest
from osteomet.data.synth.mri import generate_mri_cohort
from osteomet.radiomics.params import load_params
from osteomet.radiomics.runner import extract_cohort


def plain_loop(manifest, params) -> float:
    """What a user would write by hand: one extractor, one case after another."""
    from radiomics import featureextractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    extractor = featureextractor.RadiomicsFeatureExtractor(params)
    start = time.perf_counter()
    for record in manifest:
        case = load_mri_case(record, require_mask=True)
        for image in (case.t2, case.dwi, case.adc):
            extractor.execute(image, case.mask, label=1)
    return time.perf_counter() - start


def _loop_part(args: tuple) -> float:
    return plain_loop(*args)


def side_by_side(manifest, params, jobs: int) -> float:
    """What a hand-written split gives: the plain loop on ``jobs`` fixed shares of the cases at once (forked, nothing
    to start or import), wall time. Tells the host's scaling of memory-bound extraction (LoG, wavelets) apart from
    osteomet's overhead."""
    import multiprocessing

    records = list(manifest)
    shares = [(records[i::jobs], params) for i in range(jobs)]
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        pool.map(_loop_part, shares)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--params", default="mri")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    params = load_params(args.params)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = read_manifest(generate_mri_cohort(Path(tmp) / "cohort", args.n, seed=1))
        baseline = plain_loop(manifest, params)
        ceiling = side_by_side(manifest, params, args.jobs) if args.jobs > 1 else baseline
        first = extract_cohort(manifest, params, cache_dir=Path(tmp) / "cache", jobs=args.jobs)
        again = extract_cohort(manifest, params, cache_dir=Path(tmp) / "cache", jobs=args.jobs)
    assert not first.failures, first.failure_report()
    print(f"cases: {args.n} patients x 3 sequences, params={args.params}, "
          f"{first.table.shape[1] - 2} features per patient")
    print(f"plain pyradiomics loop:  {baseline:7.1f} s  ({baseline / args.n:.2f} s/case)")
    print(f"osteomet --jobs {args.jobs}:       {first.seconds:7.1f} s  ({first.seconds / args.n:.2f} s/case)")
    print(f"speed-up: {baseline / first.seconds:.2f}x (target >= 1.8x)")
    print(f"{args.jobs} plain loops side by side: {ceiling:7.1f} s  = {baseline / ceiling:.2f}x (a hand-written split "
          f"of the cases; osteomet takes {first.seconds / ceiling:.0%} of its time)")
    print(f"cache-hit rerun:         {again.seconds:7.2f} s  = {100 * again.seconds / first.seconds:.2f}% of the "
          f"first run (target < 5%), {again.n_extracted} extracted")


if __name__ == "__main__":
    main()
