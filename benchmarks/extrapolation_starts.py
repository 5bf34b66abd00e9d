"""Extrapolation (``CoupledCP(extrapolate=True)``, the default) against plain ALS, from the SVD
start and from random starts.

Planted coupled problems: a matrix block (N x 40) and a tensor block (N x 10 x 20) sharing A of
rank R, Gaussian factors, N = 400, Gaussian noise; four problems (their seed, R and noise are
listed). Each is fitted from the SVD start and from 8 random starts (``random_state`` 0-7) with
the default stopping rule (tol 1e-6), once plain and once accelerated. A fit ends "bad" when its
loss is more than 1% above the lowest loss any fit of that problem reached (a local minimum, or a
stop in a swamp). The last line is ``random_sweeps_ratio=<median sweeps accelerated / plain,
random starts> random_bad_plain=<bad ends> random_bad_extrapolated=<bad ends>
svd_sweeps_ratio=<...> svd_bad_plain=... svd_bad_extrapolated=...``.

Usage: python benchmarks/extrapolation_starts.py
"""

from __future__ import annotations

import warnings

import numpy as np

from peekwidgets.engine import CoupledCP

PROBLEMS = [(4, 5, 0.05), (5, 4, 0.1), (6, 6, 0.02), (7, 3, 0.05)]  # (seed, rank, noise)
STARTS = 8


def planted(seed: int, rank: int, noise: float, n: int = 400) -> dict:
    """``{"X": (n, 40), "T": (n, 10, 20)}`` sharing a Gaussian A of ``rank``, with noise."""
    rng = np.random.default_rng(seed)
    a, b, u, v = (rng.standard_normal((d, rank)) for d in (n, 40, 10, 20))
    blocks = {"X": a @ b.T, "T": np.einsum("nr,cr,pr->ncp", a, u, v)}
    return {k: (x + noise * np.linalg.norm(x) / np.sqrt(x.size)
                * rng.standard_normal(x.shape)).astype(np.float32) for k, x in blocks.items()}


def main():
    warnings.simplefilter("ignore")  # the ConvergenceWarnings of capped random starts
    totals = {(init, ex): [[], 0] for init in ("random", "svd") for ex in (False, True)}
    for seed, rank, noise in PROBLEMS:
        data = planted(seed, rank, noise)
        fits = {}
        for init, starts in (("random", range(STARTS)), ("svd", [0])):
            for ex in (False, True):
                fits[init, ex] = [CoupledCP(rank, init=init, random_state=s, extrapolate=ex)
                                  .fit(data) for s in starts]
        best = min(m.loss_ for ms in fits.values() for m in ms)
        for (init, ex), ms in fits.items():
            sweeps = [m.n_iter_ for m in ms]
            bad = sum(m.loss_ > 1.01 * best for m in ms)
            totals[init, ex][0] += sweeps
            totals[init, ex][1] += bad
            print(f"problem seed {seed} R={rank} noise {noise:<4g} {init:>6} start(s), "
                  f"{'accelerated' if ex else 'plain':>11}: median sweeps {np.median(sweeps):5.0f}"
                  f" (max {max(sweeps):4d}), bad ends {bad}/{len(ms)}")
    last = []
    for init in ("random", "svd"):
        ratio = np.median(totals[init, True][0]) / np.median(totals[init, False][0])
        print(f"{init} starts, all problems: median sweeps accelerated / plain {ratio:.2f}; bad "
              f"ends plain {totals[init, False][1]}, accelerated {totals[init, True][1]} of "
              f"{len(totals[init, True][0])}")
        last += [f"{init}_sweeps_ratio={ratio:.2f}", f"{init}_bad_plain={totals[init, False][1]}",
                 f"{init}_bad_extrapolated={totals[init, True][1]}"]
    print(" ".join(last))


if __name__ == "__main__":
    main()
