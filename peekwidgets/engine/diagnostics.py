"""Diagnostics of CP and coupled CP models: fit, core consistency, factor match, degeneracy.

Everything here reads a model through TensorLy's CP convention, ``(weights, factors)`` with
``factors = [A, B]`` for a matrix block ``(n_samples, n_features)`` or ``[A, U, V]`` for a
tensor block ``(n_samples, n_channels, n_positions)``, or, for the coupled helpers, through
the public fitted attributes of an estimator (``A_``, ``factors_``, ``weights_``). Nothing
depends on how a model was fitted.

Data-sized work (core consistency, explained variance) runs in torch over sample batches of a
:class:`~peekwidgets.blocks.Block`, on the device and in the dtype asked for (float64 by
default, so sums do not lose digits), and returns numpy or Python floats. Factor-sized work
(factor match score, degeneracy) runs in numpy.

Under a process group (:mod:`peekwidgets.distributed`), where each process holds its rows of
the samples (of a block and of ``A``), :func:`core_consistency`, :func:`explained_variance`,
:func:`component_explained_variance` and :func:`coupled_factor_match_score` reduce their sums
over samples, so they give every process the value of all samples. :func:`factor_match_score`
and :func:`degeneracy` take plain factor lists and do not know which one is split: pass them
factors that are whole on every process (block factors; the sample factor only after
gathering its rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from peekwidgets import distributed
from peekwidgets.blocks import Block, batch_rows
from peekwidgets.engine import ops

__all__ = [
    "DEGENERACY_THRESHOLD",
    "CoupledMatch",
    "Degeneracy",
    "component_explained_variance",
    "core_consistency",
    "coupled_factor_match_score",
    "degeneracy",
    "explained_variance",
    "factor_match_score",
]

#: A pair of components whose triple cosine falls below this value is flagged as a two-factor
#: degeneracy. Diverging, mutually cancelling CP components have a triple cosine that tends to
#: -1 as the fit goes on; the threshold -0.85 is the one commonly used in the PARAFAC
#: literature (Harshman & Lundy 1984; Krijnen & Kroonenberg 2000), and well-posed models rarely
#: come near it.
DEGENERACY_THRESHOLD = -0.85


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
def _as_block(data) -> Block:
    """A Block around ``data`` (a Block, torch tensor or array-like), without copying."""
    if isinstance(data, Block):
        return data
    tensor = data if isinstance(data, torch.Tensor) else torch.as_tensor(np.asarray(data))
    if not tensor.is_floating_point():
        tensor = tensor.double()
    return Block("data", tensor)


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _check_factors(factors, name: str = "factors") -> list[np.ndarray]:
    """Factor matrices as float64 numpy arrays with one common number of columns."""
    if isinstance(factors, (np.ndarray, torch.Tensor)) or not isinstance(factors, Sequence):
        raise TypeError(
            f"{name} must be a list of factor matrices (one (dim, rank) array per mode), "
            f"got {type(factors).__name__}"
        )
    mats = [_to_numpy(f) for f in factors]
    if not mats:
        raise ValueError(f"{name} is empty: pass one (dim, rank) factor matrix per mode")
    for mode, f in enumerate(mats):
        if f.ndim != 2:
            raise ValueError(
                f"{name}[{mode}] must be a (dim, rank) matrix, got shape {f.shape}"
            )
    ranks = [f.shape[1] for f in mats]
    if len(set(ranks)) > 1:
        raise ValueError(
            f"{name} have different numbers of columns {ranks}; every factor matrix must "
            "have one column per component"
        )
    return mats


def _check_cp(cp_tensor, shape: tuple[int, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(weights (R,), factors)`` of a CP tensor, checked against a data ``shape``."""
    try:
        weights, factors = cp_tensor
    except (TypeError, ValueError):
        raise TypeError(
            "cp_tensor must be a CPTensor or a (weights, factors) pair, "
            f"got {type(cp_tensor).__name__}"
        ) from None
    factors = _check_factors(factors)
    rank = factors[0].shape[1]
    weights = np.ones(rank) if weights is None else _to_numpy(weights).reshape(-1)
    if weights.shape != (rank,):
        raise ValueError(
            f"cp_tensor has {weights.size} weights for {rank} components; pass one weight per "
            "component (or None)"
        )
    dims = tuple(f.shape[0] for f in factors)
    if dims != tuple(shape):
        raise ValueError(
            f"cp_tensor factors have rows {dims} but the data has shape {tuple(shape)}; "
            "pass one factor matrix per mode, sample factor first, fitted to this data"
        )
    return weights, factors


