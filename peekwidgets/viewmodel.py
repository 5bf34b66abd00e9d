"""The view model: what every front end reads from one fit, computed once per fit.

The dashboard (:mod:`peekwidgets.widgets`) and the headless report (:mod:`peekwidgets.report`)
both draw from a :class:`ViewModel`, so they show the same component order, shares, top inputs
and images. No widget library is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from peekwidgets.analysis.checkpoints import CRITERIA
from peekwidgets.engine.coupled import NEGATIVE_SHARE
from peekwidgets.engine.diagnostics import DEGENERACY_THRESHOLD, _congruences

__all__ = ["DUPLICATE_CONGRUENCE", "LOADS_ON_Z", "MEAN_LIKE_COSINE", "FitHealth", "ViewModel",
           "checkpoint_criteria", "class_name", "crowded", "prediction_block"]

_REQUIRED = ("weights_", "A_", "factors_", "block_names_", "block_kinds_", "explained_variance_")

#: Two components whose congruence (product over all modes, ``A`` and every block factor, of
#: the cosines between their columns; as the engine's degeneracy check computes) exceeds this
#: are near-duplicates.
DUPLICATE_CONGRUENCE = 0.95
#: A component whose loadings have at least this cosine with the constant vector (every sample
#: the same) is mean-like: in an uncentered fit it carries the mean activation.
MEAN_LIKE_COSINE = 0.97
#: A selection loads on a component when its mean loading is at least this many standard
#: deviations (of all samples' loadings) above the mean of all samples (:meth:`ViewModel.loads_on`).
LOADS_ON_Z = 1.0


@dataclass(frozen=True)
class FitHealth:
    """How a fit ended and which of its components are suspect.

    Attributes
    ----------
    state : str
        ``"converged"``, ``"max_iter"`` (stopped at ``max_iter`` before the loss settled),
        ``"interrupted"`` or ``"unknown"`` (an estimator without these attributes).
    n_iter : int or None
        Sweeps run.
    change : float
        Relative change of the loss in the last sweep (nan when unknown).
    dead : tuple of int
        Components whose sample loadings ``A[:, r]`` (or weight) are all zero: they describe
        no sample.
    duplicates : tuple of (int, int, float)
        Pairs ``(r, s, congruence)``, r < s, of near-duplicate components (congruence above
        :data:`DUPLICATE_CONGRUENCE`).
    cancelling : tuple of (int, int, float, str)
        Pairs ``(r, s, congruence, block)`` that cancel each other in a block (a two-factor
        degeneracy): their congruence there (the product of the cosines of ``A`` and of that
        block's factors) is below the engine's
        :data:`~peekwidgets.engine.diagnostics.DEGENERACY_THRESHOLD`, and one of the two
        is larger than the whole block (its term's norm above the block's: the terms
        outgrow the data they cancel to fit); the block where they cancel most.
        In a coupled fit the cancellation can hold in one block only, where the product
        over every block's modes would not show it.
    signed : tuple of (str, float)
        Blocks of a nonnegative fit whose negative values hold more than
        :data:`~peekwidgets.engine.coupled.NEGATIVE_SHARE` of their squared norm, with that
        share (``estimator.negative_share_``): no nonnegative model explains it.
    """

    state: str
    n_iter: int | None
    change: float
    dead: tuple
    duplicates: tuple
    cancelling: tuple = ()
    signed: tuple = ()

    @property
    def ok(self) -> bool:
        """Converged with no dead, duplicate or cancelling component and no signed block of a
        nonnegative fit."""
        return (self.state == "converged" and not self.dead and not self.duplicates
                and not self.cancelling and not self.signed)

    @property
    def suspect(self) -> set:
        """Every component that is dead, duplicates another or cancels another."""
        return set(self.dead) | {r for pair in self.duplicates + self.cancelling
                                 for r in pair[:2]}

    def flags(self, component: int) -> list[str]:
        """What is wrong with one component, each with the fix, in words (empty when fine)."""
        out = []
        if component in self.dead:
            out.append(f"component {component} is dead: every sample's loading is 0, so it "
                       "describes no input; refit at a lower rank")
        for pairs, what, fix in ((self.duplicates, "nearly duplicates", "a lower rank"),
                                 (self.cancelling, "cancels", "a lower rank or nonnegative")):
            for r, s, c, *block in pairs:
                if component in (r, s):
                    where = f" in {block[0]}" if block else ""
                    out.append(f"component {component} {what} component {s + r - component}"
                               f"{where} (congruence {c:.2f}); refit at {fix}")
        return out

    def problems(self, rank: int) -> list[str]:
        """Every problem of the fit, each with the fix, in words (empty when healthy)."""
        out = []
        if self.state == "max_iter":
            out.append(f"stopped at max_iter after {self.n_iter} sweeps before converging (last "
                       f"relative change {self.change:.1e}); refit with a larger max_iter")
        elif self.state == "interrupted":
            out.append(f"interrupted after {self.n_iter} sweeps (best factors so far); refit "
                       "to finish")
        if self.dead:
            out.append(f"dead component{'s' if len(self.dead) > 1 else ''} "
                       f"{', '.join(map(str, self.dead))} (all-zero loadings); refit at rank "
                       f"{max(rank - len(self.dead), 1)}")
        for r, s, c in self.duplicates:
            out.append(f"components {r} and {s} are near-duplicates (congruence {c:.2f}); "
                       "refit at a lower rank")
        for r, s, c, block in self.cancelling:
            out.append(f"components {r} and {s} cancel each other in {block} (congruence "
                       f"{c:.2f}, a two-factor degeneracy); refit at a lower rank or "
                       "nonnegative")
        for block, share in self.signed:
            out.append(f"{block} is signed: its negative values ({share:.0%} of its variance) "
                       "are left unexplained by the nonnegative fit; refit least squares or "
                       "without that block")
        return out


def class_name(value, class_names=None) -> str:
    """A label's name: ``class_names[value]`` for an integer label in range, else its text."""
    if class_names is not None and isinstance(value, (int, np.integer)) \
            and 0 <= value < len(class_names):
        return str(class_names[int(value)])
    return str(value)


def crowded(names, chars: int = 40) -> bool:
    """Whether axis labels ``names`` side by side would run together (more than ``chars``
    characters in all): the figures then slant them."""
    return sum(map(len, names)) > chars


def checkpoint_criteria(comparison) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """``[(key, label, scaled, values)]``: each label-free criterion of a
    :class:`~peekwidgets.analysis.CheckpointComparison` that has values, as the dashboard and
    the report draw it: ``values`` over the checkpoints mapped to [0, 1] by their range
    (``scaled``; 0.5 where constant), labelled with that range."""
    lines = []
    for key, values in comparison.criteria().items():
        if np.all(np.isnan(values)):
            continue  # a baseline without its block
        low, high = np.nanmin(values), np.nanmax(values)
        scaled = np.full(len(values), 0.5) if high == low else (values - low) / (high - low)
        lines.append((key, f"{CRITERIA[key]} ({low:.3g} to {high:.3g})", scaled, values))
    return lines


def prediction_block(blocks) -> str | None:
    """The block of ``blocks`` whose argmax is the model's prediction: the last captured
    matrix block with more than one column (the logits, in a classifier), or None."""
    names = [b.name for b in blocks if b.kind == "matrix" and b.name != "input"
             and b.shape[1] > 1]
    return names[-1] if names else None


def fit_health(estimator, A: np.ndarray, weights: np.ndarray, factors: dict,
               terms: np.ndarray) -> FitHealth:
    """The :class:`FitHealth` of a fitted estimator: its ``A (N, R)``, ``weights (R,)``, block
    ``factors`` and ``terms (n_blocks, R)``, the norm of each component's term in each block
    over the block's norm (in the order of ``factors``)."""
    n_iter = getattr(estimator, "n_iter_", None)
    losses = list(getattr(estimator, "loss_history_", None) or [])
    change = (abs(losses[-2] - losses[-1]) / losses[-2]
              if len(losses) > 1 and losses[-2] else float("nan"))
    if getattr(estimator, "interrupted_", False):
        state = "interrupted"
    elif not hasattr(estimator, "converged_"):
        state = "unknown"
    else:
        state = "converged" if estimator.converged_ else "max_iter"
    dead = tuple(int(r) for r in np.flatnonzero((np.linalg.norm(A, axis=0) == 0)
                                                 | (weights == 0)))
    mats = [A, *(f for fs in factors.values() for f in fs)]
    congruence = _congruences(mats, mats)
    names = list(factors)
    per_block = np.stack([_congruences([A, *fs], [A, *fs]) for fs in factors.values()])
    rank = A.shape[1]
    pairs = [(r, s) for r in range(rank) for s in range(r + 1, rank)
             if r not in dead and s not in dead]
    # terms that cancel outgrow the data: one of the two is larger than the whole block
    per_block[np.maximum(terms[:, :, None], terms[:, None, :]) <= 1] = np.inf
    least = [(r, s, int(np.argmin(per_block[:, r, s]))) for r, s in pairs]
    cancelling = tuple((r, s, float(per_block[b, r, s]), names[b]) for r, s, b in least
                       if per_block[b, r, s] < DEGENERACY_THRESHOLD)
    cancel = {(r, s) for r, s, *_ in cancelling}
    signed = tuple((name, float(share)) for name, share
                   in (getattr(estimator, "negative_share_", None) or {}).items()
                   if share > NEGATIVE_SHARE)
    return FitHealth(state, None if n_iter is None else int(n_iter), float(change), dead,
                     tuple((r, s, float(congruence[r, s])) for r, s in pairs
                           if congruence[r, s] > DUPLICATE_CONGRUENCE
                           and (r, s) not in cancel),
                     cancelling, signed)


class ViewModel:
    """A fitted coupled factorization plus its blocks, prepared for the views.

    Everything a component switch needs is precomputed here once per fit
    (per-component sample orderings, per-block shares), so switching
    components only indexes arrays.

    Parameters
    ----------
    blocks : Blocks
        The captured blocks (the ``"input"`` block, when present, is drawn by
        the gallery even if it did not take part in the fit).
    estimator : CoupledCP
        A fitted estimator (``weights_ (R,)``, ``A_ (N, R)``, ``factors_``,
        ``block_names_``, ``block_kinds_``, ``explained_variance_ (n_blocks, R)``,
        optionally ``fit_``).
    folded_A : (M, R) array, optional
        Sample loadings of folded-in inputs (from ``estimator.transform``).
    folded_inputs : (M, ...) array, optional
        The folded-in inputs as drawn (rows of their ``"input"`` block, or of their
        thumbnails).

    Attributes
    ----------
    A : (n_samples, rank) array
    weights : (rank,) array
    names : list of str, the fitted blocks in order (input first).
    unfitted : list of str, the blocks captured but left out of the fit (an all-zero block,
        or one the refit did not take).
    kinds : list of str, ``"matrix"`` or ``"tensor"`` per fitted block.
    shares : (n_blocks, rank) array, the signed share of each block's variance that each
        component explains, ``<X_b, X_b^(r)> / ||X_b||^2`` (``estimator.explained_variance_``):
        a row sums to the block's fit; a component that cancels part of another is negative.
    block_fit : (n_blocks,) array, explained variance of each block.
    order : (rank, n_samples) int array, samples by decreasing loading per component.
    total_share : (rank,) array, each component's signed share of all fitted blocks' variance
        together (the blocks counted as the fit weighs them; equally with the default
        normalization): ``shares`` averaged over blocks by their scaled squared norms.
    health : FitHealth, how the fit ended, dead and near-duplicate components.
    mean_like : (rank,) bool array, components whose loadings are nearly the same for every
        sample (cosine with the constant vector at least :data:`MEAN_LIKE_COSINE`); in an
        uncentered fit such a component carries the mean activation.
    """

    def __init__(self, blocks, estimator, folded_A=None, folded_inputs=None):
        missing = [a for a in _REQUIRED if not hasattr(estimator, a)]
        if missing:
            raise ValueError(
                f"{type(estimator).__name__} is not fitted (missing {missing}); "
                "call estimator.fit(blocks) first"
            )
        self.blocks = blocks
        self.estimator = estimator
        self.A = np.asarray(estimator.A_, dtype=float)
        self.weights = np.asarray(estimator.weights_, dtype=float)
        self.names = list(estimator.block_names_)
        self.unfitted = [n for n in blocks.names if n not in self.names]
        self.kinds = list(estimator.block_kinds_)
        if self.A.shape[0] != blocks.n_samples:
            raise ValueError(
                f"the estimator was fitted on {self.A.shape[0]} samples but blocks has "
                f"{blocks.n_samples}; pass the blocks it was fitted on"
            )
        unknown = [n for n in self.names if n not in blocks.names]
        if unknown:
            raise ValueError(
                f"fitted blocks {unknown} are not in blocks {blocks.names}; "
                "pass the blocks the estimator was fitted on"
            )
        self.factors = {n: [np.asarray(f, dtype=float) for f in estimator.factors_[n]]
                        for n in self.names}
        self.shares = np.asarray(estimator.explained_variance_, dtype=float).reshape(
            len(self.names), -1)
        fit = getattr(estimator, "fit_", None) or {}
        self.block_fit = np.array([float(fit.get(n, np.nan)) for n in self.names])
        self.order = np.argsort(-self.A, axis=0, kind="stable").T.copy()
        self.total_share = self._block_weights() @ self.shares
        self.health = fit_health(estimator, self.A, self.weights, self.factors,
                                 self._term_norms())
        norms = np.linalg.norm(self.A, axis=0) * np.sqrt(self.n_samples)
        cosine = self.A.sum(axis=0) / np.where(norms > 0, norms, 1.0)
        self.mean_like = cosine >= MEAN_LIKE_COSINE
        self.input = blocks["input"] if "input" in blocks.names else None
        rank = self.rank
        self.folded_A = np.zeros((0, rank)) if folded_A is None else np.asarray(folded_A, float)
        self.folded_inputs = folded_inputs
        if self.folded_A.ndim != 2 or self.folded_A.shape[1] != rank:
            raise ValueError(f"folded_A must be (M, {rank}), got {self.folded_A.shape}")

    @property
    def rank(self) -> int:
        return self.A.shape[1]

    @property
    def n_samples(self) -> int:
        return self.A.shape[0]

    @property
    def nonnegative(self) -> bool:
        return bool(getattr(self.estimator, "nonnegative", False))

    @property
    def opening_component(self) -> int:
        """The component a view opens on: the first live one that is not mean-like (0 when
        every component is dead or mean-like)."""
        for r in range(self.rank):
            if not self.mean_like[r] and r not in self.health.dead:
                return r
        return 0

    def _term_norms(self) -> np.ndarray:
        """``(n_blocks, rank)`` the norm of each component's term in each scaled block over
        the block's norm (``A_`` has unit-norm columns); 0 when the estimator does not say
        how it scaled the blocks."""
        norms = self._scaled_norms()
        if norms is None:
            return np.zeros((len(self.names), self.rank))
        terms = np.array([self.weights * np.prod([np.linalg.norm(f, axis=0) for f in fs], axis=0)
                          for fs in self.factors.values()])
        return terms / np.where(norms > 0, norms, np.inf)[:, None]

    def _scaled_norms(self) -> np.ndarray | None:
        """``(n_blocks,)`` each fitted block's norm as the fit scaled it, or None when the
        estimator does not say how it scaled the blocks."""
        scales = getattr(self.estimator, "block_scales_", None)
        if not scales:
            return None
        return np.array([scales[n] * self.blocks[n].norm() for n in self.names])

    def _block_weights(self) -> np.ndarray:
        """``(n_blocks,)`` each fitted block's scaled squared norm over their sum (equal when
        the estimator does not say how it scaled the blocks)."""
        norms = self._scaled_norms()
        if norms is None:
            return np.full(len(self.names), 1.0 / len(self.names))
        return norms ** 2 / (norms ** 2).sum()

    def selection_z(self, index) -> np.ndarray:
        """``(rank,)`` how strongly samples ``index`` load on each component relative to all
        samples: their mean loading minus the mean over all samples, in standard deviations
        of all samples' loadings (0 for a component whose loadings are all equal)."""
        index = np.asarray(index, dtype=np.int64)
        if index.size == 0:
            return np.zeros(self.rank)
        spread = self.A.std(axis=0)
        diff = self.A[index].mean(axis=0) - self.A.mean(axis=0)
        return np.divide(diff, spread, out=np.zeros(self.rank), where=spread > 0)

    def loads_on(self, index) -> np.ndarray:
        """The components samples ``index`` load on: :meth:`selection_z` at least
        :data:`LOADS_ON_Z`, strongest first."""
        z = self.selection_z(index)
        hits = np.flatnonzero(z >= LOADS_ON_Z)
        return hits[np.argsort(-z[hits], kind="stable")]

    @property
    def prediction_block(self) -> str | None:
        """The block whose argmax is the model's prediction (:func:`prediction_block`)."""
        return prediction_block(self.blocks)

    @property
    def predictions(self) -> np.ndarray | None:
        """``(n_samples,)`` argmax of :attr:`prediction_block` per sample, or None."""
        if "_predictions" not in self.__dict__:
            name = self.prediction_block
            self._predictions = (None if name is None else
                                 self.blocks[name].data.argmax(dim=1).cpu().numpy())
        return self._predictions

    def top(self, component: int, k: int) -> np.ndarray:
        """Indices of the ``k`` samples with the largest loading ``A[:, component]``."""
        return self.order[component, :k]

    def kind(self, name: str) -> str:
        return self.kinds[self.names.index(name)]

    def block_index(self, name: str) -> int:
        return self.names.index(name)

    def input_rows(self, index) -> np.ndarray:
        """Input rows ``(len(index), ...)`` as drawn, float32 numpy: the raw inputs, or their
        thumbnails when the input block was pooled (``blocks.thumbnails``); None without an
        input block."""
        if self.input is None:
            return None
        shown = self.input if self.blocks.thumbnails is None else self.blocks.thumbnails
        # index_select: torch's advanced indexing (what Block.rows does) is ~100x slower here
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64), device=shown.device)
        return shown.data.index_select(0, idx).to("cpu", torch.float32).numpy()

    def with_folded(self, A_new: np.ndarray, inputs: np.ndarray | None) -> ViewModel:
        """A copy with folded-in samples appended (no refit, orderings reused)."""
        new = object.__new__(ViewModel)
        new.__dict__.update(self.__dict__)
        A_new = np.asarray(A_new, dtype=float)
        if A_new.ndim != 2 or A_new.shape[1] != self.rank:
            raise ValueError(f"folded-in loadings must be (M, {self.rank}), got {A_new.shape}")
        new.folded_A = np.vstack([self.folded_A, A_new])
        if inputs is not None:
            inputs = np.asarray(inputs)
            prev = self.folded_inputs
            new.folded_inputs = inputs if prev is None else np.concatenate([prev, inputs])
        return new
