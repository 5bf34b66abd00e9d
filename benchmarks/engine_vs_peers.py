"""CoupledCP against its peers per sweep, its sweep against this machine's peak, and
rank_profile on wide blocks against a plain read of them.

Problem (as in issue 3): a tensor 2000 x 64 x 100 and a matrix 2000 x 300 sharing a rank-8
sample factor, 1% Gaussian noise, fitted at R = 8 on raw blocks (``normalize=False``).

Rows, each peer against ``CoupledCP`` on the same data from the same initial factors:

1. TensorLy ``coupled_matrix_tensor_3d_factorization`` on its numpy backend (float64) and on
   its pytorch backend (float32), its SVD initialization computed once outside the timings
   (``initialize_cp`` patched to hand out copies), against ``CoupledCP`` started from the
   same factors (float32);
2. ``tensorly.decomposition.parafac`` (pytorch, float32, ``tol=0``: no error tracking) on the
   tensor alone;
3. ``tensorly.decomposition.non_negative_parafac_hals`` (pytorch, float32, ``tol=0``) on a
   nonnegative version of the tensor, against ``nonnegative=True``;
4. MatCoupLy ``cmf_aoadmm`` without constraints (``tol=0, absolute_tol=0``: no loss tracking)
   on the same data as two matrix blocks (the tensor unfolded), in float64 and in float32,
   against ``CoupledCP`` in the same dtype.

Also once end to end, TensorLy's CMTF (its SVD initialization included, tol 1e-6) against
``CoupledCP`` as shipped, each to its own convergence (issue 3's goal: at least 20x).

Per-iteration times come from fixed counts (``SHORT`` and ``LONG`` sweeps; TensorLy's CMTF,
about 1 s an iteration here, ``CMTF_COUNTS``), ``CoupledCP`` with a negative ``tol`` so that it
never stops early: ``(median T(long) - median T(short)) / (long - short)`` over interleaved
repeats, after one warm-up run of each, imports outside. ``CoupledCP`` runs as shipped
(acceleration on; a try that is not kept costs a pass that no sweep count shows) and, for the
peak, without acceleration ("plain"). Losses ``sum ||X_b - Xhat_b||^2`` are recomputed in
float64 from each one's factors after the same number of iterations.

Kernels and peak (the CMTF problem, the engine's batch size): the sweep's two products
(``X F`` and the accumulated ``A^T X``) through torch and through numpy, float32 and float64,
over all rows (the data streamed from memory, as in a sweep) and, for torch, repeated on the
first batch alone ("warm": the batch in cache, what the products reach without the memory);
this machine's peak float32 matrix throughput (a 2048^3 product, the faster of torch and
numpy) and read bandwidth (the blocks read once, the faster of torch and numpy), measured in
turns with plain sweeps (medians, so that load on the machine weighs on both alike).
``peak_fraction`` is the roofline bound of one plain sweep, ``max(flops / peak, bytes /
bandwidth)`` (its two products, the data read once), over the measured plain sweep.

rank_profile: ``rank_profile(blocks, max_rank=15)`` on resnet18-shaped synthetic blocks at
224 x 224 (input 3 x 50176, layer1-4 64 x 3136, 128 x 784, 256 x 196, 512 x 49, fc 1000: 2.1 MB
a sample) with N = 1000 (``--profile-n``), against a plain read of the blocks.

Times are process CPU time by default (``--wall`` for wall time): on the shared 2-core VM it
is disturbed far less by other jobs; every library runs with ``--threads`` (default 1).

Last line::

    cmtf_per_sweep=<x> parafac_per_sweep=<x> hals_per_sweep=<x> matcouply64_per_sweep=<x>
    matcouply32_per_sweep=<x> peak_fraction=<f> profile_wide_s_per_read=<r>

(one line): each ``*_per_sweep`` is the peer's time per iteration over ``CoupledCP``'s per
sweep (``cmtf``: the lower of TensorLy's two backends). Goals: cmtf >= 20, parafac and hals
>= 3, matcouply64 >= 2, matcouply32 >= 3, peak_fraction >= 0.5, all at equal or lower loss
(the ``loss ratio`` columns, ours / theirs, at most 1 + 1e-6).

Usage: env -u OPENBLAS_CORETYPE python benchmarks/engine_vs_peers.py [--repeats 5]
       [--threads 1] [--wall] [--profile-n 1000] [--skip-profile] [--only peak]

``--only peak`` runs the kernels and the peak alone (last line ``peak_fraction=<f>``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from functools import partial
from unittest import mock

import numpy as np
import tensorly as tl
import torch
from tensorly.cp_tensor import CPTensor
from tensorly.decomposition import (
    _cmtf_als,
    coupled_matrix_tensor_3d_factorization,
    non_negative_parafac_hals,
    parafac,
)
from tensorly.decomposition._cp import initialize_cp
from threadpoolctl import threadpool_info, threadpool_limits

from peekwidgets.analysis import rank_profile
from peekwidgets.blocks import Block, Blocks
from peekwidgets.engine import CoupledCP
from peekwidgets.engine.batches import sweep_rows

try:
    from matcouply.decomposition import cmf_aoadmm
except ImportError:  # reported, the other rows still run
    cmf_aoadmm = None

N, C, S, D, R = 2000, 64, 100, 300, 8
SHORT, LONG = 10, 60
CMTF_COUNTS = (5, 20)
RESNET18 = {"input": (3, 224 * 224), "layer1": (64, 56 * 56), "layer2": (128, 28 * 28),
            "layer3": (256, 14 * 14), "layer4": (512, 7 * 7), "fc": (1000,)}
clock = time.process_time


def planted(seed: int, nonnegative: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The float32 tensor (N, C, S) and matrix (N, D) of rank R plus 1% noise (clipped at 0
    when ``nonnegative``, from uniform factors)."""
    rng = np.random.default_rng(seed)
    draw = rng.random if nonnegative else rng.standard_normal
    a, u, v, b = (draw((d, R)) for d in (N, C, S, D))
    out = []
    for x in (np.einsum("nr,cr,sr->ncs", a, u, v), a @ b.T):
        x = x + 0.01 * np.linalg.norm(x) / np.sqrt(x.size) * rng.standard_normal(x.shape)
        out.append((np.maximum(x, 0) if nonnegative else x).astype(np.float32))
    return tuple(out)


