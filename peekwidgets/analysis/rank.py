"""Rank analysis of the joint factorization: how many shared components do the blocks hold?

:func:`rank_profile` measures, for R = 1..max_rank, how much of the (scaled, optionally
centered) blocks the best joint model of rank R explains, jointly and block by block, and the
marginal gain of each added component. For the least-squares coupled matrix model, whose
optimum at every R is the truncated SVD of the concatenated scaled unfoldings
``[s_1 X_1, s_2 X_2, ...]`` (``N x sum(D_k)``), the whole curve comes from ONE randomized SVD,
streamed block by block and batch by batch, so no block is ever concatenated or copied.

That model is not identifiable (restarts give different factors spanning the same subspace),
so restarts mean nothing there. For identifiable models (``model="cp"``, tensor blocks kept as
CP; ``model="nonnegative"``) the profile adds, per R, the stability of the factors across
restarts, split-half reproducibility, the core consistency of tensor blocks and a degeneracy
flag, all through :class:`~peekwidgets.engine.CoupledCP` and its diagnostics.

Estimated rank (label-free): the number of leading components whose marginal gain in joint
explained variance is at least ``threshold`` (3% by default, on uncentered, unit-norm blocks).
The indicator score is the same rule read continuously: the R at which the gain curve,
interpolated linearly in log-gain between consecutive R, first falls to the threshold
(``estimated_rank <= score <= estimated_rank + 1``). Labels never enter either. How the
threshold and the centering were chosen, with the measurements, is in the README
section "What the rank tells you and what it does not".
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from peekwidgets.blocks import Block, Blocks, as_blocks, batch_rows, resolve_block_weights
from peekwidgets.engine.svd import randomized_svd

__all__ = [
    "DEFAULT_THRESHOLD",
    "CheckpointComparison",
    "RankProfile",
    "compare_checkpoints",
    "estimate_rank",
    "rank_profile",
]

#: Marginal gain in joint explained variance below which a component is not counted.
DEFAULT_THRESHOLD = 0.03

_MODELS = ("ls", "cp", "nonnegative")


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------
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
    _figures: dict = field(default_factory=dict, repr=False)

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

    def plot(self, blocks: bool = True):
        """A bqplot Figure: joint fit and marginal gain against R, per-block fit when ``blocks``.

        The figure is built once and kept on the profile (``profile.plot() is profile.plot()``).
        """
        if blocks not in self._figures:
            self._figures[blocks] = _profile_figure(self, blocks)
        return self._figures[blocks]


def _profile_figure(profile: RankProfile, blocks: bool):
    import bqplot as bq

    x_sc = bq.LinearScale(min=0.5, max=profile.max_rank + 0.5)
    y_sc = bq.LinearScale(min=0.0, max=1.0)
    g_sc = bq.LogScale()
    r = profile.ranks.astype(float)
    marks = [
        bq.Lines(x=r, y=profile.fit, scales={"x": x_sc, "y": y_sc}, colors=["black"],
                 stroke_width=3, marker="circle", labels=["joint fit"], display_legend=True),
        bq.Lines(x=r, y=np.maximum(profile.gain, 1e-6), scales={"x": x_sc, "y": g_sc},
                 colors=["#d62728"], line_style="dashed", marker="square",
                 labels=["marginal gain"], display_legend=True),
        bq.Lines(x=[0.5, profile.max_rank + 0.5], y=[profile.threshold] * 2,
                 scales={"x": x_sc, "y": g_sc}, colors=["#d62728"], opacities=[0.4]),
        bq.Lines(x=[profile.score] * 2, y=[0.0, 1.0], scales={"x": x_sc, "y": y_sc},
                 colors=["gray"], line_style="dotted"),
    ]
    if blocks and len(profile.block_names) > 1:
        marks.append(bq.Lines(x=r, y=profile.block_fit, scales={"x": x_sc, "y": y_sc},
                              labels=list(profile.block_names), display_legend=True,
                              opacities=[0.6] * len(profile.block_names), stroke_width=1))
    axes = [
        bq.Axis(scale=x_sc, label="rank R", tick_format="d"),
        bq.Axis(scale=y_sc, side="left", label="explained variance"),
        bq.Axis(scale=g_sc, side="right", label="marginal gain"),
    ]
    title = (f"estimated rank {profile.estimated_rank}{'+' if profile.saturated else ''} "
             f"(score {profile.score:.2f})")
    return bq.Figure(marks=marks, axes=axes, title=title, legend_location="right",
                     fig_margin={"top": 50, "bottom": 50, "left": 60, "right": 140})


# --------------------------------------------------------------------------------------------
# the rule
# --------------------------------------------------------------------------------------------
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
    gain = np.asarray(gain, dtype=np.float64)
    below = np.flatnonzero(gain < threshold)
    if below.size == 0:
        return len(gain), float(len(gain))
    k = int(below[0])  # components 1..k count; component k+1 is the first below
    hi = gain[k - 1] if k > 0 else 1.0
    lo = max(gain[k], 1e-12)
    t = (math.log(hi) - math.log(threshold)) / max(math.log(hi) - math.log(lo), 1e-12)
    return k, k + float(np.clip(t, 0.0, 1.0))


# --------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------
def _energies(blocks: Blocks, center: bool, batch_size: int, device, dtype):
    """Each block's squared norm (about its feature means when ``center``) and those means.

    Returns ``(means, sq_norms)``: ``means`` is None without centering (no data pass: the norms
    are cached on the blocks), else a list of ``(D_b,)`` float64 tensors on ``device``.
    """
    sq_norms = [b.norm() ** 2 for b in blocks]
    means = None
    if center:
        totals = [torch.zeros(math.prod(b.mode_shape), dtype=torch.float64, device=device)
                  for b in blocks]
        for start, stop, xs in blocks.batches(batch_size, device, dtype):
            for total, x in zip(totals, xs):
                total += x.reshape(stop - start, -1).sum(0, dtype=torch.float64)
        means = [total / blocks.n_samples for total in totals]
        sq_norms = [sq - blocks.n_samples * float(mu.square().sum())
                    for sq, mu in zip(sq_norms, means)]
    for b, sq in zip(blocks, sq_norms):
        if sq <= 0.0:
            raise ValueError(
                f"block {b.name!r} is constant over the samples (zero energy"
                f"{' after centering' if center else ''}); drop it with blocks.select(...)"
            )
    return means, sq_norms


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
    random_state: int | None = 0,
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
        and what it does not" shows what centering does to the indicator (it reverses its
        relation with accuracy on the zoos measured).
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
        Sample rows of all blocks read at once; by default about ``BATCH_BYTES`` of the device
        type (16 MiB on CPU, 256 MiB on CUDA).
    device : torch.device or str, optional
        Where to compute; each block's own device by default.
    dtype : torch.dtype
        Compute dtype of the streamed products (the small eigenproblem is float64).
    random_state : int, optional
        Seed of the random projection, restarts and the split; same seed, same profile.
    progress : bool
        Show progress bars.

    Returns
    -------
    RankProfile
    """
    blocks = as_blocks(blocks)
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank must be an integer >= 1, got {max_rank!r}")
    max_rank = int(max_rank)
    if blocks.n_samples < max_rank:
        raise ValueError(
            f"max_rank={max_rank} is larger than the number of samples ({blocks.n_samples}); "
            f"pass max_rank <= {blocks.n_samples} or capture more samples"
        )
    if model not in _MODELS:
        raise ValueError(f"model must be one of {_MODELS}, got {model!r}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    if model == "cp" and not any(b.kind == "tensor" for b in blocks):
        raise ValueError(
            "model='cp' needs at least one tensor block (N x C x S): with matrix blocks only, the "
            "coupled model is the least-squares one, which is not identifiable; use model='ls' "
            "(the curve), or model='nonnegative'"
        )
    if model != "ls" and center:
        raise ValueError(
            f"model={model!r} fits the blocks as CoupledCP does, uncentered; pass center=False "
            "(the least-squares curve alone can be centered with model='ls')"
        )
    if model != "ls" and (not isinstance(n_restarts, (int, np.integer)) or n_restarts < 1):
        raise ValueError(f"n_restarts must be an integer >= 1, got {n_restarts!r}")
    weights = resolve_block_weights(block_weights, blocks.names, unknown_error=KeyError)
    dev = None if device is None else torch.device(device)
    generator = torch.Generator().manual_seed(0 if random_state is None else int(random_state))
    if random_state is None:
        generator.seed()

    if dev is None and len({b.device for b in blocks}) > 1:
        raise ValueError(
            f"blocks live on different devices {sorted({str(b.device) for b in blocks})}; "
            "pass device=... to compute on one"
        )
    dev = dev or blocks[0].device
    step = batch_rows(blocks, batch_size, device=dev, dtype=dtype)
    means, sq_norms = _energies(blocks, center, step, dev, dtype)
    scales = [w / math.sqrt(sq) if normalize else w for w, sq in zip(weights, sq_norms)]
    svd = randomized_svd(blocks, scales, max_rank, means=means, oversample=oversample,
                         n_iter=n_iter, batch_size=step, device=dev, dtype=dtype,
                         generator=generator, progress=progress)
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
    profile = RankProfile(
        ranks=np.arange(1, max_rank + 1), fit=fit, gain=gain, block_fit=block_fit,
        singular_values=sigma, estimated_rank=est, score=score,
        saturated=bool(np.all(gain >= threshold)), block_names=list(blocks.names),
        block_weights=weights, center=center, normalize=normalize, threshold=threshold,
        n_samples=blocks.n_samples, model=model,
    )
    if model != "ls":
        estimator = dict(nonnegative=model == "nonnegative", max_iter=max_iter, tol=tol,
                         block_weights=dict(zip(blocks.names, weights)), normalize=normalize,
                         batch_size=batch_size, device=dev, dtype=dtype)
        _identifiable_diagnostics(profile, blocks, estimator, n_restarts, split_half,
                                  generator, progress)
    return profile


def _subset(blocks: Blocks, index: torch.Tensor) -> Blocks:
    """The samples ``index`` of every block (a copy of those rows)."""
    return Blocks([Block(b.name, b.rows(index, dtype=b.data.dtype), b.spatial_shape, b.meta)
                   for b in blocks])


def _joint_fit(model, blocks: Blocks) -> float:
    """Joint explained variance of a fitted CoupledCP over its scaled blocks."""
    energy = np.array([(model.block_scales_[b.name] * b.norm()) ** 2 for b in blocks])
    fits = np.array([model.fit_[b.name] for b in blocks])
    return float(energy @ fits / energy.sum())


def _identifiable_diagnostics(profile: RankProfile, blocks: Blocks, estimator: dict,
                              n_restarts: int, split_half: bool, generator, progress: bool):
    """Fill the restart, split-half, core-consistency and degeneracy arrays of ``profile``.

    ``estimator`` holds the CoupledCP settings shared by every fit. Stops cleanly on
    KeyboardInterrupt, leaving NaN for the ranks not reached.
    """
    from sklearn.exceptions import ConvergenceWarning
    from tqdm.auto import tqdm

    from peekwidgets.engine import CoupledCP, core_consistency, coupled_factor_match_score
    from peekwidgets.engine import degeneracy as degeneracy_check

    n, max_rank = blocks.n_samples, profile.max_rank
    tensors = [b for b in blocks if b.kind == "tensor"]
    nan = np.full(max_rank, np.nan)
    profile.model_fit, profile.stability, profile.split_half = nan.copy(), nan.copy(), nan.copy()
    profile.converged = nan.copy()
    profile.core_consistency = {b.name: nan.copy() for b in tensors}
    profile.degenerate = np.zeros(max_rank, dtype=bool)
    seeds = torch.randint(0, 2**31 - 1, (max_rank, n_restarts + 2), generator=generator)
    halves = None
    if split_half:
        perm = torch.randperm(n, generator=generator)
        halves = [_subset(blocks, perm[: n // 2].sort().values),
                  _subset(blocks, perm[n // 2:].sort().values)]
    try:
        for i in tqdm(range(max_rank), desc=f"{profile.model} fits", disable=not progress):
            rank = i + 1
            with warnings.catch_warnings():  # recorded in profile.converged instead
                warnings.simplefilter("ignore", ConvergenceWarning)
                fits = [CoupledCP(rank, init="random", random_state=int(seeds[i, j]),
                                  **estimator).fit(blocks) for j in range(n_restarts)]
            scores = [_joint_fit(m, blocks) for m in fits]
            best = fits[int(np.argmax(scores))]
            profile.model_fit[i] = max(scores)
            profile.converged[i] = np.mean([m.converged_ for m in fits])
            if n_restarts > 1:
                profile.stability[i] = np.mean([
                    coupled_factor_match_score(a, b).score
                    for j, a in enumerate(fits) for b in fits[j + 1:]
                ])
            for b in tensors:
                weights, factors = best.cp_tensor(b.name)  # models the scaled block
                raw = (weights / best.block_scales_[b.name], factors)
                profile.core_consistency[b.name][i] = core_consistency(b, raw)
            every = [best.A_] + [f for name in best.block_names_ for f in best.factors_[name]]
            profile.degenerate[i] = degeneracy_check(every).degenerate
            if halves is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    pair = [CoupledCP(rank, init="svd", random_state=int(seeds[i, -1 - h]),
                                      **estimator).fit(half) for h, half in enumerate(halves)]
                profile.split_half[i] = coupled_factor_match_score(
                    *pair, compare_samples=False).score
    except KeyboardInterrupt:
        profile.interrupted = True
        warnings.warn(
            f"rank profile interrupted after {int(np.sum(~np.isnan(profile.model_fit)))} of "
            f"{max_rank} ranks; the identifiable diagnostics hold NaN beyond that",
            RuntimeWarning, stacklevel=3,
        )


# --------------------------------------------------------------------------------------------
# checkpoint comparison
# --------------------------------------------------------------------------------------------
@dataclass(eq=False)
class CheckpointComparison:
    """Rank profiles of several checkpoints of one architecture on the same inputs.

    Attributes
    ----------
    names : list of str
        Checkpoint names, in the order given.
    profiles : list of RankProfile
        One profile per checkpoint, all with the same capture and settings.
    accuracy : (n_checkpoints,) or None
        Accuracy on ``labels`` when labels were passed; validation only, never part of a score.
    layers : list of str
        The captured blocks.
    interrupted : bool
        True when a KeyboardInterrupt stopped the comparison; the finished checkpoints are kept.
    """

    names: list
    profiles: list
    accuracy: np.ndarray | None
    layers: list
    interrupted: bool = False
    _figures: dict = field(default_factory=dict, repr=False)

    @property
    def estimated_ranks(self) -> np.ndarray:
        """``(n_checkpoints,)`` estimated rank of each checkpoint."""
        return np.array([p.estimated_rank for p in self.profiles])

    @property
    def scores(self) -> np.ndarray:
        """``(n_checkpoints,)`` indicator score of each checkpoint (higher: more components)."""
        return np.array([p.score for p in self.profiles])

    @property
    def fits(self) -> np.ndarray:
        """``(n_checkpoints, max_rank)`` joint fit curves."""
        return np.stack([p.fit for p in self.profiles])

    def records(self) -> list[dict]:
        """One dict per checkpoint: checkpoint, estimated_rank, score, [accuracy], fit, gain."""
        rows = []
        for i, (name, p) in enumerate(zip(self.names, self.profiles)):
            row = {"checkpoint": name, "estimated_rank": p.estimated_rank, "score": p.score}
            if self.accuracy is not None:
                row["accuracy"] = float(self.accuracy[i])
            rows.append({**row, "fit": p.fit, "gain": p.gain})
        return rows

    def spearman(self) -> float | None:
        """Spearman correlation of the score with accuracy (None without labels)."""
        if self.accuracy is None or len(self.profiles) < 2:
            return None
        from scipy.stats import spearmanr

        accuracy = self.accuracy[: len(self.profiles)]
        if np.ptp(self.scores) == 0 or np.ptp(accuracy) == 0:
            return float("nan")  # a constant column has no rank correlation
        return float(spearmanr(self.scores, accuracy)[0])

    def table(self) -> str:
        """A text table: checkpoint, estimated rank, score, accuracy (when labels were given)."""
        width = max([len("checkpoint"), *map(len, self.names)])
        head = f"{'checkpoint':<{width}}  {'rank':>4}  {'score':>6}"
        if self.accuracy is not None:
            head += f"  {'accuracy':>8}"
        lines = [head]
        for row in self.records():
            sat = "+" if self.profiles[len(lines) - 1].saturated else " "
            line = f"{row['checkpoint']:<{width}}  {row['estimated_rank']:>3}{sat}  " \
                   f"{row['score']:6.2f}"
            if "accuracy" in row:
                line += f"  {row['accuracy']:8.4f}"
            lines.append(line)
        rho = self.spearman()
        if rho is not None:
            lines.append(f"Spearman(score, accuracy) = {rho:+.3f}")
        return "\n".join(lines)

    __str__ = table

    def plot(self):
        """A bqplot Figure: the marginal-gain curve of every checkpoint (log scale), coloured by
        checkpoint order, with the threshold. Built once and kept on the comparison."""
        if "profiles" not in self._figures:
            self._figures["profiles"] = _comparison_figure(self)
        return self._figures["profiles"]

    def plot_scores(self):
        """A bqplot Figure: score per checkpoint, and accuracy on a second axis when known."""
        if "scores" not in self._figures:
            self._figures["scores"] = _scores_figure(self)
        return self._figures["scores"]

    def __repr__(self) -> str:
        return f"CheckpointComparison({len(self.profiles)} checkpoints)\n{self.table()}"


def _colors(n: int) -> list[str]:
    """``n`` hex colours of viridis, from dark blue (first) to yellow (last)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    return [to_hex(c) for c in colormaps["viridis"](np.linspace(0, 1, max(n, 1)))]


def _comparison_figure(comp: CheckpointComparison):
    import bqplot as bq

    max_rank = max(p.max_rank for p in comp.profiles)
    x_sc, y_sc = bq.LinearScale(min=0.5, max=max_rank + 0.5), bq.LogScale()
    gains = np.full((len(comp.profiles), max_rank), np.nan)
    for i, p in enumerate(comp.profiles):
        gains[i, : p.max_rank] = np.maximum(p.gain, 1e-6)
    labels = [f"{n} (score {p.score:.1f})" for n, p in zip(comp.names, comp.profiles)]
    marks = [
        bq.Lines(x=np.arange(1, max_rank + 1), y=gains, scales={"x": x_sc, "y": y_sc},
                 colors=_colors(len(comp.profiles)), labels=labels, display_legend=True,
                 marker="circle", marker_size=16),
        bq.Lines(x=[0.5, max_rank + 0.5], y=[comp.profiles[0].threshold] * 2,
                 scales={"x": x_sc, "y": y_sc}, colors=["gray"], line_style="dashed"),
    ]
    axes = [bq.Axis(scale=x_sc, label="component R", tick_format="d"),
            bq.Axis(scale=y_sc, side="left", label="marginal gain in joint fit")]
    return bq.Figure(marks=marks, axes=axes, title="rank profiles by checkpoint",
                     legend_location="top-right",
                     fig_margin={"top": 50, "bottom": 50, "left": 70, "right": 20})


def _scores_figure(comp: CheckpointComparison):
    import bqplot as bq

    x_sc = bq.OrdinalScale()
    s_sc = bq.LinearScale()
    marks = [bq.Lines(x=comp.names[: len(comp.profiles)], y=comp.scores,
                      scales={"x": x_sc, "y": s_sc}, marker="circle", colors=["#1f77b4"],
                      labels=["score"], display_legend=True)]
    axes = [bq.Axis(scale=x_sc, label="checkpoint"),
            bq.Axis(scale=s_sc, side="left", label="rank score")]
    if comp.accuracy is not None:
        a_sc = bq.LinearScale(min=0.0, max=1.0)
        marks.append(bq.Lines(x=comp.names[: len(comp.profiles)],
                              y=comp.accuracy[: len(comp.profiles)],
                              scales={"x": x_sc, "y": a_sc}, colors=["#ff7f0e"],
                              line_style="dashed", marker="square", labels=["accuracy"],
                              display_legend=True))
        axes.append(bq.Axis(scale=a_sc, side="right",
                            label="accuracy (validation only)"))
    return bq.Figure(marks=marks, axes=axes, title="rank score by checkpoint")


def _state_of(checkpoint):
    """The state dict of a checkpoint given as a module, a state dict or a models.Checkpoint."""
    if isinstance(checkpoint, torch.nn.Module):
        return checkpoint.state_dict()
    state = getattr(checkpoint, "state_dict", checkpoint)
    if isinstance(state, Mapping) and all(isinstance(v, torch.Tensor) for v in state.values()):
        return state
    raise TypeError(
        f"a checkpoint must be an nn.Module, a state dict or a peekwidgets.demo.models.Checkpoint, "
        f"got {type(checkpoint).__name__}"
    )


def _named_checkpoints(checkpoints, names) -> tuple[list[str], list]:
    if isinstance(checkpoints, Mapping):
        if checkpoints and all(isinstance(v, torch.Tensor) for v in checkpoints.values()):
            raise TypeError("checkpoints is a single state dict; pass a list of checkpoints "
                            "(or a {name: checkpoint} dict) to compare")
        items = list(checkpoints.items())
    elif isinstance(checkpoints, Sequence) and not isinstance(checkpoints, str):
        items = [(getattr(c, "name", None) or f"checkpoint {i}", c)
                 for i, c in enumerate(checkpoints)]
    else:
        raise TypeError(f"checkpoints must be a list or a {{name: checkpoint}} dict, got "
                        f"{type(checkpoints).__name__}")
    if not items:
        raise ValueError("no checkpoints to compare; pass at least one")
    if names is not None:
        if len(names) != len(items):
            raise ValueError(f"names has {len(names)} entries for {len(items)} checkpoints; "
                             "pass one name per checkpoint")
        items = [(str(n), c) for n, (_, c) in zip(names, items)]
    return [str(n) for n, _ in items], [c for _, c in items]


def _same_state(state: Mapping, reference: Mapping) -> bool:
    """True when two state dicts hold the same names and exactly equal tensors."""
    return state.keys() == reference.keys() and all(
        torch.equal(state[k].to(reference[k].device), reference[k]) for k in reference
    )


def _check_architecture(name: str, checkpoint, state, template: torch.nn.Module):
    """Raise a clear error when ``checkpoint`` does not fit ``template``'s architecture."""
    if isinstance(checkpoint, torch.nn.Module) and type(checkpoint) is not type(template):
        raise ValueError(
            f"checkpoint {name!r} is a {type(checkpoint).__name__}, the model is a "
            f"{type(template).__name__}; compare checkpoints of one architecture only"
        )
    ref = template.state_dict()
    missing, extra = sorted(set(ref) - set(state)), sorted(set(state) - set(ref))
    shapes = {k: (tuple(state[k].shape), tuple(ref[k].shape)) for k in set(ref) & set(state)
              if tuple(state[k].shape) != tuple(ref[k].shape)}
    if missing or extra or shapes:
        parts = [f"missing {missing[:5]}" if missing else "",
                 f"unexpected {extra[:5]}" if extra else "",
                 f"shapes (checkpoint, model) {dict(sorted(shapes.items())[:5])}" if shapes else ""]
        raise ValueError(
            f"checkpoint {name!r} does not fit the architecture of the model "
            f"({type(template).__name__}): {'; '.join(p for p in parts if p)}; compare "
            "checkpoints of one architecture only, with a model (or factory) of that architecture"
        )


@torch.no_grad()
def _predictions(model: torch.nn.Module, inputs, input_fn=None, batch_size: int = 512):
    """``(n_samples,)`` argmax of the model's output over ``inputs`` (for validation only)."""
    from torch.utils.data import DataLoader, Dataset

    if isinstance(inputs, np.ndarray):
        inputs = torch.from_numpy(inputs)
    if isinstance(inputs, torch.Tensor):
        batches = inputs.split(batch_size)
    elif isinstance(inputs, Dataset):
        batches = DataLoader(inputs, batch_size=batch_size)
    else:
        batches = inputs
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    out = []
    for batch in batches:
        x = input_fn(batch) if input_fn is not None else (
            batch[0] if isinstance(batch, (tuple, list)) else batch)
        out.append(model(x.to(device=device, dtype=dtype)).argmax(-1).cpu())
    return torch.cat(out).numpy()


def compare_checkpoints(
    model_or_factory,
    checkpoints,
    inputs,
    layers="auto",
    labels=None,
    *,
    names=None,
    max_rank: int = 20,
    capture_kwargs: dict | None = None,
    progress: bool = True,
    model_profile: RankProfile | None = None,
    **profile_kwargs,
) -> CheckpointComparison:
    """Rank profiles of several checkpoints of one architecture, on the same inputs.

    Every checkpoint is loaded into one working copy of the model (the user's model is never
    changed), captured with the same layers and settings, and profiled with the same settings.

    Parameters
    ----------
    model_or_factory : nn.Module or callable
        A model of the architecture (deep-copied, never modified) or a function returning one.
    checkpoints : list or {name: checkpoint}
        Modules, state dicts or :class:`peekwidgets.demo.models.Checkpoint` objects, all of the
        architecture of ``model_or_factory``.
    inputs
        Whatever :func:`peekwidgets.capture.capture` takes (tensor, Dataset, DataLoader, ...).
    layers : "auto", str, type, or list
        As in :func:`peekwidgets.capture.capture`.
    labels : array-like of shape (n_samples,), optional
        Only adds an accuracy column, for validation; it never enters the indicator.
    names : list of str, optional
        Checkpoint names (default: the dict keys, ``Checkpoint.name`` or ``"checkpoint i"``).
    max_rank : int
        Largest rank profiled.
    capture_kwargs : dict, optional
        Extra arguments of ``capture`` (``input_fn``, ``batch_size``, ``device``, ...).
    progress : bool
        Show a progress bar over checkpoints.
    model_profile : RankProfile, optional
        The profile of ``model_or_factory`` itself on these inputs, computed with the same
        layers and settings; a checkpoint whose weights equal the model's reuses it instead of
        being captured and profiled again (for example the final checkpoint of a training run).
    **profile_kwargs
        Extra arguments of :func:`rank_profile` (``center``, ``threshold``, ``model``, ...).

    Returns
    -------
    CheckpointComparison
        Stops cleanly on KeyboardInterrupt and keeps the checkpoints already profiled.
    """
    import copy

    from tqdm.auto import tqdm

    from peekwidgets.capture import capture

    if isinstance(model_or_factory, torch.nn.Module):
        work = copy.deepcopy(model_or_factory)
    elif callable(model_or_factory):
        work = model_or_factory()
        if not isinstance(work, torch.nn.Module):
            raise TypeError(f"the model factory returned a {type(work).__name__}, "
                            "expected an nn.Module")
    else:
        raise TypeError(f"model_or_factory must be an nn.Module or a function returning one, "
                        f"got {type(model_or_factory).__name__}")
    names, checkpoints = _named_checkpoints(checkpoints, names)
    states = [_state_of(c) for c in checkpoints]
    model_state = None
    if model_profile is not None:
        if not isinstance(model_or_factory, torch.nn.Module):
            raise ValueError("model_profile is the profile of the model itself; pass that "
                             "model (not a factory) as model_or_factory, or leave it out")
        if model_profile.max_rank != max_rank:
            raise ValueError(f"model_profile has max_rank {model_profile.max_rank}, the "
                             f"comparison max_rank {max_rank}; profile with the same settings")
        model_state = model_or_factory.state_dict()
    for name, c, state in zip(names, checkpoints, states):
        _check_architecture(name, c, state, work)
    capture_kwargs = dict(capture_kwargs or {})
    for key in ("label_fn", "progress"):
        if key in capture_kwargs:
            raise ValueError(f"capture_kwargs may not set {key!r}; compare_checkpoints sets "
                             "it, leave it out")
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank must be an integer >= 1, got {max_rank!r}")
    labels = None if labels is None else np.asarray(labels)

    profiles, accuracy, captured, interrupted = [], [], [], False
    try:
        for state in tqdm(states, desc="checkpoints", disable=not progress):
            work.load_state_dict(state)
            work.eval()
            if model_state is not None and _same_state(state, model_state):
                profile = model_profile
            else:
                blocks = capture(work, inputs, layers, progress=False, **capture_kwargs)
                profile = rank_profile(blocks, max_rank, progress=False, **profile_kwargs)
                del blocks
            profiles.append(profile)
            captured = profile.block_names
            if labels is not None:
                pred = _predictions(work, inputs, capture_kwargs.get("input_fn"))
                if len(pred) != len(labels):
                    raise ValueError(f"labels has {len(labels)} entries for {len(pred)} "
                                     "inputs; pass one label per input")
                accuracy.append(float(np.mean(pred == labels)))
    except KeyboardInterrupt:
        interrupted = True
        warnings.warn(f"comparison interrupted after {len(profiles)} of {len(names)} "
                      "checkpoints; keeping those", RuntimeWarning, stacklevel=2)
    if not profiles:
        raise KeyboardInterrupt("comparison interrupted before the first checkpoint finished")
    return CheckpointComparison(names[: len(profiles)], profiles,
                                None if labels is None else np.array(accuracy), captured,
                                interrupted)
