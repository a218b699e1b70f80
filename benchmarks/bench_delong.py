"""Fast DeLong (Sun & Xu midranks, O(n log n)) on 100,000 patients; target under 1 s each.

Prints, measured in one run:
1. seconds for ``delong_ci`` and the paired ``delong_test`` on ``--n`` patients (default 100,000,
   scores with ties), best of ``--repeat`` runs, and the ratio target/actual (>= 1 means met);
2. on a smaller ``--naive-n`` (default 4,000) the same paired test by the quadratic definition
   of DeLong et al. (1988) (every case-control pair), the speed-up of the fast algorithm there,
   and the largest difference between the two results (should be ~1e-15).

Usage: .venv/bin/python benchmarks/bench_delong.py [--n 100000] [--naive-n 4000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy.stats import norm

from osteomet.evaluation import delong_ci, delong_test


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


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


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


if __name__ == "__main__":
    main()