def timed(fn):
    start = clock()
    out = fn()
    return clock() - start, out


def per_iteration(runs: dict, counts, repeats: int) -> dict:
    """``{label: (seconds per iteration, result of the long run)}`` for ``runs[label](k)``,
    k in ``counts``: one warm-up run each, then repeats with the labels and counts
    interleaved (their order rotates), medians."""
    short, long = counts
    for fn in runs.values():
        fn(short)
    times = {label: {short: [], long: []} for label in runs}
    results = {}
    labels = list(runs)
    for rep in range(repeats):
        for label in labels[rep % len(labels):] + labels[: rep % len(labels)]:
            for k in (short, long) if rep % 2 == 0 else (long, short):
                t, out = timed(partial(runs[label], k))
                times[label][k].append(t)
                if k == long:
                    results[label] = out
    return {label: ((statistics.median(t[long]) - statistics.median(t[short])) / (long - short),
                    results[label]) for label, t in times.items()}


def loss(blocks, weights, a, factors) -> float:
    """``sum_b ||X_b - Xhat_b||^2`` in float64; ``factors[b]`` is ``[B]`` or ``[U, V]``."""
    total = 0.0
    for x, fs in zip(blocks, factors):
        x = np.asarray(x, dtype=np.float64)
        fs = [np.asarray(f, dtype=np.float64) for f in fs]
        aw = np.asarray(a, dtype=np.float64) * weights
        xhat = aw @ fs[0].T if len(fs) == 1 else np.einsum("nr,cr,sr->ncs", aw, *fs)
        total += float(np.sum((x - xhat) ** 2))
    return total


def ours_loss(model, blocks) -> float:
    factors = [model.factors_[n] for n in model.block_names_]
    return loss(blocks, model.weights_, model.A_, factors)


def ours(blocks: dict, init: dict, **params):
    """``k -> CoupledCP(...).fit`` running exactly k sweeps from ``init``."""
    def run(k):
        return CoupledCP(R, init=init, normalize=False, tol=-1, max_iter=k, **params).fit(blocks)
    return run


