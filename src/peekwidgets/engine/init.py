"""Initial block factors: randomized SVD of the weighted sample-mode unfolding, or random.

The weighted sample-mode unfolding ``Z = [s_1 X_1(0), s_2 X_2(0), ...]`` of shape
``(n_samples, sum_b D_b)`` is never formed: every product with it is taken block by block and
sample batch by sample batch (:class:`~peekwidgets.engine.coupled.BatchedData`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from peekwidgets.engine import ops

#: Extra columns of the randomized range finder, and its power iterations.
OVERSAMPLE = 10
N_POWER = 1


def random_factors(shapes, rank: int, generator: torch.Generator) -> list[list[np.ndarray]]:
    """Uniform [0, 1) factors ``[B]`` or ``[U, V]`` for mode shapes ``(D,)`` or ``(C, S)``."""
    return [
        [torch.rand(d, rank, generator=generator, dtype=torch.float64).numpy() for d in shape]
        for shape in shapes
    ]


def _range(h: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis of the columns of ``h : (n_samples, k)``, where A lives."""
    return torch.linalg.qr(h.double())[0].to(h.dtype)


def _compress_all(data, q: torch.Tensor) -> list[torch.Tensor]:
    """``s_b X_b(0)^T q`` for every block, ``(D_b, k)`` float64, in one pass over the data."""
    out = [torch.zeros(q.shape[1], math.prod(shape), dtype=torch.float64, device=data.device)
           for shape in data.mode_shapes]
    for start, stop, xs in data.chunks():
        qb = q[start:stop].to(data.device)
        for y, x, s in zip(out, xs, data.scales):
            y += ops.compress(x, qb).double() * s
    return [y.T for y in out]


def _expand(data, w: list[torch.Tensor]) -> torch.Tensor:
    """``Z W`` with ``W`` given block by block (``w[b] : (D_b, k)``), ``(n_samples, k)``."""
    k = w[0].shape[1]
    h = torch.empty(data.n, k, dtype=data.dtype, device=data.home)
    ws = [wb.to(data.dtype) * s for wb, s in zip(w, data.scales)]
    for start, stop, xs in data.chunks():
        h[start:stop] = sum(x.reshape(x.shape[0], -1) @ wb for x, wb in zip(xs, ws)).to(data.home)
    return h


def svd_factors(data, rank: int, generator: torch.Generator,
                nonnegative: bool) -> list[list[np.ndarray]]:
    """Block factors from a randomized SVD of the weighted unfolding (Halko et al. 2011).

    ``A0 (n, rank)``, the leading left singular vectors, gives each block's compressed data
    ``Y_b = s_b X_b(0)^T A0``; a matrix block takes ``B = Y_b``, a tensor block takes the
    leading singular pair of each ``Y_b[:, :, r]`` as ``u_r``, ``v_r``. Absolute values when
    ``nonnegative``. Passes over the data: ``2 + 2 * N_POWER``.
    """
    total = sum(math.prod(s) for s in data.mode_shapes)
    k = min(rank + OVERSAMPLE, data.n, total)
    omega = [torch.randn(math.prod(s), k, generator=generator, dtype=torch.float64)
             .to(data.device) for s in data.mode_shapes]
    q = _range(_expand(data, omega))
    for _ in range(N_POWER):
        q = _range(_expand(data, _compress_all(data, q)))
    small = _compress_all(data, q)  # blocks of (Q^T Z)^T
    _, _, vh = torch.linalg.svd(torch.cat(small, 0), full_matrices=False)
    rot = vh.T[:, :rank]  # A0 = Q @ rot
    factors = []
    for y, shape in zip(small, data.mode_shapes):
        y = y @ rot
        if len(shape) == 1:
            fs = [y]
        else:
            u, sv, vt = torch.linalg.svd(
                y.reshape(*shape, rank).permute(2, 0, 1), full_matrices=False
            )
            fs = [(u[:, :, 0] * sv[:, :1]).T.contiguous(), vt[:, 0, :].T.contiguous()]
        factors.append([(f.abs() if nonnegative else f).cpu().numpy() for f in fs])
    return factors


def check_user_factors(init: dict, names, mode_shapes, rank: int) -> list[list[np.ndarray]]:
    """Validate ``{block name: [B] or [U, V]}`` initial factors; float64 numpy copies."""
    out = []
    for name, shape in zip(names, mode_shapes):
        if name not in init:
            raise ValueError(f"init has no factors for block {name!r}; give one per block")
        fs = [np.array(f, dtype=np.float64) for f in init[name]]
        want = [(d, rank) for d in shape]
        got = [tuple(f.shape) for f in fs]
        if got != want:
            raise ValueError(
                f"init factors of block {name!r} have shapes {got}, expected {want}"
            )
        out.append(fs)
    return out
