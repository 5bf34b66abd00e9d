"""Streamed randomized SVD of the scaled (optionally centered) sample-mode unfolding of blocks.

The unfolding ``Z = [s_1 (X_1 - 1 mu_1^T), s_2 (X_2 - 1 mu_2^T), ...]`` of shape
``(n_samples, sum_b D_b)`` (tensor blocks unfolded, ``D_b = C_b * S_b``) is never formed: every
product with it is taken block by block and sample batch by sample batch, so no block is
concatenated or copied. The range finder is Halko, Martinsson & Tropp (2011), Algorithm 4.4
(power iterations with re-orthonormalization); only factor-sized matrices are concatenated.
Both the engine's ``"svd"`` initialization and :func:`peekwidgets.analysis.rank_profile` use it.

Under a process group (:mod:`peekwidgets.distributed`) each process holds its rows of ``Z``:
the test matrix and every feature-side matrix are the same on every process, ``Z W`` and
``U`` stay row-local, ``Z^T Q`` and the Gram matrices of the row-local orthonormalizations
are all-reduced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from peekwidgets import distributed
from peekwidgets.blocks import Blocks
from peekwidgets.engine.batches import BatchedData, accumulators

__all__ = ["StreamedSVD", "randomized_svd"]


@dataclass(eq=False)
class StreamedSVD:
    """The leading singular triplets of ``Z``, with the right factors split by block.

    Attributes
    ----------
    U : (n_samples, k)
        Left singular vectors (float64, where the blocks live or on the host); under a process
        group, this process's rows.
    S : (k,)
        Singular values, descending (float64).
    right : list of (D_b, k)
        Block b's rows of ``V diag(S)``, that is ``Z_b^T U`` (float64 on the compute device).
    """

    U: torch.Tensor
    S: torch.Tensor
    right: list


class _Unfolding:
    """``Z`` as an operator: products with it, streamed over sample batches of all blocks."""

    def __init__(self, blocks: Blocks, scales, means, batch_size, device, dtype, width: int):
        data = BatchedData(blocks, scales, device, dtype, batch_size, width)
        self.blocks, self.device, self.dtype, self.home = blocks, data.device, dtype, data.home
        self.scales, self.sizes, self._chunks = data.scales, data.sizes, data.chunks
        self.means = means if means is not None else [None] * len(blocks)

    def matmul(self, w: list[torch.Tensor]) -> torch.Tensor:
        """``Z W : (n_samples, k)`` float64 for ``W`` given by block, ``w[b] : (D_b, k)``."""
        ws = [(wb * s).to(self.device, self.dtype) for wb, s in zip(w, self.scales)]
        out = torch.empty(self.blocks.n_samples, w[0].shape[1], dtype=torch.float64,
                          device=self.home)
        for start, stop, xs in self._chunks():
            out[start:stop] = sum(x @ wb for x, wb in zip(xs, ws)).to(self.home, torch.float64)
        shift = sum(s * (mu @ wb.to(mu.device, torch.float64))
                    for mu, wb, s in zip(self.means, w, self.scales) if mu is not None)
        return out - shift.to(self.home) if torch.is_tensor(shift) else out

    def rmatmul(self, q: torch.Tensor) -> list[torch.Tensor]:
        """``[Z_b^T q] : list of (D_b, k)`` float64 on the compute device, ``q : (n, k)``.

        Accumulated in float32 per batch and in float64 across batches
        (:class:`~peekwidgets.engine.batches.Accumulator`), into new arrays each call, and
        summed over processes.
        """
        k = q.shape[1]
        buf, accs, colsum = accumulators(k, self.sizes, self.device, self.dtype, extra=k)
        for start, stop, xs in self._chunks():
            qb = q[start:stop].to(self.device, self.dtype)
            for acc, x, s in zip(accs, xs, self.scales):
                acc.add(qb * s, x)  # scaled before the product: no overflow
        for acc in accs:
            acc.result()  # into the buffer
        colsum.copy_(q.sum(0))
        distributed.all_reduce_(buf)
        out = []
        for acc, mu, s in zip(accs, self.means, self.scales):
            y = acc.result().T
            if mu is not None:
                y -= torch.outer(mu.to(self.device), colsum * s)
            out.append(y)
        return out


def _cholesky_qr2(h: torch.Tensor, reduce) -> torch.Tensor | None:
    """Cholesky QR twice (``h R^-1`` from the Cholesky factor of the ``k x k`` Gram matrix
    ``reduce(h^T h)``, then once more for orthogonality to rounding); None where the Gram
    matrix is too ill-conditioned."""
    q, eye = h, torch.eye(h.shape[1], dtype=h.dtype, device=h.device)
    for step in range(2):
        gram = reduce(q.T @ q)
        if step and float((gram - eye).abs().max()) > 0.1:
            return None  # the first step lost orthogonality
        chol, info = torch.linalg.cholesky_ex(gram)
        if int(info) or not bool(torch.isfinite(chol).all()):
            return None
        q = q @ torch.linalg.solve_triangular(chol.mH, eye, upper=True)  # a product, not trsm
    return q


def _orthonormal(h: torch.Tensor, split_rows: bool = False) -> torch.Tensor:
    """An orthonormal basis ``(n, k)`` of the columns of ``h : (n, k)``.

    Cholesky QR twice: on tall matrices (the features of all blocks) a few times faster than
    Householder QR, which serves where the Gram matrix is too ill-conditioned (nearly
    dependent columns, blocks of lower rank than ``k``). With ``split_rows`` the rows of ``h``
    are split over the processes of a group (the Gram matrices are all-reduced), and shifted
    Cholesky QR (Fukaya et al. 2020: the Gram matrix plus ``11 (n k + k (k + 1)) eps
    trace``, which makes the factorization succeed, then Cholesky QR twice) serves instead.
    """
    split = split_rows and distributed.is_active()
    reduce = distributed.all_reduce if split else (lambda g: g)
    q = _cholesky_qr2(h, reduce)
    if q is not None:
        return q
    if not split:
        return torch.linalg.qr(h).Q
    n, k = distributed.total(h.shape[0]), h.shape[1]
    eye = torch.eye(k, dtype=h.dtype, device=h.device)
    for _ in range(3):
        gram = reduce(h.T @ h)
        shift = 11 * (n * k + k * (k + 1)) * torch.finfo(h.dtype).eps \
            * max(float(gram.diagonal().sum()), torch.finfo(h.dtype).tiny)
        chol, info = torch.linalg.cholesky_ex(gram + shift * eye)
        while int(info):
            shift *= 10
            chol, info = torch.linalg.cholesky_ex(gram + shift * eye)
        h = h @ torch.linalg.solve_triangular(chol.mH, eye, upper=True)
        q = _cholesky_qr2(h, reduce)
        if q is not None:
            return q
    return h


def randomized_svd(blocks: Blocks, scales, rank: int, *, means=None, oversample: int = 10,
                   n_iter: int = 1, batch_size: int | None = None, device, dtype: torch.dtype,
                   generator: torch.Generator, progress: bool = False) -> StreamedSVD:
    """The leading ``k = min(rank, n_samples, sum_b D_b)`` singular triplets of ``Z``.

    Parameters
    ----------
    blocks : Blocks
    scales : sequence of float
        ``s_b`` of each block.
    rank : int
        Singular triplets wanted.
    means : list of (D_b,) float64 tensors or None, optional
        ``mu_b`` subtracted from every row of block b (None: not centered).
    oversample, n_iter : int
        Extra columns of the random test matrix, and power iterations; the data is read
        ``2 + 2 * n_iter`` times.
    batch_size : int, optional
        Sample rows of all blocks read at once (by default
        :func:`~peekwidgets.engine.batches.sweep_rows` for the ``rank + oversample`` columns).
    device, dtype
        Where and in which dtype the data-sized products run; the small problems are float64.
    generator : torch.Generator
        Source of the Gaussian test matrix (drawn on the CPU in ``dtype``, so results are
        reproducible).
    progress : bool
        Show a progress bar over the passes.
    """
    from tqdm.auto import tqdm

    width = min(rank + oversample, distributed.total(blocks.n_samples),
                sum(math.prod(b.mode_shape) for b in blocks))
    width = int(width)
    op = _Unfolding(blocks, scales, means, batch_size, device, dtype, width)
    omega = [torch.randn(d, width, generator=generator, dtype=dtype) for d in op.sizes]
    with tqdm(total=2 * n_iter + 2, desc="randomized SVD", disable=not progress,
              leave=False) as bar:
        q = _orthonormal(op.matmul(omega), split_rows=True)
        bar.update()
        for _ in range(n_iter):
            z = _orthonormal(torch.cat(op.rmatmul(q)))
            bar.update()
            q = _orthonormal(op.matmul(list(z.split(op.sizes))), split_rows=True)
            bar.update()
        small = op.rmatmul(q)  # block rows of (Q^T Z)^T
        bar.update()
    gram = sum(y.T @ y for y in small)  # (Q^T Z)(Q^T Z)^T = W diag(S^2) W^T
    evals, w = torch.linalg.eigh(gram)
    order = torch.argsort(evals, descending=True)[: min(rank, width)]
    w = w[:, order]
    return StreamedSVD(U=q @ w.to(q.device), S=evals[order].clamp_min(0).sqrt(),
                       right=[y @ w for y in small])