def row(name: str, theirs: tuple, mine: tuple, loss_ratio: float) -> float:
    ratio = theirs[0] / mine[0]
    print(f"{name:<44} {theirs[0] * 1e3:9.1f} ms {mine[0] * 1e3:9.1f} ms {ratio:7.2f}x "
          f"{loss_ratio:11.6f}")
    return ratio


# ------------------------------------------------------------------------------ rows
def svd_starts(x, m):
    """TensorLy's SVD initializations of the tensor and of the coupled unfolding, and the
    ``CoupledCP`` initial factors made from them."""
    x64, m64 = x.astype(np.float64), m.astype(np.float64)
    tl.set_backend("numpy")
    init_tensor = initialize_cp(x64, R, init="svd")
    init_coupled = initialize_cp(np.concatenate([tl.unfold(x64, 0), m64], axis=1), R,
                                 init="svd")
    a0 = init_coupled.factors[0]
    init = {"tensor": [init_tensor.factors[1], init_tensor.factors[2]],
            "matrix": [np.linalg.lstsq(a0, m64, rcond=None)[0].T]}
    return init_tensor, init_coupled, init


def vs_cmtf(x, m, repeats):
    init_tensor, init_coupled, init = svd_starts(x, m)

    def tensorly(backend, dtype):
        def run(k):
            tl.set_backend(backend)
            copies = iter([CPTensor((tl.tensor(cp.weights, dtype=getattr(tl, dtype)),
                                     [tl.tensor(f, dtype=getattr(tl, dtype)) for f in cp.factors]))
                           for cp in (init_tensor, init_coupled)])
            xt, mt = tl.tensor(x, dtype=getattr(tl, dtype)), tl.tensor(m, dtype=getattr(tl, dtype))
            with mock.patch.object(_cmtf_als, "initialize_cp", lambda *a, **kw: next(copies)):
                out = coupled_matrix_tensor_3d_factorization(xt, mt, R, n_iter_max=k, tol=-1)
            tl.set_backend("numpy")
            return out
        return run

    blocks = {"tensor": torch.from_numpy(x), "matrix": torch.from_numpy(m)}
    theirs = per_iteration({"numpy": tensorly("numpy", "float64"),
                            "pytorch": tensorly("pytorch", "float32")}, CMTF_COUNTS, repeats)
    mine = per_iteration({"ours": ours(blocks, init),
                          "plain": ours(blocks, init, extrapolate=False)}, (SHORT, LONG),
                         repeats)
    at = ours(blocks, init)(CMTF_COUNTS[1])  # losses after the same number of iterations
    ratios = []
    for label in ("numpy", "pytorch"):
        (cp_x, cp_m, _) = theirs[label][1]
        a, u, v = (tl.to_numpy(f) for f in cp_x.factors)
        b = tl.to_numpy(cp_m.factors[1])
        ratio = ours_loss(at, [x, m]) / loss([x, m], np.ones(R), a, [[u, v], [b]])
        ratios.append(row(f"TensorLy CMTF, {label}", theirs[label], mine["ours"], ratio))
    return min(ratios), mine, init


def end_to_end(x, m):
    """TensorLy's CMTF (numpy, its SVD init and tol 1e-6) against ``CoupledCP`` (its own init,
    tol 1e-6), each to its own convergence, once: seconds and the loss ratio."""
    tl.set_backend("numpy")
    x64, m64 = x.astype(np.float64), m.astype(np.float64)
    t_theirs, (cp_x, cp_m, errors) = timed(
        lambda: coupled_matrix_tensor_3d_factorization(x64, m64, R))
    blocks = {"tensor": torch.from_numpy(x), "matrix": torch.from_numpy(m)}
    t_ours, model = timed(lambda: CoupledCP(R, normalize=False, random_state=0).fit(blocks))
    a, u, v = cp_x.factors
    ratio = ours_loss(model, [x, m]) / loss([x, m], np.ones(R), a, [[u, v], [cp_m.factors[1]]])
    print(f"end to end, TensorLy CMTF numpy against CoupledCP, each to its convergence: "
          f"{t_theirs:.1f} s ({len(errors) + 1} iterations) against {t_ours:.2f} s "
          f"({model.n_iter_} sweeps): {t_theirs / t_ours:.0f}x, loss ratio {ratio:.6f}")


