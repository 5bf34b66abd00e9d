"""Diagnostics of identifiable coupled models, rank by rank.

The least-squares coupled matrix model is not identifiable, so restarts mean nothing there. A
coupled model with CP tensor blocks, or a nonnegative one, is: for each R, several random
restarts of :class:`~peekwidgets.engine.CoupledCP` measure how stable its factors are, two
fits on disjoint halves of the samples how reproducible, and the best restart gives the core
consistency of each tensor block and a two-factor degeneracy flag.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from tqdm.auto import tqdm

from peekwidgets.blocks import Block, Blocks
from peekwidgets.engine import CoupledCP, core_consistency, coupled_factor_match_score, degeneracy

__all__ = ["identifiable_diagnostics"]


def _subset(blocks: Blocks, index: torch.Tensor) -> Blocks:
    """The samples ``index`` of every block (a copy of those rows)."""
    return Blocks([Block(b.name, b.rows(index, dtype=b.data.dtype), b.spatial_shape, b.meta)
                   for b in blocks])


def _joint_fit(model: CoupledCP, blocks: Blocks) -> float:
    """Joint explained variance of a fitted CoupledCP over its scaled blocks."""
    energy = np.array([(model.block_scales_[b.name] * b.norm()) ** 2 for b in blocks])
    fits = np.array([model.fit_[b.name] for b in blocks])
    return float(energy @ fits / energy.sum())


def _quiet_fit(blocks: Blocks, rank: int, init: str, seed: int, estimator: dict) -> CoupledCP:
    """A CoupledCP fit whose ConvergenceWarning is left out (its ``converged_`` records it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return CoupledCP(rank, init=init, random_state=seed, **estimator).fit(blocks)


def identifiable_diagnostics(
    blocks: Blocks,
    max_rank: int,
    estimator: dict,
    *,
    n_restarts: int = 3,
    split_half: bool = True,
    generator: torch.Generator,
    progress: bool = True,
    desc: str = "fits",
) -> dict:
    """Restart stability, split-half reproducibility, core consistency and degeneracy per R.

    Parameters
    ----------
    blocks : Blocks
        The blocks, fitted as they are (``estimator`` says how they are scaled).
    max_rank : int
        Ranks 1..max_rank are fitted; at most half the samples when ``split_half``.
    estimator : dict
        Keyword arguments of :class:`~peekwidgets.engine.CoupledCP` shared by every fit
        (``nonnegative``, ``max_iter``, ``tol``, ``block_weights``, ...).
    n_restarts : int
        Random restarts per R.
    split_half : bool
        Also fit each half of the samples (a random split) and compare their non-sample
        factors.
    generator : torch.Generator
        Source of the restart seeds and of the split.
    progress : bool
        Show a progress bar over R.
    desc : str
        Its label.

    Returns
    -------
    dict
        ``model_fit``, ``stability``, ``split_half``, ``converged`` : (max_rank,) arrays (joint
        fit of the best restart, mean pairwise factor match score of the restarts, factor match
        score of the two halves, share of restarts that converged); ``core_consistency``:
        ``{tensor block name: (max_rank,)}`` of the best restart, in percent; ``degenerate``:
        (max_rank,) bool; ``interrupted``: True when a KeyboardInterrupt stopped the fits,
        leaving NaN for the ranks not reached.
    """
    n = blocks.n_samples
    tensors = [b for b in blocks if b.kind == "tensor"]
    nan = np.full(max_rank, np.nan)
    out = dict(model_fit=nan.copy(), stability=nan.copy(), split_half=nan.copy(),
               converged=nan.copy(), core_consistency={b.name: nan.copy() for b in tensors},
               degenerate=np.zeros(max_rank, dtype=bool), interrupted=False)
    seeds = torch.randint(0, 2**31 - 1, (max_rank, n_restarts + 2), generator=generator)
    halves = None
    if split_half:
        perm = torch.randperm(n, generator=generator)
        halves = [_subset(blocks, perm[: n // 2].sort().values),
                  _subset(blocks, perm[n // 2:].sort().values)]
    try:
        for i in tqdm(range(max_rank), desc=desc, disable=not progress):
            rank = i + 1
            fits = [_quiet_fit(blocks, rank, "random", int(seeds[i, j]), estimator)
                    for j in range(n_restarts)]
            scores = [_joint_fit(m, blocks) for m in fits]
            best = fits[int(np.argmax(scores))]
            out["model_fit"][i] = max(scores)
            out["converged"][i] = np.mean([m.converged_ for m in fits])
            if n_restarts > 1:
                out["stability"][i] = np.mean([
                    coupled_factor_match_score(a, b).score
                    for j, a in enumerate(fits) for b in fits[j + 1:]
                ])
            for b in tensors:
                out["core_consistency"][b.name][i] = core_consistency(
                    b, best.cp_tensor(b.name, scaled=False))
            every = [best.A_] + [f for name in best.block_names_ for f in best.factors_[name]]
            out["degenerate"][i] = degeneracy(every).degenerate
            if halves is not None:
                pair = [_quiet_fit(half, rank, "svd", int(seeds[i, -1 - h]), estimator)
                        for h, half in enumerate(halves)]
                out["split_half"][i] = coupled_factor_match_score(
                    *pair, compare_samples=False).score
    except KeyboardInterrupt:
        out["interrupted"] = True
        warnings.warn(
            f"rank profile interrupted after {int(np.sum(~np.isnan(out['model_fit'])))} of "
            f"{max_rank} ranks; the identifiable diagnostics hold NaN beyond that",
            RuntimeWarning, stacklevel=3,
        )
    return out