def _torch(x: np.ndarray, device, dtype) -> torch.Tensor:
    return torch.as_tensor(x, dtype=dtype, device=device)


def _reconstruct(a_rows: torch.Tensor, mats: Sequence[torch.Tensor]) -> torch.Tensor:
    """The model's rows ``(n, *mode_shape)`` from scaled sample rows ``a_rows (n, R)``."""
    if len(mats) == 1:
        return a_rows @ mats[0].T
    U, V = mats
    return (a_rows[:, None, :] * U) @ V.T


# --------------------------------------------------------------------------------------------
# core consistency
# --------------------------------------------------------------------------------------------
def core_consistency(
    tensor,
    cp_tensor,
    *,
    normalized: bool = False,
    batch_size: int | None = None,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> float:
    """Core consistency (CORCONDIA, Bro & Kiers 2003) of a CP model of a 3-way block, in percent.

    The least-squares Tucker core of the data given the CP factors is
    ``G = X x1 (A diag(w))^+ x2 U^+ x3 V^+`` (the pseudo-inverse of a Kronecker product is the
    Kronecker product of the pseudo-inverses, so no Khatri-Rao or Kronecker matrix is formed).
    The result is ``100 * (1 - ||G - I||^2 / d)``, with ``I`` the superdiagonal core of ones and
    ``d = rank`` (or ``d = ||G||^2`` when ``normalized``, as the N-way toolbox does), the same as
    ``tlviz.model_evaluation.core_consistency``. About 100 means a trilinear model fits the
    block; low or negative values mean too many components or a non-trilinear structure.

    Parameters
    ----------
    tensor : Block, torch.Tensor or array-like, (n_samples, n_channels, n_positions)
        The data the model was fitted to. A Block is read in sample batches.
    cp_tensor : CPTensor or (weights, [A, U, V])
        ``weights : (rank,)`` or None, ``A : (n_samples, rank)``, ``U : (n_channels, rank)``,
        ``V : (n_positions, rank)``.
    normalized : bool
        Divide by ``||G||^2`` instead of by the rank.
    batch_size : int, optional
        Samples per batch (by default about ``BATCH_BYTES`` of the device type: 16 MiB
        on CPU, 256 MiB on CUDA).
    device, dtype
        Where and in which precision the batches are processed (the block's own device and
        float64 by default).

    Returns
    -------
    float
        The core consistency in percent (at most 100).
    """
    block = _as_block(tensor)
    if block.kind != "tensor":
        raise ValueError(
            f"core consistency needs a 3-way block (n_samples, n_channels, n_positions), got "
            f"block {block.name!r} of shape {block.shape}; it is not defined for a matrix block"
        )
    weights, (A, U, V) = _check_cp(cp_tensor, block.shape)
    device = block.device if device is None else torch.device(device)
    rank = A.shape[1]
    A_pinv = _sample_pinv(_torch(A * weights, device, dtype))  # (R, N)
    U_pinv = torch.linalg.pinv(_torch(U, device, dtype))  # (R, C)
    V_pinv = torch.linalg.pinv(_torch(V, device, dtype))  # (R, S)
    core = torch.zeros((rank, rank, rank), device=device, dtype=dtype)
    step = batch_rows(block, batch_size, device=device, dtype=dtype)
    for start, stop, rows in block.batches(step, device, dtype):
        small = U_pinv @ (rows @ V_pinv.T)  # (n, R, R): modes 2 and 3 projected
        core += torch.tensordot(A_pinv[:, start:stop], small, dims=1)
    core = distributed.all_reduce(core).cpu().numpy()
    ideal = np.zeros_like(core)
    ideal[np.arange(rank), np.arange(rank), np.arange(rank)] = 1.0
    denom = float(np.sum(core**2)) if normalized else rank
    return float(100.0 - 100.0 * np.sum((core - ideal) ** 2) / denom)


def _sample_pinv(a: torch.Tensor) -> torch.Tensor:
    """``pinv(a) : (R, n)`` of the sample factor ``a : (n, R)``; under a process group, the
    columns for this process's rows, as ``pinv(a^T a) a^T`` with ``a^T a`` all-reduced (the
    Gram matrix squares the condition number: singular values below about ``sqrt(R eps)`` of
    the largest count as zero)."""
    if not distributed.is_active():
        return torch.linalg.pinv(a)
    return torch.linalg.pinv(distributed.all_reduce(a.T @ a), hermitian=True) @ a.T


# --------------------------------------------------------------------------------------------
# explained variance
# --------------------------------------------------------------------------------------------
class _FitStats(NamedTuple):
    data_sq: float  # ||X||^2
    residual_sq: float  # ||X - Xhat||^2, from explicit residuals
    inner: np.ndarray  # (R,) <X, Xhat_r>
    gram: np.ndarray  # (R, R) <Xhat_r, Xhat_s>


def _fit_stats(data, cp_tensor, batch_size, device, dtype) -> _FitStats:
    """One streamed pass over a block: the norms and inner products that every fit needs."""
    block = _as_block(data)
    weights, factors = _check_cp(cp_tensor, block.shape)
    device = block.device if device is None else torch.device(device)
    A = _torch(factors[0] * weights, device, dtype)
    mats = [_torch(f, device, dtype) for f in factors[1:]]
    data_sq = residual_sq = 0.0
    inner = torch.zeros(A.shape[1], device=device, dtype=torch.float64)
    step = batch_rows(block, batch_size, device=device, dtype=dtype)
    for start, stop, rows in block.batches(step, device, dtype):
        a_rows = A[start:stop]
        residual = rows - _reconstruct(a_rows, mats)
        data_sq += float(torch.sum(rows * rows, dtype=torch.float64))
        residual_sq += float(torch.sum(residual * residual, dtype=torch.float64))
        inner += (ops.mttkrp_rows(rows, mats) * a_rows).sum(dim=0, dtype=torch.float64)
    data_sq, residual_sq, *inner = distributed.all_reduce(
        np.array([data_sq, residual_sq, *inner.cpu().numpy()]))
    if data_sq == 0.0:
        raise ValueError(
            f"block {block.name!r} is all zeros: explained variance is not defined for it"
        )
    aw = factors[0] * weights
    gram = ops.gram([aw, *factors[1:]], first=distributed.all_reduce(aw.T @ aw))
    return _FitStats(float(data_sq), float(residual_sq), np.array(inner), gram)


def explained_variance(
    data,
    cp_tensor,
    *,
    batch_size: int | None = None,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> float:
    """Fit of a CP (or matrix) model to one block: ``1 - ||X - Xhat||^2 / ||X||^2``.

    The residual is formed explicitly batch by batch and its square summed in float64, so no
    cancellation between ``||X||^2`` and ``||Xhat||^2`` limits the precision.

    Parameters
    ----------
    data : Block, torch.Tensor or array-like
        ``(n_samples, n_features)`` or ``(n_samples, n_channels, n_positions)``.
    cp_tensor : CPTensor or (weights, factors)
        ``factors = [A, B]`` or ``[A, U, V]`` with one ``(dim, rank)`` matrix per mode.
    batch_size, device, dtype
        As in :func:`core_consistency`.

    Returns
    -------
    float
        At most 1; negative when the model is worse than predicting zeros.
    """
    stats = _fit_stats(data, cp_tensor, batch_size, device, dtype)
    return 1.0 - stats.residual_sq / stats.data_sq


def component_explained_variance(
    data,
    cp_tensor,
    *,
    method: str = "share",
    batch_size: int | None = None,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> np.ndarray:
    """Explained variance of one block, component by component.

    With ``Xhat_r`` the block reconstructed from component r alone:

    - ``"share"`` (default): ``<X, Xhat_r> / ||X||^2``, the component's additive share of the
      fit. Where the block's own factors are at a least-squares (or nonnegative KKT) optimum,
      the residual is orthogonal to every ``Xhat_r``, so the shares add up exactly to
      :func:`explained_variance`. That makes it the right cell of a "component x block"
      heatmap: each row (block) sums to that block's fit, correlated components are not counted
      twice, and a negative share marks a component that cancels others (see
      :func:`degeneracy`).
    - ``"alone"``: ``1 - ||X - Xhat_r||^2 / ||X||^2``, the fit of component r by itself.
    - ``"removed"``: the drop in fit when component r is left out of the model.

    The last two do not add up to the block's fit when components are correlated.

    Parameters
    ----------
    data, cp_tensor, batch_size, device, dtype
        As in :func:`explained_variance`.
    method : {"share", "alone", "removed"}

    Returns
    -------
    ndarray of shape (rank,)
    """
    if method not in ("share", "alone", "removed"):
        raise ValueError(
            f"method must be 'share', 'alone' or 'removed', got {method!r}"
        )
    stats = _fit_stats(data, cp_tensor, batch_size, device, dtype)
    own = np.diag(stats.gram)  # ||Xhat_r||^2
    if method == "share":
        out = stats.inner
    elif method == "alone":
        out = 2.0 * stats.inner - own
    else:  # ||X - Xhat + Xhat_r||^2 - ||X - Xhat||^2 = 2<X - Xhat, Xhat_r> + ||Xhat_r||^2
        out = 2.0 * (stats.inner - stats.gram.sum(axis=1)) + own
    return out / stats.data_sq


# --------------------------------------------------------------------------------------------
# factor match score
# --------------------------------------------------------------------------------------------
def _unit_columns(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(f, axis=0)
    return f / np.where(norms == 0, 1.0, norms), norms


def _congruences(mats_a, mats_b, start=None) -> np.ndarray:
    """``(R_a, R_b)`` product over modes of the cosines between the columns of a and b (times
    ``start``, the product over other modes, when given)."""
    product = np.ones((mats_a[0].shape[1], mats_b[0].shape[1])) if start is None else start
    for fa, fb in zip(mats_a, mats_b):
        product = product * (_unit_columns(fa)[0].T @ _unit_columns(fb)[0])
    return product


def _sample_congruences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`_congruences` of the sample factors ``a : (n, R_a)``, ``b : (n, R_b)``, over the
    rows of all processes of a group (their products and column norms all-reduced)."""
    if not distributed.is_active():
        return _congruences([a], [b])
    sums = distributed.all_reduce(np.concatenate([(a.T @ b).ravel(), (a * a).sum(0),
                                                  (b * b).sum(0)]))
    ra, rb = a.shape[1], b.shape[1]
    norm_a, norm_b = (np.sqrt(v) for v in (sums[ra * rb:ra * rb + ra], sums[ra * rb + ra:]))
    return sums[:ra * rb].reshape(ra, rb) / np.outer(np.where(norm_a == 0, 1.0, norm_a),
                                                     np.where(norm_b == 0, 1.0, norm_b))


def _match(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching maximizing ``scores (R_a, R_b)``.

    Returns ``permutation (R_a,)`` (the component of b matched to each component of a, -1 where
    b has fewer components) and the matched row indices.
    """
    rows, cols = linear_sum_assignment(-scores)
    permutation = np.full(scores.shape[0], -1, dtype=np.int64)
    permutation[rows] = cols
    return permutation, rows


def _check_pair(
    mats_a, mats_b, what: str, fix: str = "leave the differing mode out with skip_mode"
):
    if len(mats_a) != len(mats_b):
        raise ValueError(
            f"{what}: the two models have {len(mats_a)} and {len(mats_b)} modes; compare "
            "models of the same data"
        )
    rows_a = [f.shape[0] for f in mats_a]
    rows_b = [f.shape[0] for f in mats_b]
    if rows_a != rows_b:
        raise ValueError(
            f"{what}: factor matrices have rows {rows_a} and {rows_b}; compare models of data "
            f"with the same shape (or {fix})"
        )


def factor_match_score(
    factors_a,
    factors_b,
    weights_a=None,
    weights_b=None,
    *,
    consider_weights: bool = False,
    skip_mode: int | None = None,
    absolute_value: bool = True,
    return_permutation: bool = False,
):
    """Permutation-invariant factor match score (FMS) of two CP models.

    For each pair of components (r of a, s of b) the congruence is the product over modes of
    the cosines between their columns, ``prod_m cos(a^m_r, b^m_s)`` (its absolute value by
    default, so sign flips do not count). Components are paired by the Hungarian method
    (``scipy.optimize.linear_sum_assignment``) to maximize the total congruence, and the FMS
    is the mean congruence over the matched pairs: 1 for the same model up to permutation,
    scaling and sign. Matches ``tlviz.factor_tools.factor_match_score``.

    Parameters
    ----------
    factors_a, factors_b : list of array, each (dim_m, rank)
        Factor matrices of the two models, mode by mode (sample factor first).
    weights_a, weights_b : (rank,), optional
        Component weights (ones when None); used only with ``consider_weights``.
    consider_weights : bool
        Multiply each congruence by ``1 - |w_r - w_s| / max(w_r, w_s)``, where ``w`` is the
        weight times the norms of the component's columns (tlviz's weight penalty).
    skip_mode : int, optional
        A mode left out of the congruence (for example the sample mode in a split-half
        analysis, where the two models saw different samples).
    absolute_value : bool
        Compare magnitudes of the congruences (True) or signed congruences.
    return_permutation : bool
        Also return the matching.

    Returns
    -------
    fms : float
    permutation : ndarray of shape (rank_a,), int (only with ``return_permutation``)
        ``factors_b[m][:, permutation]`` aligns b with a; -1 marks a component of a left
        unmatched because b has fewer components.
    """
    mats_a = _check_factors(factors_a, "factors_a")
    mats_b = _check_factors(factors_b, "factors_b")
    if skip_mode is not None:
        if consider_weights:
            raise ValueError(
                "consider_weights=True cannot be combined with skip_mode: the scale of a CP "
                "component can move into the skipped mode; pass consider_weights=False"
            )
        if not -len(mats_a) <= skip_mode < len(mats_a):
            raise ValueError(
                f"skip_mode={skip_mode} is not a mode of a {len(mats_a)}-mode model"
            )
        skip = skip_mode % len(mats_a)
        mats_a = [f for m, f in enumerate(mats_a) if m != skip]
        mats_b = [f for m, f in enumerate(mats_b) if m != skip]
    _check_pair(mats_a, mats_b, "factor_match_score")
    scores = _congruences(mats_a, mats_b)
    if consider_weights:
        magnitude = []
        for label, w, m in (("weights_a", weights_a, mats_a), ("weights_b", weights_b, mats_b)):
            rank = m[0].shape[1]
            w = np.ones(rank) if w is None else _to_numpy(w).reshape(-1)
            if w.shape != (rank,):
                raise ValueError(f"{label} has {w.size} entries for {rank} components")
            magnitude.append(w * np.prod([_unit_columns(f)[1] for f in m], axis=0))
        wa, wb = magnitude[0][:, None], magnitude[1][None, :]
        scores = scores * (1.0 - np.abs(wa - wb) / np.maximum(wa, wb))
    if absolute_value:
        scores = np.abs(scores)
    permutation, rows = _match(scores)
    fms = float(scores[rows, permutation[rows]].mean())
    return (fms, permutation) if return_permutation else fms


class CoupledMatch(NamedTuple):
    """Result of :func:`coupled_factor_match_score`."""

    score: float
    """FMS over the shared sample factor and every compared block's factors."""
    per_block: dict
    """Block name -> FMS of that block's own model ``[A, *factors]`` under the same matching."""
    permutation: np.ndarray
    """``(rank_a,)``: the component of model b matched to each component of model a."""


def _fitted(model, label: str):
    missing = [a for a in ("A_", "factors_") if not hasattr(model, a)]
    if missing:
        raise ValueError(
            f"{label} ({type(model).__name__}) has no {', '.join(missing)}: it is not fitted; "
            "call fit(blocks) first"
        )
    return model.A_, model.factors_


def coupled_factor_match_score(
    model_a,
    model_b,
    *,
    blocks: Sequence[str] | None = None,
    compare_samples: bool = True,
    absolute_value: bool = True,
) -> CoupledMatch:
    """Factor match score of two fitted coupled models, components matched once for all blocks.

    A component of a coupled model is one column of the shared ``A_`` and one column of every
    block's factors, so the components of the two models are paired once (Hungarian method) on
    the congruence taken over ``A_`` and all compared block factors together. The overall score
    is the mean of that joint congruence over the matched pairs; the score of a block is the
    FMS of its own model ``[A, *factors_[name]]`` under the same pairing.

    Parameters
    ----------
    model_a, model_b : fitted estimators
        Read through ``A_ (n_samples, rank)`` and ``factors_`` (block name ->
        ``[B (n_features, rank)]`` or ``[U (n_channels, rank), V (n_positions, rank)]``).
    blocks : list of str, optional
        The blocks to compare (by default all; both models must have them).
    compare_samples : bool
        Include ``A_`` in the congruences. Set False when the models saw different samples.
        Under a process group ``A_`` holds each process's rows (as the models fitted them),
        and its congruences are reduced over all processes.
    absolute_value : bool
        As in :func:`factor_match_score`.

    Returns
    -------
    CoupledMatch
        ``(score, per_block, permutation)``.
    """
    A_a, factors_a = _fitted(model_a, "model_a")
    A_b, factors_b = _fitted(model_b, "model_b")
    if blocks is None:
        if set(factors_a) != set(factors_b):
            common = [n for n in factors_a if n in factors_b]
            raise ValueError(
                f"the models have different blocks {sorted(factors_a)} and {sorted(factors_b)}; "
                f"pass blocks={common} to compare the blocks they share"
            )
        blocks = list(factors_a)
    for name in blocks:
        for label, factors in (("model_a", factors_a), ("model_b", factors_b)):
            if name not in factors:
                raise ValueError(
                    f"{label} has no block {name!r}; its blocks are {sorted(factors)}"
                )
    if not blocks and not compare_samples:
        raise ValueError("nothing to compare: pass at least one block or compare_samples=True")
    shared_a = [A_a] if compare_samples else []
    shared_b = [A_b] if compare_samples else []
    sample = None
    if compare_samples:
        a, b = _check_factors(shared_a)[0], _check_factors(shared_b)[0]
        if not blocks:  # else each block's check names the rows
            _check_pair([a], [b], "A_", "pass compare_samples=False if only the samples differ")
        if a.shape[0] == b.shape[0]:
            sample = _sample_congruences(a, b)
    per_block_scores = {}
    for name in blocks:
        mats_a = _check_factors(shared_a + list(factors_a[name]), f"model_a block {name!r}")
        mats_b = _check_factors(shared_b + list(factors_b[name]), f"model_b block {name!r}")
        _check_pair(mats_a, mats_b, f"block {name!r}", "pass compare_samples=False if only the "
                    "samples differ")
        skip = len(shared_a)
        per_block_scores[name] = _congruences(mats_a[skip:], mats_b[skip:], start=sample)
    joint = sample if compare_samples else 1.0
    for name in blocks:
        joint = joint * _congruences(list(factors_a[name]), list(factors_b[name]))
    transform = np.abs if absolute_value else np.asarray
    permutation, rows = _match(transform(joint))
    cols = permutation[rows]
    return CoupledMatch(
        score=float(transform(joint)[rows, cols].mean()),
        per_block={n: float(transform(s)[rows, cols].mean()) for n, s in per_block_scores.items()},
        permutation=permutation,
    )


# --------------------------------------------------------------------------------------------
# degeneracy
# --------------------------------------------------------------------------------------------
class Degeneracy(NamedTuple):
    """Result of :func:`degeneracy`."""

    min_cosine: float
    """The smallest triple cosine over pairs of components (nan for a single component)."""
    pair: tuple | None
    """The two components ``(r, s)``, r < s, that reach it (None for a single component)."""
    degenerate: bool
    """``min_cosine < threshold``: a two-factor degeneracy."""


def degeneracy(factors, *, threshold: float = DEGENERACY_THRESHOLD) -> Degeneracy:
    """Two-factor degeneracy check: the smallest triple cosine between two components.

    The triple cosine of components r and s is ``prod_m cos(f^m_r, f^m_s)`` over all modes
    (the signed congruence of :func:`factor_match_score`). In a two-factor degeneracy two
    components grow without bound while cancelling each other, and their triple cosine tends
    to -1; a value below ``threshold`` (:data:`DEGENERACY_THRESHOLD`, -0.85) flags it. For a
    coupled model pass ``[A_, *factors_ of every block]``: the cancellation then has to hold in
    all blocks at once.

    Parameters
    ----------
    factors : list of array, each (dim_m, rank)
    threshold : float

    Returns
    -------
    Degeneracy
        ``(min_cosine, pair, degenerate)``.
    """
    mats = _check_factors(factors)
    rank = mats[0].shape[1]
    if rank < 2:
        return Degeneracy(float("nan"), None, False)
    cos = _congruences(mats, mats)
    cos[np.diag_indices(rank)] = np.inf
    r, s = np.unravel_index(np.argmin(cos), cos.shape)
    value = float(cos[r, s])
    return Degeneracy(value, (int(min(r, s)), int(max(r, s))), value < threshold)