def vs_parafac(x, repeats, nonnegative):
    tl.set_backend("pytorch")
    rng = np.random.default_rng(1)
    f0 = [rng.random((d, R)) for d in x.shape]
    xt = torch.from_numpy(x)
    start = CPTensor((torch.ones(R), [torch.tensor(f, dtype=torch.float32) for f in f0]))
    method = non_negative_parafac_hals if nonnegative else parafac

    def theirs(k):
        return method(xt, R, n_iter_max=k, init=start.cp_copy(), tol=0)

    runs = {"theirs": theirs,
            "ours": ours({"tensor": xt}, {"tensor": f0[1:]}, nonnegative=nonnegative)}
    out = per_iteration(runs, (SHORT, LONG), repeats)
    tl.set_backend("numpy")
    weights, (a, u, v) = out["theirs"][1]
    ratio = ours_loss(out["ours"][1], [x]) / loss([x], tl.to_numpy(weights), tl.to_numpy(a),
                                                  [[tl.to_numpy(u), tl.to_numpy(v)]])
    name = "TensorLy non_negative_parafac_hals, float32" if nonnegative \
        else "TensorLy parafac (tol=0), pytorch float32"
    return row(name, out["theirs"], out["ours"], ratio)


def vs_matcouply(x, m, repeats, dtype):
    tl.set_backend("numpy")
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    mats = [x.reshape(N, -1).astype(np_dtype), m.astype(np_dtype)]
    rng = np.random.default_rng(2)
    b0 = [rng.random((mat.shape[1], R)) for mat in mats]
    gram = sum(b.T @ b for b in b0)
    c0 = sum(mat.astype(np.float64) @ b for mat, b in zip(mats, b0)) @ np.linalg.inv(gram)
    start = (None, (np.ones((2, R), np_dtype), [b.astype(np_dtype) for b in b0],
                    c0.astype(np_dtype)))

    def theirs(k):
        init = (None, (start[1][0].copy(), [b.copy() for b in start[1][1]], start[1][2].copy()))
        return cmf_aoadmm([mat.T for mat in mats], R, init=init, n_iter_max=k, tol=0,
                          absolute_tol=0)

    blocks = {"unfolded": torch.from_numpy(mats[0]), "matrix": torch.from_numpy(mats[1])}
    runs = {"theirs": theirs,
            "ours": ours(blocks, {"unfolded": [b0[0]], "matrix": [b0[1]]}, dtype=dtype)}
    out = per_iteration(runs, (SHORT, LONG), repeats)
    _, (a, b_is, c) = out["theirs"][1]
    theirs_loss = sum(float(np.sum((mat.astype(np.float64) - (c * w) @ b.T) ** 2))
                      for mat, w, b in zip(mats, a, b_is))
    ratio = ours_loss(out["ours"][1], mats) / theirs_loss
    bits = 64 if dtype == torch.float64 else 32
    return row(f"MatCoupLy cmf_aoadmm, float{bits}", out["theirs"], out["ours"], ratio)


# ------------------------------------------------------------------------------ kernels, peak
def best(fn, repeats=5) -> float:
    fn()
    return min(timed(fn)[0] for _ in range(repeats))


def batched(body, xs, fs, a, accs, rows, warm=False) -> None:
    """``body(rows of x, f, rows of a, acc)`` over all sample batches of every block (with
    ``warm``, as many times on the first batch: it stays in cache)."""
    for s in range(0, N, rows):
        s = 0 if warm else s
        for t, f, acc in zip(xs, fs, accs):
            body(t[s:s + rows], f, a[s:s + rows], acc)


