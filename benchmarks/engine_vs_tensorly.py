"""CoupledCP against TensorLy on one synthetic coupled problem, measured side by side.

Problem: a tensor 2000 x 64 x 100 and a matrix 2000 x 300 sharing a rank-8 sample factor,
1% Gaussian noise (relative to each block's RMS). Fitted at R = 8:

1. TensorLy's ``coupled_matrix_tensor_3d_factorization`` (numpy backend, its default SVD init and
   tol=1e-6 on the relative change of the loss) against ``CoupledCP(8, normalize=False,
   tol=1e-6)`` on CPU (unit weights on raw blocks, as TensorLy has no block weights), each to its
   own convergence. End-to-end time, time per iteration (TensorLy: run time less its two
   ``initialize_cp`` calls, timed inside the same run, over its iterations; ours: ``(T(full) -
   T(one sweep)) / (sweeps - 1)``, so initialization cancels) and the final loss ``||X - Xhat||^2 +
   ||M - Mhat||^2`` recomputed in float64 from each one's factors.
2. The tensor alone: ``tensorly.decomposition.parafac`` (pytorch backend, float32, random init,
   errors computed every iteration) against ``CoupledCP`` on the same tensor; time per
   iteration from two runs of different lengths with a tolerance too small to stop.

Both tools run with the same number of threads (``--threads``, default 1: the benchmark VM has 2
shared cores, where a second BLAS thread makes everything slower).

Last two lines::

    parafac_per_iter_speedup=<x>
    speedup_vs_tensorly=<end-to-end x> per_iter_speedup=<x> loss_ratio=<ours/theirs>

Goals: speedup_vs_tensorly >= 20, per_iter_speedup >= 10, loss_ratio <= 1.001,
parafac_per_iter_speedup >= 2.

Usage: python benchmarks/engine_vs_tensorly.py [--threads 1] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import numpy as np
import tensorly as tl
import torch
from tensorly.decomposition import _cmtf_als, coupled_matrix_tensor_3d_factorization, parafac
from tensorly.decomposition._cp import initialize_cp
from threadpoolctl import threadpool_limits

from peekwidgets.engine import CoupledCP

N, C, S, D, R = 2000, 64, 100, 300, 8


def problem(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The float32 tensor (N, C, S) and matrix (N, D) with planted rank-R factors and 1% noise."""
    rng = np.random.default_rng(seed)
    a, u, v, b = (rng.standard_normal((d, R)) for d in (N, C, S, D))
    blocks = [np.einsum("nr,cr,sr->ncs", a, u, v), a @ b.T]
    return tuple(
        (x + 0.01 * np.linalg.norm(x) / np.sqrt(x.size) * rng.standard_normal(x.shape))
        .astype(np.float32)
        for x in blocks
    )


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def per_iter(t_long, n_long, t_short, n_short) -> float:
    return (t_long - t_short) / max(n_long - n_short, 1)


def loss(x, m, weights, a, u, v, b) -> float:
    """``||X - [[w; A, U, V]]||^2 + ||M - A diag(w) B^T||^2`` in float64."""
    xhat = np.einsum("r,nr,cr,sr->ncs", weights, a, u, v)
    return float(np.sum((x - xhat) ** 2) + np.sum((m - (a * weights) @ b.T) ** 2))


def vs_coupled(x, m):
    x64, m64 = x.astype(np.float64), m.astype(np.float64)
    tl.set_backend("numpy")
    init_time = []

    def timed_init(*args, **kwargs):  # TensorLy's own initialization, timed inside its run
        t, out = timed(lambda: initialize_cp(*args, **kwargs))
        init_time.append(t)
        return out

    with mock.patch.object(_cmtf_als, "initialize_cp", timed_init):
        t_tl, (cp_x, cp_m, errors) = timed(
            lambda: coupled_matrix_tensor_3d_factorization(x64, m64, R))
    n_tl = len(errors) + 1  # the converged iteration is not appended
    tl_per_iter = (t_tl - sum(init_time)) / n_tl
    (wx, (a, u, v)), (wm, (_, b)) = cp_x, cp_m
    assert np.all(wx == 1) and np.all(wm == 1)  # unnormalized factors, unit weights
    loss_tl = loss(x64, m64, np.ones(R), a, u, v, b)

    blocks = {"tensor": torch.from_numpy(x), "matrix": torch.from_numpy(m)}
    params = dict(rank=R, normalize=False, tol=1e-6, max_iter=500, random_state=0)
    t_us, model = timed(lambda: CoupledCP(**params).fit(blocks))
    t_us1, _ = timed(lambda: CoupledCP(**{**params, "max_iter": 1}).fit(blocks))
    (u, v), (b,) = model.factors_["tensor"], model.factors_["matrix"]
    loss_us = loss(x64, m64, model.weights_, model.A_, u, v, b)
    us_per_iter = per_iter(t_us, model.n_iter_, t_us1, 1)
    print(f"tensorly cmtf: {t_tl:8.2f} s end to end ({sum(init_time):.2f} s init), {n_tl:4d} "
          f"iterations, {tl_per_iter * 1e3:8.1f} ms/iter, loss {loss_tl:.6f}")
    print(f"CoupledCP    : {t_us:8.2f} s end to end ({t_us - model.n_iter_ * us_per_iter:.2f} s "
          f"init + final pass), {model.n_iter_:4d} iterations, {us_per_iter * 1e3:8.1f} ms/iter, "
          f"loss {loss_us:.6f}")
    return t_tl / t_us, tl_per_iter / us_per_iter, loss_us / loss_tl


def vs_parafac(x, short=5, long=25):
    tl.set_backend("pytorch")
    xt = torch.from_numpy(x)

    def theirs(k):
        return timed(lambda: parafac(xt, R, n_iter_max=k, init="random", tol=1e-12,
                                     random_state=0, return_errors=True))

    def ours(k):
        return timed(lambda: CoupledCP(R, init="random", normalize=False, tol=1e-12,
                                       max_iter=k, random_state=0).fit({"tensor": xt}))

    (t_s, (_, e_s)), (t_l, (_, e_l)) = theirs(short), theirs(long)
    (u_s, m_s), (u_l, m_l) = ours(short), ours(long)
    tl.set_backend("numpy")
    theirs_ms = per_iter(t_l, len(e_l), t_s, len(e_s)) * 1e3
    ours_ms = per_iter(u_l, m_l.n_iter_, u_s, m_s.n_iter_) * 1e3
    print(f"tensorly parafac (pytorch, float32): {theirs_ms:8.1f} ms/iter; "
          f"CoupledCP tensor alone: {ours_ms:8.1f} ms/iter")
    return theirs_ms / ours_ms


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, m = problem(args.seed)
    print(f"tensor {x.shape}, matrix {m.shape}, rank {R}, 1% noise, {args.threads} thread(s)")
    with threadpool_limits(args.threads):
        speedup, iter_speedup, ratio = vs_coupled(x, m)
        parafac_speedup = vs_parafac(x)
    print(f"parafac_per_iter_speedup={parafac_speedup:.2f}")
    print(f"speedup_vs_tensorly={speedup:.1f} per_iter_speedup={iter_speedup:.1f} "
          f"loss_ratio={ratio:.6f}")


if __name__ == "__main__":
    main()
