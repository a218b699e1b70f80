"""Fast DeLong (Sun & Xu midranks, O(n log n)) on 100,000 patients; target under 1 s each.

Prints, measured in one run:
1. seconds for ``delong_ci`` and the paired ``delong_test`` on ``--n`` patients (default 100,000,
   scores with ties), best of ``--repeat`` runs, and the ratio target/actual (>= 1 means met);
2. on a smaller ``--naive-n`` (default 4,000) the same paired test by the quadratic definition
   of DeLong et al. (1988) (every case-control pair), the speed-up of the fast algorithm there,
   and the largest difference between the two results (should be ~1e-15);
3. the stratified bootstrap CI of the AUC on ``--boot-n`` patients (default 30,000) with
   ``--boot-resamples`` (default 1000): seconds of ``bootstrap_auc_ci`` (O(n) per resample),
   of the same resamples ranked afresh each time (the former implementation), and, when
   ``Rscript`` with pROC is on PATH, of ``pROC::ci.auc(method = "bootstrap",
   boot.stratified = TRUE)`` timed inside R (``system.time``, data loading excluded), with the
   ratio pROC/ours (target >= 10) and both intervals. The two intervals come from different
   random draws, so they agree within Monte Carlo error, printed as the standard error of a
   2.5% / 97.5% bootstrap quantile.

Usage: .venv/bin/python benchmarks/bench_delong.py [--n 100000] [--naive-n 4000] [--repeat 3]
       [--boot-n 30000] [--boot-resamples 1000] [--no-r]
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import norm, rankdata
from timing import best_of

from osteomet.evaluation import delong_ci, delong_test
from osteomet.evaluation.bootstrap import bootstrap_auc_ci, resample_indices

R_BOOTSTRAP = """
suppressMessages(library(pROC))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
r <- roc(d$y, d$score, levels = c(0, 1), direction = "<", quiet = TRUE)
set.seed(1)
t <- system.time(ci <- ci.auc(r, method = "bootstrap", boot.n = as.integer(args[2]), boot.stratified = TRUE,
                              progress = "none"))