def kernels(x, m):
    """The sweep's products through torch and through numpy, float32 and float64."""
    print("\nthe sweep's products at the engine's batch size (GFLOP/s)")
    print(f"{'dtype':<8} {'rows':>5} {'X F torch':>10} {'X F numpy':>10} {'A^T X torch':>12} "
          f"{'A^T X numpy':>12} {'X F warm':>9} {'A^T X warm':>11}")
    for dtype in (torch.float32, torch.float64):
        xs = [torch.from_numpy(x.reshape(N, -1)).to(dtype), torch.from_numpy(m).to(dtype)]
        rows = sweep_rows(Blocks([Block(str(i), t) for i, t in enumerate(xs)]), R, dtype=dtype)
        fs = [torch.rand(R, t.shape[1], dtype=dtype).T for t in xs]  # F^T contiguous
        a = torch.rand(R, N, dtype=dtype).T  # A^T contiguous
        accs = [torch.zeros(R, t.shape[1], dtype=dtype) for t in xs]
        flops = 2 * N * sum(t.shape[1] for t in xs) * R

        x_f = lambda t, f, a, acc: torch.mm(f.T, t.T)  # noqa: E731 (the engine's F^T X^T)
        a_x = lambda t, f, a, acc: torch.addmm(acc, a.T, t, out=acc)  # noqa: E731
        runs = [(x_f, False), (lambda t, f, a, acc: t.numpy() @ f.numpy(), False), (a_x, False),
                (lambda t, f, a, acc: np.add(acc.numpy(), a.numpy().T @ t.numpy(),
                                             out=acc.numpy()), False), (x_f, True), (a_x, True)]
        rates = [flops / best(partial(batched, body, xs, fs, a, accs, rows, warm)) / 1e9
                 for body, warm in runs]
        bits = str(dtype).split(".")[1]
        widths = (10, 10, 12, 12, 9, 11)
        print(f"{bits:<8} {rows:5d} " + " ".join(f"{r:{w}.1f}" for r, w in zip(rates, widths)))


