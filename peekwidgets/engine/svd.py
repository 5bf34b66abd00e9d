"""Streamed randomized SVD of the scaled (optionally centered) sample-mode unfolding of blocks.

The unfolding ``Z = [s_1 (X_1 - 1 mu_1^T), s_2 (X_2 - 1 mu_2^T), ...]`` of shape
``(n_samples, sum_b D_b)`` (tensor blocks unfolded, ``D_b = C_b * S_b``) is never formed: every
product with it is taken block by block and sample batch by sample batch, so no block is
concatenated or copied. The range finder is Halko, Martinsson & Tropp (2011), Algorithm 4.4
(power iterations with re-orthonormalization); only factor-sized matrices are concatenated.
Both the engine's ``"svd"`` initialization and :func:`peekwidgets.analysis.rank_profile` use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from peekwidgets.blocks import Blocks

__all__ = ["StreamedSVD", "randomized_svd"]


@dataclass(eq=False)
class StreamedSVD:
    """The leading singular triplets of ``Z``, with the right factors split by block.

    Attributes
    ----------
    U : (n_samples, k)
        Left singular vectors (float64, where the blocks live or on the host).
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

    def __init__(self, blocks: Blocks, scales, means, batch_size: int, device, dtype):
        self.blocks, self.batch_size, self.device, self.dtype = blocks, batch_size, device, dtype
        self.scales = [float(s) for s in scales]
        self.means = means if means is not None else [None] * len(blocks)
        self.sizes = [math.prod(b.mode_shape) for b in blocks]
        homes = {b.device for b in blocks}
        self.home = homes.pop() if len(homes) == 1 else torch.device("cpu")

    def _chunks(self):
        for start, stop, xs in self.blocks.batches(self.batch_size, self.device, self.dtype):
            yield start, stop, [x.reshape(stop - start, -1) for x in xs]

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
        """``[Z_b^T q] : list of (D_b, k)`` float64 on the compute device, ``q : (n, k)``."""
        out = [torch.zeros(d, q.shape[1], dtype=torch.float64, device=self.device)
               for d in self.sizes]
        for start, stop, xs in self._chunks():
            qb = q[start:stop].to(self.device, self.dtype)
            for y, x, s in zip(out, xs, self.scales):
                y += (x.T @ (qb * s)).double()  # scaled before the product: no overflow
        colsum = q.sum(0).to(self.device, torch.float64)
        for y, mu, s in zip(out, self.means, self.scales):
            if mu is not None:
                y -= torch.outer(mu.to(self.device), colsum * s)
        return out


def _orthonormal(h: torch.Tensor) -> torch.Tensor:
    return torch.linalg.qr(h).Q


def randomized_svd(blocks: Blocks, scales, rank: int, *, means=None, oversample: int = 10,
                   n_iter: int = 1, batch_size: int, device, dtype: torch.dtype,
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
    batch_size : int
        Sample rows of all blocks read at once.
    device, dtype
        Where and in which dtype the data-sized products run; the small problems are float64.
    generator : torch.Generator
        Source of the Gaussian test matrix (drawn on the CPU, so results are reproducible).
    progress : bool
        Show a progress bar over the passes.
    """
    from tqdm.auto import tqdm

    op = _Unfolding(blocks, scales, means, batch_size, torch.device(device), dtype)
    width = min(rank + oversample, blocks.n_samples, sum(op.sizes))
    omega = [torch.randn(d, width, generator=generator, dtype=torch.float64) for d in op.sizes]
    with tqdm(total=2 * n_iter + 2, desc="randomized SVD", disable=not progress,
              leave=False) as bar:
        q = _orthonormal(op.matmul(omega))
        bar.update()
        for _ in range(n_iter):
            z = _orthonormal(torch.cat(op.rmatmul(q)))
            bar.update()
            q = _orthonormal(op.matmul(list(z.split(op.sizes))))
            bar.update()
        small = op.rmatmul(q)  # block rows of (Q^T Z)^T
        bar.update()
    gram = sum(y.T @ y for y in small)  # (Q^T Z)(Q^T Z)^T = W diag(S^2) W^T
    evals, w = torch.linalg.eigh(gram)
    order = torch.argsort(evals, descending=True)[: min(rank, width)]
    w = w[:, order]
    return StreamedSVD(U=q @ w.to(q.device), S=evals[order].clamp_min(0).sqrt(),
                       right=[y @ w for y in small])
