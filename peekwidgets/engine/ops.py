"""Per-block kernels of the coupled CP engine: contractions, Gram matrices, factor updates.

A block's factors are ``[B]`` (matrix block, ``B : (n_features, rank)``) or ``[U, V]`` (tensor
block, ``U : (n_channels, rank)``, ``V : (n_positions, rank)``); the block's model is
``sum_r a_r (x) b_r`` or ``sum_r a_r (x) u_r (x) v_r`` with ``a_r`` the columns of the shared
sample factor ``A : (n_samples, rank)``.

Data-sized work (a batch of rows times factors) is plain matrix products of the batch's
unfolding (a view) with a factor-sized matrix (:func:`khatri_rao_t`) in the data dtype; no
unfolding is ever copied. They go through torch, the faster path for them on the Intel dev VM
(``benchmarks/engine_vs_peers.py``, one thread, the engine's cache-sized batches): ``X F``
47 GFLOP/s through torch (MKL) against 34 through numpy (OpenBLAS, AVX-512 kernels) in
float32, 30 against 27 in float64; the accumulated ``A^T X`` 75 against 33, and 22 against 13
(numpy's ``matmul`` cannot accumulate in place); even a large square float32 product ran at
164 against 156 GFLOP/s. Both run with the small operand ``(rank, n)`` or ``(rank,
features)`` contiguous (``F^T X^T`` and ``(A^T) X``): on the AMD EPYC dev machine MKL ran
``X F`` with ``F`` stored ``(features, rank)`` at 10-12 GFLOP/s, ``F^T X^T`` at 24-53.
Factor-sized work (Gram matrices, R x R solves, block factor
updates from the compressed block ``Y = A^T X_(0)``) runs in float64, in numpy on the host for
CPU fits: tiny BLAS calls through torch pay a thread wake-up each, which dominates small
problems on CPU. On a GPU the same functions take float64 tensors on the device, so a sweep
copies no factor-sized data to the host (the R x R inverses of :func:`spd_inverse` aside).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: Ridge added to the diagonal of a Gram matrix, relative to its mean diagonal.
RIDGE = 1e-12
#: Inner HALS iterations on the factor-sized problems (cheap: no data is read).
HALS_INNER = 10


def khatri_rao_t(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The transposed :func:`khatri_rao`, ``(rank, prod(mode_shape))``, contiguous.

    The layout the sweep's products want: ``F^T X^T`` (``torch.mm(f_t, x.T)``) runs 2-3x
    faster than ``X F`` with ``F`` stored ``(features, rank)`` (MKL, one thread, the AMD EPYC
    dev machine; ``benchmarks/engine_vs_peers.py``). Formed in the factors' dtype, one write
    of ``rank * prod(mode_shape)`` elements.
    """
    if len(factors) == 1:
        return factors[0].T.contiguous()
    u, v = factors
    u_t, v_t = u.T.contiguous(), v.T.contiguous()  # else the product takes their strides
    return (u_t[:, :, None] * v_t[:, None, :]).reshape(u.shape[1], -1)


