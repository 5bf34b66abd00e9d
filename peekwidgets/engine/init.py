"""Initial block factors: randomized SVD of the weighted sample-mode unfolding, or random.

The weighted sample-mode unfolding ``Z = [s_1 X_1(0), s_2 X_2(0), ...]`` of shape
``(n_samples, sum_b D_b)`` is never formed (:func:`peekwidgets.engine.svd.randomized_svd`
streams it block by block and sample batch by sample batch). Both are feature-side: under a
process group they come out the same on every process (the SVD's sums over samples are
all-reduced, the random factors drawn from the same seed).
"""

from __future__ import annotations

import numpy as np
import torch

from peekwidgets.engine.svd import randomized_svd

#: Extra columns of the randomized range finder, and its power iterations.
OVERSAMPLE = 10
N_POWER = 1


def random_factors(shapes, rank: int, generator: torch.Generator) -> list[list[np.ndarray]]:
    """Uniform [0, 1) factors ``[B]`` or ``[U, V]`` for mode shapes ``(D,)`` or ``(C, S)``."""
    return [
        [torch.rand(d, rank, generator=generator, dtype=torch.float64).numpy() for d in shape]
        for shape in shapes
    ]


def leading_pairs(y: torch.Tensor) -> list[torch.Tensor]:
    """``[U (C, rank), V (S, rank)]``: column ``r`` holds ``sigma u`` and ``v`` of the leading
    singular pair of ``y[r] : (C, S)``, from the eigenvectors of the smaller Gram matrix
    (``y y^T`` or ``y^T y``; a full batched SVD of wide slices costs more than several sweeps).
    ``v`` is a unit vector also where ``y[r]`` is zero."""
    wide = y.shape[1] <= y.shape[2]
    y = y if wide else y.transpose(1, 2)  # (rank, small, large)
    small = torch.linalg.eigh(y @ y.transpose(1, 2)).eigenvectors[:, :, -1]  # (rank, small)
    large = (small[:, None, :] @ y)[:, 0, :]  # sigma times the other vector, (rank, large)
    sigma = torch.linalg.vector_norm(large, dim=1, keepdim=True)
    unit = torch.where(sigma > 0, large / sigma.clamp(min=torch.finfo(y.dtype).tiny),
                       torch.eye(1, y.shape[2], dtype=y.dtype, device=y.device))
    pair = [(small * sigma).T.contiguous(), unit.T.contiguous()]  # (sigma u, v) when wide
    return pair if wide else [large.T.contiguous(), small.T.contiguous()]


def svd_factors(data, rank: int, generator: torch.Generator,
                nonnegative: bool) -> list[list[np.ndarray]]:
    """Block factors from a randomized SVD of the weighted unfolding (Halko et al. 2011).

    ``A0 (n, rank)``, the leading left singular vectors, gives each block's compressed data
    ``Y_b = s_b X_b(0)^T A0`` (:attr:`StreamedSVD.right`); a matrix block takes ``B = Y_b``, a
    tensor block takes the leading singular pair of each ``Y_b[:, :, r]`` as ``u_r``, ``v_r``.
    Absolute values when ``nonnegative``. Passes over the data: ``2 + 2 * N_POWER``.
    """
    result = randomized_svd(data.blocks, data.scales, rank, oversample=OVERSAMPLE,
                            n_iter=N_POWER, batch_size=data.user_batch_size, device=data.device,
                            dtype=data.dtype, generator=generator)
    factors = []
    for y, shape in zip(result.right, data.mode_shapes):
        if len(shape) == 1:
            fs = [y]
        else:
            fs = leading_pairs(y.reshape(*shape, rank).permute(2, 0, 1))
        factors.append([(f.abs() if nonnegative else f).cpu().numpy() for f in fs])
    return factors


def check_user_factors(init: dict, names, mode_shapes, rank: int,
                       nonnegative: bool = False) -> list[list[np.ndarray]]:
    """Validate ``{block name: [B] or [U, V]}`` initial factors; float64 numpy copies.

    An all-zero column stays zero: in a nonnegative fit it makes a dead component (allowed,
    unless every column is zero); in least squares its Gram matrix is singular (refused).
    """
    unknown = [name for name in init if name not in names]
    if unknown:
        raise ValueError(f"init has factors for {unknown}, which are not among the blocks "
                         f"{list(names)}; name the blocks as they are fitted")
    out = []
    for name, shape in zip(names, mode_shapes):
        if name not in init:
            raise ValueError(f"init has no factors for block {name!r}; give one per block")
        fs = [np.array(f, dtype=np.float64) for f in init[name]]
        want = [(d, rank) for d in shape]
        got = [tuple(f.shape) for f in fs]
        if got != want:
            raise ValueError(
                f"init factors of block {name!r} have shapes {got}, expected {want} (rank "
                f"{rank}); give factors of these shapes, or init='svd' to start from the data"
            )
        for m, f in enumerate(fs):
            if not np.isfinite(f).all():
                raise ValueError(f"init factor {m} of block {name!r} holds NaN or Inf; give "
                                 "finite factors, or init='svd'")
            zero = np.flatnonzero(~f.any(axis=0))
            if zero.size and (not nonnegative or zero.size == rank):
                raise ValueError(
                    f"init factor {m} of block {name!r} has all-zero columns {zero.tolist()}: "
                    "a zero column stays zero (its Gram matrix is singular); give nonzero "
                    "factors, or init='svd'")
        out.append(fs)
    return out