cat(sprintf("%.17g %.17g %.17g %.6f\\n", as.numeric(auc(r)), ci[1], ci[3], t[["elapsed"]]))
"""


def naive_paired(y: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> tuple[float, float]:
    """Paired DeLong Z and p from the n_cases x n_controls kernel matrices (O(n^2) memory and time)."""
    comps = []
    for s in (s1, s2):
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        comps.append((psi.mean(axis=1), psi.mean(axis=0)))
    v10 = np.vstack([c[0] for c in comps])
    v01 = np.vstack([c[1] for c in comps])
    cov = np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]
    aucs = v10.mean(axis=1)
    z = (aucs[0] - aucs[1]) / math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    return z, 2 * norm.sf(abs(z))


def data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    s1 = np.round(rng.normal(size=n) + y, 3)  # ties, as with real probability outputs
    s2 = np.round(0.5 * s1 + rng.normal(size=n) + 0.6 * y, 3)
    return y, s1, s2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--naive-n", type=int, default=4_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--boot-n", type=int, default=30_000)
    parser.add_argument("--boot-resamples", type=int, default=1000)
    parser.add_argument("--no-r", action="store_true", help="skip the pROC comparison")
    args = parser.parse_args()

    y, s1, s2 = data(args.n)
    t_ci = best_of(args.repeat, lambda: delong_ci(y, s1))
    t_test = best_of(args.repeat, lambda: delong_test(y, s1, s2))
    print(f"n = {args.n:,} patients ({int(y.sum()):,} cases), best of {args.repeat}")
    print(f"delong_ci:   {t_ci:.3f} s  (target < 1 s; ratio target/actual = {1 / t_ci:.1f})")
    print(f"delong_test: {t_test:.3f} s  (target < 1 s; ratio target/actual = {1 / t_test:.1f})")

    y, s1, s2 = data(args.naive_n, seed=1)
    t_fast = best_of(args.repeat, lambda: delong_test(y, s1, s2))
    t_naive = best_of(1, lambda: naive_paired(y, s1, s2))
    fast = delong_test(y, s1, s2)
    z, p = naive_paired(y, s1, s2)
    print(
        f"n = {args.naive_n:,}: fast {t_fast * 1e3:.1f} ms vs quadratic definition {t_naive * 1e3:.1f} ms, "
        f"speed-up {t_naive / t_fast:.0f}x; |dZ| = {abs(fast.z - z):.1e}, |dp| = {abs(fast.p - p):.1e}"
    )
    bootstrap_section(args.boot_n, args.boot_resamples, not args.no_r)


def sorted_bootstrap(y: np.ndarray, s: np.ndarray, n_resamples: int) -> tuple[float, float]:
    """The former implementation: rank every resample afresh (O(n log n) each), same draws."""
    labels = y.astype(bool)
    samples = []
    for idx in resample_indices(labels, n_resamples, seed=0):
        lab, ranks = labels[idx], rankdata(s[idx])
        n_pos = lab.sum()
        samples.append((ranks[lab].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (lab.size - n_pos)))
    low, high = np.quantile(samples, [0.025, 0.975])
    return float(low), float(high)


def proc_bootstrap(y: np.ndarray, s: np.ndarray, n_resamples: int) -> tuple[float, float, float, float] | None:
    """(auc, low, high, seconds) from pROC, or None when Rscript/pROC is missing."""
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        data, script = Path(tmp) / "d.csv", Path(tmp) / "boot.R"
        np.savetxt(data, np.c_[y, s], delimiter=",", header="y,score", comments="", fmt=["%d", "%.17g"])
        script.write_text(R_BOOTSTRAP)
        proc = subprocess.run(["Rscript", str(script), str(data), str(n_resamples)], capture_output=True, text=True,
                              check=False)
    if proc.returncode != 0:
        print(f"pROC run failed: {proc.stderr.strip().splitlines()[-1:]}")
        return None
    area, low, high, seconds = map(float, proc.stdout.split())
    return area, low, high, seconds


def bootstrap_section(n: int, n_resamples: int, use_r: bool) -> None:
    y, s, _ = data(n, seed=2)
    start = time.perf_counter()
    ours = bootstrap_auc_ci(y, s, n_resamples=n_resamples, seed=0)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    former = sorted_bootstrap(y, s, n_resamples)
    t_former = time.perf_counter() - start
    sd = (delong_ci(y, s).high - delong_ci(y, s).auc) / norm.ppf(0.975)  # DeLong SE of the AUC
    mc_se = math.sqrt(0.025 * 0.975 / n_resamples) * sd / norm.pdf(norm.ppf(0.025))
    print(f"stratified bootstrap CI of the AUC, n = {n:,} ({int(y.sum()):,} cases), {n_resamples} resamples")
    print(f"  ours (O(n) per resample):   {t_ours:.3f} s  AUC {ours.estimate:.6f} ({ours.low:.6f}-{ours.high:.6f})")
    print(f"  former (re-rank, same draws): {t_former:.3f} s  ({former[0]:.6f}-{former[1]:.6f}); "
          f"speed-up {t_former / t_ours:.1f}x, largest bound difference {max(abs(former[0] - ours.low), abs(former[1] - ours.high)):.1e}")
    result = proc_bootstrap(y, s, n_resamples) if use_r else None
    if result is None:
        print("  pROC: not run (no Rscript with pROC on PATH, or --no-r)")
        return
    area, low, high, seconds = result
    print(f"  pROC ci.auc(bootstrap):     {seconds:.3f} s  AUC {area:.6f} ({low:.6f}-{high:.6f})")
    print(f"  ratio pROC/ours = {seconds / t_ours:.1f} (target >= 10); bound differences "
          f"{low - ours.low:+.5f}, {high - ours.high:+.5f} vs Monte Carlo SE of one bound {mc_se:.5f} "
          f"(SE of a difference {math.sqrt(2) * mc_se:.5f})")


if __name__ == "__main__":
    main()
