"""Data for the widget tests: small blocks and a stand-in for a fitted estimator."""

from __future__ import annotations

import types

import numpy as np
import torch

from peekwidgets.blocks import Block, Blocks
from peekwidgets.engine import CoupledCP

N, RANK = 60, 3


def make_blocks(n=N, seed=0):
    """An 8x8 grayscale input, a conv-like tensor block (4 ch, 4x4) and a 10-unit matrix block."""
    rng = np.random.default_rng(seed)
    return Blocks(
        [
            Block("input", torch.from_numpy(rng.random((n, 64), dtype=np.float32)), (8, 8)),
            Block("conv", torch.from_numpy(rng.random((n, 4, 16), dtype=np.float32)), (4, 4)),
            Block("fc", torch.from_numpy(rng.standard_normal((n, 10), dtype=np.float32))),
        ],
        labels=rng.integers(0, 3, n), sample_shape=(1, 8, 8),
    )


def rgb_blocks(n=20, seed=0):
    """A 3 x 4 x 4 RGB input block (channels first) and a 5-unit matrix block."""
    rng = np.random.default_rng(seed)
    return Blocks([Block("input", torch.from_numpy(rng.random((n, 3, 16), dtype=np.float32)),
                         (4, 4)),
                   Block("h", torch.from_numpy(rng.random((n, 5), dtype=np.float32)))],
                  sample_shape=(3, 4, 4))


def stand_in(blocks, rank=RANK, seed=1, **attrs):
    """An object with CoupledCP's fitted attributes, from synthetic arrays (``attrs``
    override): nonnegative loadings, some negative shares, a converged fit."""
    rng = np.random.default_rng(seed)
    A = np.abs(rng.standard_normal((blocks.n_samples, rank)))
    A /= np.linalg.norm(A, axis=0)
    factors = {b.name: [rng.standard_normal((d, rank)) for d in b.mode_shape] for b in blocks}
    est = types.SimpleNamespace(
        weights_=np.sort(rng.random(rank))[::-1] + 1, A_=A, factors_=factors,
        block_names_=blocks.names, block_kinds_=[b.kind for b in blocks],
        explained_variance_=rng.random((len(blocks.names), rank)) / rank - 0.1,
        fit_={n: 0.5 for n in blocks.names}, nonnegative=False,
        n_iter_=40, converged_=True, interrupted_=False, loss_history_=[2.0, 1.0, 0.9999999],
        tol=1e-6,
    )
    for key, value in attrs.items():
        setattr(est, key, value)
    return est


def planted_fit(n=48, seed=3):
    """A real fit of blocks where samples 0-5 carry a pattern nobody else has."""
    rng = np.random.default_rng(seed)
    A = rng.random((n, 2)) * 0.1
    A[:6, 1] += 1.0
    A[6:, 0] += rng.random(n - 6)
    patterns = {"input": rng.random((64, 2)), "fc": rng.random((10, 2))}
    blocks = Blocks(
        [Block(name, torch.from_numpy((A @ P.T).astype(np.float32)), (8, 8) if name == "input"
               else None) for name, P in patterns.items()],
        labels=np.where(np.arange(n) < 6, 1, 0), sample_shape=(1, 8, 8),
    )
    return blocks, CoupledCP(2, nonnegative=True, max_iter=200, random_state=0).fit(blocks)
