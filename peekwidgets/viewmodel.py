"""The view model: what every front end reads from one fit, computed once per fit.

The dashboard (:mod:`peekwidgets.widgets`) and the headless report (:mod:`peekwidgets.report`)
both draw from a :class:`ViewModel`, so they show the same component order, shares, top inputs
and images. No widget library is imported here.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ViewModel"]

_REQUIRED = ("weights_", "A_", "factors_", "block_names_", "block_kinds_", "explained_variance_")


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
        The raw folded-in inputs (rows of their ``"input"`` block).

    Attributes
    ----------
    A : (n_samples, rank) array
    weights : (rank,) array
    names : list of str, the fitted blocks in order (input first).
    kinds : list of str, ``"matrix"`` or ``"tensor"`` per fitted block.
    shares : (n_blocks, rank) array, the signed share of each block's variance that each
        component explains, ``<X_b, X_b^(r)> / ||X_b||^2`` (``estimator.explained_variance_``):
        a row sums to the block's fit; a component that cancels part of another is negative.
    block_fit : (n_blocks,) array, explained variance of each block.
    order : (rank, n_samples) int array, samples by decreasing loading per component.
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

    def top(self, component: int, k: int) -> np.ndarray:
        """Indices of the ``k`` samples with the largest loading ``A[:, component]``."""
        return self.order[component, :k]

    def kind(self, name: str) -> str:
        return self.kinds[self.names.index(name)]

    def block_index(self, name: str) -> int:
        return self.names.index(name)

    def input_rows(self, index) -> np.ndarray:
        """Raw input rows ``(len(index), ...)`` as float32 numpy (None without an input block)."""
        if self.input is None:
            return None
        # index_select: torch's advanced indexing (what Block.rows does) is ~100x slower here
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64), device=self.input.device)
        return self.input.data.index_select(0, idx).to("cpu", torch.float32).numpy()

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
