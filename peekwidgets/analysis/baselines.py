"""Label-free baselines that a checkpoint comparison reports next to the rank indicator.

Each one reads a single block through its singular values, from a Gram matrix of its smaller
side accumulated in float64, batch by batch, so that no block is copied whole:

* :func:`energy_rank`: the number of leading components that hold a share (95%) of a block's
  uncentered energy; on the logits, how many directions the network's outputs use.
* :func:`rankme`: RankMe (Garrido et al., 2023, "RankMe: Assessing the downstream performance
  of pretrained self-supervised representations by their rank"), the exponential of the
  entropy of the normalized singular values; on the penultimate block, an effective rank of
  the representation the classifier reads.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from peekwidgets.blocks import Block

__all__ = ["ENERGY_SHARE", "energy_rank", "rankme", "singular_values"]

#: Share of the uncentered energy that :func:`energy_rank` counts components for.
ENERGY_SHARE = 0.95

#: Float64 bytes of one slice of a block read at once.
_SLICE_BYTES = 64 << 20


def singular_values(block: Block) -> np.ndarray:
    """``(min(n_samples, n_features),)`` singular values of a block, largest first.

    The block is unfolded to ``(n_samples, n_features)``; its Gram matrix on the smaller side
    is accumulated in float64 on the block's device, a slice of rows (or of features) at a time.
    """
    x = block.data.reshape(block.n_samples, -1)
    n, d = x.shape
    step = max(1, _SLICE_BYTES // (8 * min(n, d)))  # rows (or features) of a slice
    gram = torch.zeros((min(n, d),) * 2, dtype=torch.float64, device=x.device)
    for start in range(0, max(n, d), step):
        part = (x[start:start + step] if d <= n else x[:, start:start + step].T).double()
        gram += part.T @ part
    energies = torch.linalg.eigvalsh(gram).flip(0).clamp(min=0.0)
    return energies.sqrt().cpu().numpy()


def energy_rank(block: Block, share: float = ENERGY_SHARE) -> int:
    """The number of leading components holding ``share`` of the block's uncentered energy.

    Parameters
    ----------
    block : Block
        ``(n_samples, n_features)``, or a tensor block (unfolded).
    share : float
        In (0, 1].

    Returns
    -------
    int
        The smallest k with ``sum(s[:k]**2) >= share * sum(s**2)``, ``s`` the singular values;
        0 for an all-zero block.
    """
    energy = singular_values(block) ** 2
    total = energy.sum()
    if total == 0.0:
        return 0  # an all-zero block: no component holds anything
    # a relative tolerance, so that k exactly equal components give k, not k + 1
    held = np.cumsum(energy) / total
    return int(np.searchsorted(held, share - 1e-9) + 1)


def rankme(block: Block, eps: float = 1e-12) -> float:
    """RankMe: ``exp(-sum p_k log p_k)`` with ``p_k = s_k / sum(s) + eps``.

    ``k`` equal nonzero singular values (and the rest zero) give ``k``; it is at most
    ``min(n_samples, n_features)``, and 0 for an all-zero block.
    """
    s = singular_values(block)
    if s.sum() == 0.0:
        return 0.0  # an all-zero block has rank 0
    p = s / s.sum() + eps
    return float(math.exp(-np.sum(p * np.log(p))))