def peak(x, m, init, repeats: int) -> float:
    """The plain sweep against this machine's peak, measured in turns (medians)."""
    blocks = {"tensor": torch.from_numpy(x), "matrix": torch.from_numpy(m)}
    fit = ours(blocks, init, extrapolate=False)
    big = torch.rand(2048, 2048)
    xs = [torch.from_numpy(x), torch.from_numpy(m)]
    steps = {"sweeps short": partial(fit, SHORT), "sweeps long": partial(fit, LONG),
             "gemm torch": lambda: big @ big, "gemm numpy": lambda: big.numpy() @ big.numpy(),
             "read torch": lambda: [t.sum() for t in xs],
             "read numpy": lambda: [t.numpy().sum() for t in xs]}
    times = {k: [] for k in steps}
    for fn in steps.values():
        fn()
    for _ in range(max(5, repeats)):
        for k, fn in steps.items():
            times[k].append(timed(fn)[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    sweep = (med["sweeps long"] - med["sweeps short"]) / (LONG - SHORT)
    gemm, data = 2 * 2048**3, sum(t.numel() * 4 for t in xs)
    peak_flops = max(gemm / med["gemm torch"], gemm / med["gemm numpy"])
    bandwidth = max(data / med["read torch"], data / med["read numpy"])
    best_flops = gemm / min(times["gemm torch"] + times["gemm numpy"])
    sweep_flops = 2 * 2 * N * (C * S + D) * R
    bound = max(sweep_flops / peak_flops, data / bandwidth)
    blas = [f"{p['internal_api']} {p.get('architecture', '')}" for p in threadpool_info()
            if p["user_api"] == "blas"]
    print(f"\npeak float32 GEMM 2048^3 (medians): torch {gemm / med['gemm torch'] / 1e9:.1f}, "
          f"numpy {gemm / med['gemm numpy'] / 1e9:.1f} GFLOP/s, best run {best_flops / 1e9:.1f} "
          f"(numpy BLAS {', '.join(sorted(set(blas)))}; OPENBLAS_CORETYPE "
          f"{os.environ.get('OPENBLAS_CORETYPE', 'unset')})")
    print(f"read of the blocks ({data / 2**20:.0f} MiB): torch {data / med['read torch'] / 1e9:.1f}"
          f", numpy {data / med['read numpy'] / 1e9:.1f} GB/s")
    print(f"plain sweep: {sweep_flops / 1e9:.2f} GFLOP and {data / 2**20:.0f} MiB read once -> "
          f"bound {bound * 1e3:.2f} ms (compute {sweep_flops / peak_flops * 1e3:.2f} ms, memory "
          f"{data / bandwidth * 1e3:.2f} ms); measured in turns with them {sweep * 1e3:.2f} ms "
          f"({sweep_flops / sweep / 1e9:.1f} GFLOP/s)")
    return bound / sweep


# ------------------------------------------------------------------------------ rank_profile
def wide_blocks(n: int) -> Blocks:
    """resnet18-shaped blocks at 224 x 224: a shared rank-20 pattern plus uniform noise."""
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(n, 20, generator=gen) - 0.5
    out = []
    for name, shape in RESNET18.items():
        d = int(np.prod(shape))
        x = torch.rand(n, d, generator=gen).sub_(0.5)
        w = torch.rand(20, d, generator=gen).sub_(0.5)
        for s in range(0, n, 64):
            x[s:s + 64].addmm_(a[s:s + 64], w)
        out.append(Block(name, x.view(n, *shape)))
    blocks = Blocks(out)
    for b in blocks:
        b.norm()
    return blocks


def vs_read(n: int, repeats: int) -> float:
    blocks = wide_blocks(n)
    size = sum(b.data.numel() * 4 for b in blocks)

    def read():
        return [float(b.data.sum()) for b in blocks]

    def profile():
        return rank_profile(blocks, max_rank=15, progress=False)

    read()
    t_read, t_profile = [], []
    for _ in range(repeats):
        t_read.append(timed(read)[0])
        t, result = timed(profile)
        t_profile.append(t)
    ratio = statistics.median(t_profile) / statistics.median(t_read)
    print(f"\nrank_profile(max_rank=15), resnet18-shaped blocks, N={n} "
          f"({size / 2**30:.2f} GiB, {size / n / 1e6:.1f} MB a sample): "
          f"{statistics.median(t_profile):.2f} s against {statistics.median(t_read):.3f} s for a "
          f"plain read ({ratio:.1f} reads; estimated rank {result.estimated_rank})")
    return ratio


def main():
    global clock
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--wall", action="store_true", help="wall time instead of CPU time")
    parser.add_argument("--profile-n", type=int, default=1000)
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["peak"],
                        help="peak: only the kernels and the plain sweep against the peak")
    args = parser.parse_args()
    clock = time.perf_counter if args.wall else time.process_time
    warnings.simplefilter("ignore")  # fixed counts warn of non-convergence
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    print(f"tensor {N}x{C}x{S} + matrix {N}x{D}, rank {R}, 1% noise; {args.threads} thread(s), "
          f"{'wall' if args.wall else 'CPU'} time, {args.repeats} repeats; load average "
          f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    x, m = planted(args.seed)
    if args.only == "peak":
        with threadpool_limits(args.threads):
            kernels(x, m)
            fraction = peak(x, m, svd_starts(x, m)[2], args.repeats)
        load = os.getloadavg()
        print(f"\nload average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
        print(f"peak_fraction={fraction:.2f}")
        return
    print(f"\n{'peer, same problem':<44} {'peer/iter':>12} {'ours/sweep':>12} {'ratio':>8} "
          f"{'loss ratio':>11}")
    with threadpool_limits(args.threads):
        cmtf, mine, init = vs_cmtf(x, m, args.repeats)
        end_to_end(x, m)
        parafac_ratio = vs_parafac(x, args.repeats, nonnegative=False)
        hals_ratio = vs_parafac(planted(args.seed, nonnegative=True)[0], args.repeats,
                                nonnegative=True)
        if cmf_aoadmm is None:
            print("MatCoupLy is not installed (pip install matcouply): its rows are skipped")
            mc64 = mc32 = float("nan")
        else:
            mc64 = vs_matcouply(x, m, args.repeats, torch.float64)
            mc32 = vs_matcouply(x, m, args.repeats, torch.float32)
        print(f"CoupledCP on the CMTF problem: {mine['ours'][0] * 1e3:.1f} ms a sweep as shipped "
              f"(accelerated), {mine['plain'][0] * 1e3:.1f} ms plain")
        kernels(x, m)
        fraction = peak(x, m, init, args.repeats)
        print(f"peak_fraction {fraction:.2f}")
        profile = float("nan") if args.skip_profile else vs_read(args.profile_n,
                                                                  max(2, args.repeats - 1))
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    print(f"cmtf_per_sweep={cmtf:.1f} parafac_per_sweep={parafac_ratio:.2f} "
          f"hals_per_sweep={hals_ratio:.2f} matcouply64_per_sweep={mc64:.2f} "
          f"matcouply32_per_sweep={mc32:.2f} peak_fraction={fraction:.2f} "
          f"profile_wide_s_per_read={profile:.1f}")


if __name__ == "__main__":
    main()