def khatri_rao(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The factor that multiplies a block's unfolding ``X_(0) : (n, prod(mode_shape))``.

    ``[B]`` gives ``B``; ``[U, V]`` gives their Khatri-Rao product ``(C * S, rank)``, row
    ``c * S + s`` holding ``U[c] * V[s]`` (a transposed view of :func:`khatri_rao_t`).
    Factor-sized (as large as ``A^T X_(0)``), so a tensor block's products are single matrix
    products, without intermediates.
    """
    return factors[0] if len(factors) == 1 else khatri_rao_t(factors).T


def mttkrp_rows(x: torch.Tensor, factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sample-mode MTTKRP of a batch, ``(n, rank)``.

    ``x : (n, D)`` with ``factors = [B]`` gives ``x @ B``; ``x : (n, C, S)`` with ``[U, V]``
    gives ``sum_{c,s} x[n, c, s] U[c, r] V[s, r]``.
    """
    return x.reshape(x.shape[0], -1) @ khatri_rao(factors)


def residual_norms(x: torch.Tensor, a: torch.Tensor, f_t: torch.Tensor, scale: float,
                   work: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Row norms ``||scale * x_i - a_i f_t||`` of a batch's explicit residual, into ``out``.

    ``x : (n, D)`` (a batch of an unfolded block), ``a : (n, rank)``, ``f_t : (rank, D)`` (the
    transposed :func:`khatri_rao` of the block factors, contiguous: BLAS runs the product with
    a transposed view 1.3x slower), ``out : (n,)`` in x's dtype. The residual is formed in row
    chunks in ``work``, a flat buffer of at least ``D`` elements of x's dtype, so it stays in
    cache and nothing is allocated per batch. The product scales ``x`` (``beta`` of the
    GEMM), so raw values far beyond the square root of the dtype's range (activations of 1e18
    in float32) do not overflow. Sum the squares in float64: one float32 sum of millions of
    squares runs about 2e-5 (relative) low.
    """
    n, d = x.shape
    step = max(1, work.numel() // d)
    for i in range(0, n, step):
        j = min(i + step, n)
        e = torch.addmm(x[i:j], a[i:j], f_t, beta=scale, alpha=-1.0,
                        out=work[: (j - i) * d].view(j - i, d))
        torch.linalg.vector_norm(e, dim=1, out=out[i:j])
    return out


def spd_inverse(g):
    """Inverse of a symmetric positive (semi)definite ``g : (rank, rank)`` through Cholesky.

    A small ridge is added to the diagonal, raised until the factorization succeeds. A tensor
    ``g`` is inverted on the host and the inverse returned on its device.
    """
    if isinstance(g, torch.Tensor):
        return torch.from_numpy(spd_inverse(g.detach().cpu().numpy())).to(g.device)
    eye = np.eye(g.shape[0])
    scale = max(float(np.mean(np.diag(g))), np.finfo(np.float64).tiny)
    ridge = RIDGE
    while True:
        try:
            chol = np.linalg.cholesky(g + (ridge * scale) * eye)
            break
        except np.linalg.LinAlgError:
            ridge *= 100.0
    inv_chol = np.linalg.solve(chol, eye)
    return inv_chol.T @ inv_chol


def gram(factors: Sequence[np.ndarray], first: np.ndarray | None = None) -> np.ndarray:
    """Hadamard product of the factors' Gram matrices, ``(rank, rank)`` (``first``: the Gram
    matrix of ``factors[0]`` when it is known, for example summed over processes)."""
    g = factors[0].T @ factors[0] if first is None else first
    for f in factors[1:]:
        g = g * (f.T @ f)
    return g


def hals(x, g, m, n_inner: int):
    """Nonnegative least squares ``min_{x >= 0} ||target - x F^T||`` by HALS column updates.

    ``m = target @ F : (n, rank)`` and ``g = F^T F : (rank, rank)`` describe the problem;
    ``x : (n, rank)``, the start, is updated in place and returned. Each column update is an
    exact minimization, so the loss never increases. Works on numpy arrays and on torch
    tensors alike (three operations a column on torch tensors).
    """
    diag = [max(float(d), np.finfo(np.float64).tiny) for d in g.diagonal().tolist()]
    for _ in range(n_inner):
        for r in range(g.shape[0]):
            if isinstance(x, torch.Tensor):
                step = torch.addmv(m[:, r], x, g[:, r], alpha=-1.0)  # m_r - x g_r
                col = x[:, r]
                col.add_(step, alpha=1.0 / diag[r]).clamp_(min=0.0)
            else:
                col = x[:, r] + (m[:, r] - x @ g[:, r]) / diag[r]
                x[:, r] = col.clip(0.0, None)
    return x


def solve(g, m, start, nonnegative: bool, n_inner: int = HALS_INNER, inv=None):
    """Least squares ``m @ inv(g)`` or nonnegative (HALS from ``start``, else from the
    clipped least squares solution).

    ``g``, ``m``, ``start`` and ``inv`` (the inverse of ``g``, :func:`spd_inverse` of it when
    None) are all numpy arrays or all torch tensors; with torch tensors ``inv`` is required.
    """
    if inv is None:
        inv = spd_inverse(g)
    if not nonnegative:
        return m @ inv
    if start is None:
        start = (m @ inv).clip(0.0, None)
    return hals(start, g, m, n_inner)


def decrease(old, new, h, rhs):
    """``f(old) - f(new)`` of the quadratic ``f(x) = <x h, x> - 2 <x, rhs>`` as
    ``<d h, d> + 2 <d, new h - rhs>`` with ``d = old - new``.

    Exact for any ``new``, and free of the cancellation of subtracting two losses: its rounding
    error shrinks with ``d``. ``x : (m, rank)``, ``h : (rank, rank)``, ``rhs : (m, rank)``; numpy
    arrays or torch tensors (all of one kind), and a scalar of that kind (no device sync).
    """
    d = old - new
    return ((d @ h) * d).sum() + 2.0 * (d * (new @ h - rhs)).sum()


def host(x) -> np.ndarray:
    """``x`` as a numpy array (a tensor is copied to the host; an array is returned as is)."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def _copy(x):
    return x.clone() if isinstance(x, torch.Tensor) else x.copy()


def update_block(factors: list, y, ata, nonnegative: bool) -> tuple[list, object]:
    """New block factors given the compressed block ``y = A^T X_(0)`` and ``ata = A^T A``.

    Matrix block: ``B`` from ``y : (rank, D)``. Tensor block: ``U`` then ``V`` (Gauss-Seidel)
    from ``y`` viewed as ``(rank, C, S)``. All float64, all numpy arrays or all tensors on one
    device. Returns the new factors and the decrease of the block's loss (:func:`decrease` of
    each factor's least squares problem; a numpy float or a 0-d tensor, so no device sync).
    """
    if len(factors) == 1:
        b, rhs = factors[0], y.T
        new = solve(ata, rhs, _copy(b), nonnegative)
        return [new], decrease(b, new, ata, rhs)
    u, v = factors
    y3 = y.reshape(-1, u.shape[0], v.shape[0])
    # rank batched matrix-vector products (BLAS; 3-4x faster than the einsum that says it)
    h, rhs = ata * (v.T @ v), (y3 @ v.T[:, :, None])[:, :, 0].T  # rcs,sr->cr
    u_new = solve(h, rhs, _copy(u), nonnegative)
    drop = decrease(u, u_new, h, rhs)
    h, rhs = ata * (u_new.T @ u_new), (u_new.T[:, None, :] @ y3)[:, 0, :].T  # rcs,cr->sr
    v_new = solve(h, rhs, _copy(v), nonnegative)
    return [u_new, v_new], drop + decrease(v, v_new, h, rhs)
