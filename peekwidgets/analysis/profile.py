"""The rank profile: how many shared components do the blocks hold?

:func:`rank_profile` measures, for R = 1..max_rank, how much of the (scaled, optionally
centered) blocks the best joint model of rank R explains, jointly and block by block, and the
marginal gain of each added component. For the least-squares coupled matrix model, whose
optimum at every R is the truncated SVD of the concatenated scaled unfoldings
``[s_1 X_1, s_2 X_2, ...]`` (``N x sum(D_k)``), the whole curve comes from ONE randomized SVD,
streamed block by block and batch by batch, so no block is ever concatenated or copied.
For identifiable models (``model="cp"``, ``model="nonnegative"``) the profile adds the
diagnostics of :mod:`peekwidgets.analysis.stability`.

Estimated rank (label-free): the number of leading components whose marginal gain in joint
explained variance is at least ``threshold`` (3% by default, on uncentered, unit-norm blocks).
The indicator score is the same rule read continuously: the R at which the gain curve,
interpolated linearly in log-gain between consecutive R, first falls to the threshold
(``estimated_rank <= score <= estimated_rank + 1``). Labels never enter either. How the
threshold and the centering were chosen, with the measurements, is in the README
section "What the rank tells you and what it does not".

Under a process group (:mod:`peekwidgets.distributed`) each process passes its rows of the
samples; the energies, means and the SVD's products over samples are all-reduced, so the
profile is the same on every process (``model="ls"`` only: the identifiable diagnostics split
and refit the samples, which a group does not do yet).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from peekwidgets import distributed
from peekwidgets.analysis.stability import identifiable_diagnostics
from peekwidgets.blocks import Blocks, as_blocks, full_device, resolve_block_weights
from peekwidgets.engine.batches import sweep_rows
from peekwidgets.engine.params import as_seed
from peekwidgets.engine.svd import randomized_svd

__all__ = ["DEFAULT_THRESHOLD", "RankProfile", "estimate_rank", "rank_profile"]

#: Marginal gain in joint explained variance below which a component is not counted.
DEFAULT_THRESHOLD = 0.03
#: A block whose centered energy is at most this share of its raw energy is constant.
CONSTANT_SHARE = 1e-12

_MODELS = ("ls", "cp", "nonnegative")


@dataclass(eq=False, repr=False)
class RankProfile:
    """The rank profile of one set of blocks, R = 1..max_rank.

    Attributes
    ----------
    ranks : (max_rank,) int
        ``1..max_rank``.
    fit : (max_rank,)
        Joint explained variance of the best least-squares rank-R coupled model (0..1).
    gain : (max_rank,)
        Marginal gain ``fit[R] - fit[R-1]`` (``gain[0] = fit[0]``).
    block_fit : (n_blocks, max_rank)
        Explained variance of each block by the same rank-R model; rows follow ``block_names``.
    singular_values : (max_rank,)
        Leading singular values of the concatenated scaled blocks.
    estimated_rank : int
        Leading components with ``gain >= threshold``; 0 (with a warning) when even the first
        component gains less.
    score : float
        The continuous indicator: where the log-gain curve reaches ``threshold``.
    saturated : bool
        True when every gain up to ``max_rank`` is above the threshold (the rank may be higher).
    block_names, block_weights, center, normalize, threshold, n_samples
        The settings the profile was computed with.
    model : str
        ``"ls"``, ``"cp"`` or ``"nonnegative"``: which model the identifiable diagnostics used.
    model_fit, stability, split_half : (max_rank,) or None
        Identifiable models only: joint fit of the best restart, mean pairwise factor match
        score across restarts, and factor match score of the two half-sample fits (non-sample
        factors). NaN where a fit was not run or was interrupted.
    core_consistency : dict name -> (max_rank,), or None
        Core consistency (percent) of each tensor block of the best restart.
    degenerate : (max_rank,) bool or None
        True where the best restart shows a two-factor degeneracy.
    converged : (max_rank,) or None
        Fraction of the restarts at each R that met the stopping tolerance before ``max_iter``
        (judge stability only where it is 1).
    interrupted : bool
        True when a KeyboardInterrupt stopped the identifiable diagnostics early.
    """

    ranks: np.ndarray
    fit: np.ndarray
    gain: np.ndarray
    block_fit: np.ndarray
    singular_values: np.ndarray
    estimated_rank: int
    score: float
    saturated: bool
    block_names: list
    block_weights: np.ndarray
    center: bool
    normalize: bool
    threshold: float
    n_samples: int
    model: str = "ls"
    model_fit: np.ndarray | None = None
    stability: np.ndarray | None = None
    split_half: np.ndarray | None = None
    core_consistency: dict | None = None
    degenerate: np.ndarray | None = None
    converged: np.ndarray | None = None
    interrupted: bool = False

    @property
    def max_rank(self) -> int:
        return len(self.ranks)

    def block(self, name: str) -> np.ndarray:
        """``(max_rank,)`` explained variance of block ``name``."""
        if name not in self.block_names:
            raise KeyError(f"no block named {name!r}; blocks are {self.block_names}")
        return self.block_fit[self.block_names.index(name)]

    def summary(self) -> str:
        """A text table: one line per R."""
        head = f"{'R':>3} {'fit':>7} {'gain':>7}"
        extra = []
        if self.stability is not None:
            extra = [("stability", self.stability), ("split-half", self.split_half)]
            head += "".join(f" {n:>10}" for n, _ in extra)
        lines = [
            f"rank profile: {self.n_samples} samples, {len(self.block_names)} blocks, "
            f"center={self.center}, estimated rank {self.estimated_rank}"
            f"{'+' if self.saturated else ''} (score {self.score:.2f}, "
            f"gain >= {self.threshold:g})",
            head,
        ]
        for i, r in enumerate(self.ranks):
            row = f"{r:>3} {self.fit[i]:7.4f} {self.gain[i]:7.4f}"
            row += "".join(f" {v[i]:10.3f}" for _, v in extra)
            lines.append(row)
        return "\n".join(lines)

    __str__ = __repr__ = summary


def estimate_rank(gain: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> tuple[int, float]:
    """The label-free rank rule on a marginal-gain curve.

    Parameters
    ----------
    gain : (max_rank,)
        Marginal gain in joint explained variance of components 1..max_rank.
    threshold : float
        Smallest gain that counts a component.

    Returns
    -------
    (estimated_rank, score): the number of leading components with ``gain >= threshold``, and
    the R where the gain curve, linear in log-gain between consecutive R (and from R = 0,
    where the gain is taken as 1), first reaches ``threshold``. When every gain is above the
    threshold, both are ``max_rank``.
    """
    _check_threshold(threshold)
    gain = np.asarray(gain, dtype=np.float64)
    below = np.flatnonzero(gain < threshold)
    if below.size == 0:
        return len(gain), float(len(gain))
    k = int(below[0])  # components 1..k count; component k+1 is the first below
    hi = gain[k - 1] if k > 0 else 1.0
    lo = max(gain[k], 1e-12)
    t = (math.log(hi) - math.log(threshold)) / max(math.log(hi) - math.log(lo), 1e-12)
    return k, k + float(np.clip(t, 0.0, 1.0))


def _energies(blocks: Blocks, center: bool, batch_size: int, device, dtype, n_total: int):
    """Each block's squared norm (about its feature means when ``center``) and those means,
    over the ``n_total`` samples of all processes.

    Returns ``(means, sq_norms)``: ``means`` is None without centering (no data pass: the norms
    are cached on the blocks), else a list of ``(D_b,)`` float64 tensors on ``device``.
    """
    sq_norms = raw = [nrm ** 2 for nrm in distributed.block_norms(blocks)]
    means = None
    if center:
        sizes = [math.prod(b.mode_shape) for b in blocks]
        flat = torch.zeros(sum(sizes), dtype=torch.float64, device=device)
        totals = flat.split(sizes)
        for start, stop, xs in blocks.batches(batch_size, device, dtype):
            for total, x in zip(totals, xs):
                total += x.reshape(stop - start, -1).sum(0, dtype=torch.float64)
        distributed.all_reduce_(flat)
        means = [total / n_total for total in totals]
        sq_norms = [sq - n_total * float(mu.square().sum())
                    for sq, mu in zip(sq_norms, means)]
    for b, sq, before in zip(blocks, sq_norms, raw):
        if sq <= CONSTANT_SHARE * before:  # what centering leaves of a constant is rounding
            raise ValueError(
                f"block {b.name!r} is constant over the samples (zero energy"
                f"{' after centering' if center else ''}); drop it with blocks.select(...)"
            )
    return means, sq_norms


def check_max_rank(max_rank) -> int:
    """``max_rank`` as an int, or a clear error when it is not an integer >= 1."""
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)):
        raise TypeError(
            f"max_rank must be an integer >= 1, got {max_rank!r} ({type(max_rank).__name__}); "
            "pass the largest rank to profile, e.g. max_rank=10"
        )
    if max_rank < 1:
        raise ValueError(f"max_rank must be an integer >= 1, got {max_rank!r}")
    return int(max_rank)


def _check_threshold(threshold) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)):
        raise TypeError(
            f"threshold must be a number in (0, 1), got {threshold!r} "
            f"({type(threshold).__name__}); e.g. threshold={DEFAULT_THRESHOLD}"
        )
    if not 0.0 < threshold < 1.0:
        raise ValueError(
            f"threshold must be in (0, 1), got {threshold!r}; it is the smallest marginal gain "
            f"(a share of the joint energy) that counts a component, e.g. {DEFAULT_THRESHOLD}"
        )


def _check_settings(blocks: Blocks, max_rank: int, threshold, model, center, n_restarts,
                    split_half, n: int) -> None:
    """Raise a clear error, before any work, for settings the profile cannot honour (``n``:
    the samples of all processes)."""
    if n < max_rank:
        raise ValueError(
            f"max_rank={max_rank} is larger than the number of samples ({n}); "
            f"pass max_rank <= {n} or capture more samples"
        )
    if model not in _MODELS:
        raise ValueError(f"model must be one of {_MODELS}, got {model!r}")
    _check_threshold(threshold)
    if model == "ls":
        return
    if distributed.is_active():
        raise ValueError(
            f"model={model!r} is not available under a torch.distributed process group (its "
            "split-half and restart fits would need every process's samples); use model='ls' "
            "there, or profile the identifiable model in one process"
        )
    if model == "cp" and not any(b.kind == "tensor" for b in blocks):
        raise ValueError(
            "model='cp' needs at least one tensor block (N x C x S): with matrix blocks only, the "
            "coupled model is the least-squares one, which is not identifiable; use model='ls' "
            "(the curve), or model='nonnegative'"
        )
    if center:
        raise ValueError(
            f"model={model!r} fits the blocks as CoupledCP does, uncentered; pass center=False "
            "(the least-squares curve alone can be centered with model='ls')"
        )
    if isinstance(n_restarts, bool) or not isinstance(n_restarts, (int, np.integer)) \
            or n_restarts < 1:
        raise ValueError(f"n_restarts must be an integer >= 1, got {n_restarts!r}")
    if split_half and max_rank > n // 2:
        raise ValueError(
            f"max_rank={max_rank} is larger than the split-half fits allow: model={model!r} "
            f"with split_half=True also fits each half of the {n} samples, {n // 2} samples "
            f"each, and a fit needs at least as many samples as its rank; pass max_rank <= "
            f"{n // 2}, split_half=False, or capture more samples"
        )
    features = sum(math.prod(b.mode_shape) for b in blocks)
    if max_rank > features:
        raise ValueError(
            f"max_rank={max_rank} is larger than the {features} features per sample of all "
            f"blocks together allow for model={model!r}; pass max_rank <= {features}"
        )


def rank_profile(
    blocks,
    max_rank: int = 20,
    *,
    center: bool = False,
    normalize: bool = True,
    block_weights=None,
    threshold: float = DEFAULT_THRESHOLD,
    model: str = "ls",
    n_restarts: int = 3,
    split_half: bool = True,
    max_iter: int = 500,
    tol: float = 1e-7,
    oversample: int = 20,
    n_iter: int = 4,
    batch_size: int | None = None,
    device=None,
    dtype: torch.dtype = torch.float32,
    random_state=0,
    progress: bool = True,
) -> RankProfile:
    """The rank profile of ``blocks`` over R = 1..max_rank, and an estimated rank.

    Parameters
    ----------
    blocks : Blocks, Block, list of Block or {name: array}
        The blocks of one analysis (usually from :func:`peekwidgets.capture.capture`). Labels
        carried by a ``Blocks`` are ignored.
    max_rank : int
        Largest rank profiled; at most the number of samples.
    center : bool
        Subtract each feature's mean over the samples before scaling. Off by default, so the
        profile describes the model :class:`~peekwidgets.engine.CoupledCP` fits (uncentered);
        the first component then carries the blocks' mean vector, and a larger mean share
        leaves less for the other components. The README section "What the rank tells you
        and what it does not" shows what centering does to the indicator (out of sample its
        relation with accuracy is mixed: negative on the digits zoo, positive on a BatchNorm
        CNN zoo).
    normalize : bool
        Scale each block to unit Frobenius norm (after centering) before weighting, as
        :class:`~peekwidgets.engine.CoupledCP` does, so a wide layer does not drown a narrow one.
        Without it the raw blocks are concatenated and the largest block sets the profile.
    block_weights : sequence or {name: weight}, optional
        Multiplies each (normalized) block; 1 by default.
    threshold : float
        Smallest marginal gain in joint explained variance that counts a component.
    model : {"ls", "cp", "nonnegative"}
        ``"ls"``: the least-squares coupled matrix curve only (one randomized SVD). ``"cp"`` or
        ``"nonnegative"`` add, per R, restart stability, split-half reproducibility, core
        consistency of tensor blocks and degeneracy from ``CoupledCP`` fits (tensor blocks kept
        as CP; ``"nonnegative"`` uses uncentered data, as nonnegative factors need it).
        ``"cp"`` needs at least one tensor block: with matrix blocks only it is the LS model.
    n_restarts : int
        Random restarts per R for the identifiable diagnostics.
    split_half : bool
        Also fit each half of the samples and compare their non-sample factors.
    max_iter, tol
        Stopping rule of the ``CoupledCP`` fits.
    oversample, n_iter : int
        Extra columns and power iterations of the randomized SVD.
    batch_size : int, optional
        Sample rows of all blocks read at once; by default the engine's rule for products of
        ``max_rank + oversample`` columns (:func:`peekwidgets.engine.batches.sweep_rows`).
    device : torch.device or str, optional
        Where to compute; each block's own device by default.
    dtype : torch.dtype
        Compute dtype of the streamed products (the small eigenproblem is float64).
    random_state : int, numpy RandomState or Generator, optional
        Seed of the random projection, restarts and the split; same seed, same profile (a
        RandomState or Generator gives one draw, as in :class:`CoupledCP`).
    progress : bool
        Show progress bars (on process 0 of a group).

    Returns
    -------
    RankProfile
    """
    blocks = as_blocks(blocks)
    max_rank = check_max_rank(max_rank)
    seed = as_seed(random_state)
    n_total = sum(distributed.agree(blocks.n_samples, {
        "blocks": blocks.names, "shapes": [b.mode_shape for b in blocks], "max_rank": max_rank,
        "center": center, "normalize": normalize, "block_weights": block_weights,
        "model": model, "oversample": oversample, "n_iter": n_iter, "dtype": dtype,
        "random_state": seed}))
    _check_settings(blocks, max_rank, threshold, model, center, n_restarts, split_half, n_total)
    weights = resolve_block_weights(block_weights, blocks.names, unknown_error=KeyError)
    dev = None if device is None else full_device(device)
    generator = torch.Generator().manual_seed(0 if seed is None else seed)
    if seed is None:
        generator.seed()

    if dev is None and len({b.device for b in blocks}) > 1:
        raise ValueError(
            f"blocks live on different devices {sorted({str(b.device) for b in blocks})}; "
            "pass device=... to compute on one"
        )
    dev = dev or blocks[0].device
    step = sweep_rows(blocks, max_rank + oversample, batch_size, device=dev, dtype=dtype)
    means, sq_norms = _energies(blocks, center, step, dev, dtype, n_total)
    scales = [w / math.sqrt(sq) if normalize else w for w, sq in zip(weights, sq_norms)]
    svd = randomized_svd(blocks, scales, max_rank, means=means, oversample=oversample,
                         n_iter=n_iter, batch_size=step, device=dev, dtype=dtype,
                         generator=generator, progress=progress and distributed.rank() == 0)
    sigma = svd.S.cpu().numpy()
    energy = torch.stack([y.square().sum(0) for y in svd.right]).cpu().numpy()
    if len(sigma) < max_rank:  # fewer features than max_rank: the rest explain nothing
        pad = max_rank - len(sigma)
        sigma = np.pad(sigma, (0, pad))
        energy = np.pad(energy, ((0, 0), (0, pad)))
    block_energy = np.array([s**2 * sq for s, sq in zip(scales, sq_norms)])
    fit = np.minimum(np.cumsum(sigma**2) / block_energy.sum(), 1.0)
    gain = np.diff(fit, prepend=0.0)
    block_fit = np.minimum(np.cumsum(energy, axis=1) / block_energy[:, None], 1.0)
    est, score = estimate_rank(gain, threshold)
    if est == 0:
        warnings.warn(
            f"no component gains >= {threshold:g} of the joint energy (the first gains "
            f"{gain[0]:.3g}), so the estimated rank is 0; the blocks share no dominant pattern "
            "at this threshold: lower threshold=... or check the blocks", RuntimeWarning,
            stacklevel=2,
        )
    diagnostics = {}
    if model != "ls":
        estimator = dict(nonnegative=model == "nonnegative", max_iter=max_iter, tol=tol,
                         block_weights=dict(zip(blocks.names, weights)), normalize=normalize,
                         batch_size=batch_size, device=dev, dtype=dtype)
        diagnostics = identifiable_diagnostics(
            blocks, max_rank, estimator, n_restarts=n_restarts, split_half=split_half,
            generator=generator, progress=progress, desc=f"{model} fits")
    return RankProfile(
        ranks=np.arange(1, max_rank + 1), fit=fit, gain=gain, block_fit=block_fit,
        singular_values=sigma, estimated_rank=est, score=score,
        saturated=bool(np.all(gain >= threshold)), block_names=list(blocks.names),
        block_weights=weights, center=center, normalize=normalize, threshold=threshold,
        n_samples=n_total, model=model, **diagnostics,
    )
