"""Coupled CP/matrix factorization of blocks that share the sample mode.

Every block shares the sample factor ``A : (n_samples, rank)``. A matrix block
``X (n, D) ~ A diag(w) B^T``; a tensor block ``T (n, C, S) ~ [[w; A, U, V]]``. Each block is
first scaled by ``block_scales_[b] = weight_b / ||X_b||`` (or by its weight alone when
``normalize=False``); the loss is the sum over blocks of the squared residuals of the scaled
blocks.

One sweep reads every block once, sample batch by sample batch, with two products per batch:
it solves the batch's rows of ``A`` from all blocks at once (``X_b F_b``, ``F_b`` the block's
factor or the Khatri-Rao product of its two), and accumulates each block's compressed data
``Y_b = A^T X_b(0)``; on CPU the batch is sized to stay in cache between the two products
(:mod:`peekwidgets.engine.batches`). Nonnegative fits solve the rows of ``A`` by HALS for all
samples at once between two passes (one per product). After the pass, every block's factors
are updated from ``Y_b`` and ``A^T A`` alone (a matrix block ``B``, a tensor block ``U`` then
``V``), which needs no further data pass. The loss is tracked through the exact decrease of
each update (factor-sized arithmetic); a third product, the explicit residual, anchors it now
and then (see ``CoupledCP._sweeps``). Least squares (ALS on the normal equations) and
nonnegative (HALS) share this sweep and the stopping rule.

Under a process group of more than one process (:mod:`peekwidgets.distributed`), each
process passes its own rows of the samples and holds its rows of ``A``; the sums a sweep
makes over samples (each ``Y_b``, ``A^T A``, the decrease of A's rows, the loss) go into one
float64 buffer that a single all-reduce sums, so the block factor updates, computed from it
alike on every process, the stopping rule and every decision of the fit are the same
everywhere, and the bytes communicated per sweep do not grow with the samples.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping
from itertools import repeat
from pathlib import Path

import numpy as np
import torch

from peekwidgets import distributed
from peekwidgets.blocks import (
    Blocks,
    as_blocks,
    check_finite,
    resolve_block_weights,
)
from peekwidgets.engine import init as _init
from peekwidgets.engine import io as _io
from peekwidgets.engine import ops
from peekwidgets.engine.batches import BatchedData, accumulators
from peekwidgets.engine.params import Params, as_seed
from peekwidgets.progress import complete

__all__ = ["CoupledCP"]

#: Elements of the buffer in which explicit residuals are formed, a few rows at a time, by
#: device type: 1 MiB of float32 stays in a CPU core's cache; on a GPU, 64 MiB keep a wide
#: block's residual from being formed a row per kernel.
RESIDUAL_ELEMENTS = {"cpu": 1 << 18, "cuda": 1 << 24}

#: Block factors are float64 numpy on the host (``ops``), except in least-squares fits on a
#: GPU whose compressed blocks ``A^T X_b`` hold at least this many values (8 MiB of float64):
#: those keep them as float64 tensors on the device, so a sweep sends no compressed blocks to
#: the host. Below it, copying them and updating in numpy costs less than the launches and
#: syncs of the device's small kernels. On an H200, least squares, R = 10 (the problems the
#: bound was set from, in runs that also differ in the batch rule; benchmarks/README.md):
#: resnet18's blocks at 224 x 224 (3.8M values) took 20 ms a sweep on the host and 9 on the
#: device; LeNet-shaped blocks (55k values) 3.1-3.3 ms and 3.9-4.1.
#: Nonnegative fits update on the host: HALS' column steps are too small for a kernel each.
DEVICE_FACTORS = 1 << 20

#: Most sweeps between explicit residuals, which anchor the loss that the sweeps' decreases
#: track (each costs about one product more).
CHECK_EVERY = 50
#: The loss of an extrapolated point estimated from the sweep's products is taken to be
#: within ``ESTIMATE * eps * ||X||^2`` (measured within 0.3: float32 rounding of ``X F``).
ESTIMATE = 2.0
#: Below this share of the energy the loss of an extrapolated point is measured explicitly
#: (the estimate's uncertainty would exceed 4 times the explicit residual's rounding).
FINE_FIT = 2.5e-3
#: A nonnegative fit warns of the blocks whose negative values hold more than this share of
#: their squared norm (no nonnegative model explains them).
NEGATIVE_SHARE = 0.01
#: Most sweeps between two tries of an extrapolation.
MAX_INTERVAL = 32
#: An explicit residual also comes as soon as the rounding that the tracked loss may have
#: gathered since the last one exceeds this share of the loss. A sweep's decrease carries the
#: rounding of the float32 products in it, independent over the ``rank * m`` entries of each
#: update (``m`` the smallest factor's rows), so about ``eps * sqrt(||X||^2 * decrease /
#: (rank * m))``; measured without anchors, the tracked loss stayed within 2.3e-7 of the
#: explicit one over 100 sweeps (CMTF problem) and 1e-7 over 400 (digits demo).
DRIFT = 1e-6


def _unfolded(factors, data: BatchedData, plain: bool = True, scaled: bool = True
              ) -> tuple[list[torch.Tensor] | None, list[torch.Tensor] | None]:
    """Each block's transposed ``F_b^T : (rank, features)`` (:func:`ops.khatri_rao_t` of its
    float64 factors, numpy or tensors, formed in the data dtype on the compute device,
    contiguous) as ``(plain, scaled)``: as it is (``plain``, for :func:`ops.residual_norms`),
    and with the block's scale folded into its first factor (``scaled``), so that products of
    the raw rows with it come out in the units of the scaled block and never overflow. Either
    is None when not asked for."""
    def form(scale):
        return [ops.khatri_rao_t([torch.as_tensor(g * s if i == 0 else g).to(
            data.device, data.dtype) for i, g in enumerate(fs)])
            for fs, s in zip(factors, scale)]

    return (form(repeat(1.0)) if plain else None,
            form(data.scales) if scaled else None)


def _signs(f: np.ndarray, split_rows: bool = False) -> np.ndarray:
    """``(rank,)`` sign of the largest-magnitude entry of each column of ``f`` (+1 for zero);
    with ``split_rows``, of the rows of all processes together (the first such entry in rank
    order, as in the whole matrix)."""
    top = f[np.argmax(np.abs(f), axis=0), np.arange(f.shape[1])]
    if split_rows and distributed.is_active():
        tops = np.stack(distributed.all_gather_object(top))
        top = tops[np.argmax(np.abs(tops), axis=0), np.arange(f.shape[1])]
    sign = np.sign(top)
    sign[sign == 0] = 1.0
    return sign


def _negative_shares(blocks: Blocks, norms) -> dict:
    """Block name -> share of the block's squared norm (all processes' rows) held by its
    negative values; warns of those above ``NEGATIVE_SHARE``."""
    squares = distributed.all_reduce(np.array([b.negative_squares() for b in blocks]))
    shares = {b.name: float(sq / norm ** 2) for b, sq, norm in zip(blocks, squares, norms)}
    signed = {name: share for name, share in shares.items() if share > NEGATIVE_SHARE}
    if signed and distributed.rank() == 0:  # the same on every process: said once a group
        listed = ", ".join(f"{share:.0%} of {name!r}" for name, share in signed.items())
        warnings.warn(
            f"nonnegative fit of signed blocks: negative values hold {listed} (of the squared "
            "norm), which no nonnegative model can fit, so that share stays unexplained; fit "
            "least squares (nonnegative=False), or leave those blocks out",
            UserWarning, stacklevel=4,  # the caller of fit, through torch.no_grad's wrapper
        )
    return shares


def _same(a, b) -> bool:
    """Whether two parameter values are equal (arrays in an ``init`` dict compare as False)."""
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


class _Stop(Exception):
    """All processes of a group stop together: a stop request reached a reduction."""


def _check_count(name: str, value, what: str, example: int, least: int = 1) -> None:
    """``value`` is an integer >= ``least`` (not a bool, not a float); else a ValueError with
    the fix."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= least:
        return
    whole = isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and float(value).is_integer() and value >= least
    fix = f"pass {name}={int(value)}" if whole else f"for example {name}={example}"
    kind = "" if isinstance(value, numbers.Integral) and not isinstance(value, bool) \
        else f", not a {type(value).__name__}"
    raise ValueError(
        f"{name}={value!r}: expected a whole number of {what} >= {least}{kind}; {fix}")


class CoupledCP(Params):
    """Coupled CP/matrix factorization with a shared sample factor (scikit-learn style).

    Parameters are read and set with ``get_params`` / ``set_params``;
    :func:`~peekwidgets.engine.clone` gives an unfitted copy for a refit.

    Parameters
    ----------
    rank : int
        Number of components R.
    nonnegative : bool
        Nonnegative factors (HALS) instead of least squares (ALS).
    init : {"svd", "random"} or dict
        ``"svd"``: randomized SVD of the weighted sample-mode unfolding (first start; further
        ``n_init`` starts are random). ``"random"``: uniform factors. A dict
        ``{block name: [B] or [U, V]}`` gives the initial block factors (scaled blocks).
    n_init : int
        Starts; the one with the lowest loss is kept.
    max_iter : int
        Maximum sweeps per start; a fit that stops there unconverged (and was not interrupted)
        warns with ``sklearn.exceptions.ConvergenceWarning`` (under a process group, on
        process 0 only, as the warning of signed blocks in a nonnegative fit).
    tol : float
        Stop when the relative decrease of the loss between sweeps is below ``tol``; a
        negative ``tol`` runs ``max_iter`` sweeps (without a ``ConvergenceWarning``).
    block_weights : dict or sequence of float, optional
        Per-block weights (1 by default), multiplied into each block after normalization.
    normalize : bool
        Scale each block to unit Frobenius norm before weighting.
    batch_size : int, optional
        Samples read at once. Blocks in host memory or memory-mapped files are moved to the
        device one batch at a time, so device memory is bounded by the batch. By default
        :func:`~peekwidgets.engine.batches.sweep_rows`: on CPU about 1 MiB a thread (in cache
        between the two products of a batch), at least ``16 * rank`` rows for wide blocks;
        on a GPU all rows when the blocks live there, else 256 MiB. CPU fits with less than
        32 MiB of data run on one thread (torch and numpy's BLAS), larger ones on all of
        torch's threads.
    device : str or torch.device, optional
        Compute device; the blocks' device by default.
    dtype : torch.dtype
        Dtype of the data in the products (float32 or float64); Gram matrices, solves,
        inner products and the loss are accumulated in float64.
    random_state : int, numpy RandomState or Generator, optional
        Seed (a RandomState or Generator gives one draw); fits are deterministic on CPU for a
        given seed.
    progress : bool
        Show a tqdm progress bar over sweeps (on process 0 of a group).
    extrapolate : bool
        Accelerate: now and then a sweep starts from a point extrapolated along the last step;
        it is kept only when it ends below the current state by more than the uncertainty of
        the losses (else it is redone from the current state), so the loss never rises. On by
        default: on the digits demo it cuts the sweeps to converge about 3x, at equal or lower
        loss.

    Attributes
    ----------
    weights_ : (rank,)
        Component weights, descending.
    A_ : (n_samples, rank)
        Shared sample factor, unit-norm columns. Under a process group: this process's rows
        only, global rows ``row_offset_`` to ``row_offset_ + len(A_)`` (the columns have unit
        norm over all processes' rows).
    n_samples_, row_offset_ : int
        Samples of all processes, and the global index of this process's first row (0
        without a process group).
    factors_ : dict
        Block name -> ``[B (n_features, rank)]`` or ``[U (n_channels, rank), V (n_positions,
        rank)]`` (``U`` unit-norm columns); the scaled block is ``A_ diag(weights_) B^T`` or
        ``[[weights_; A_, U, V]]``.
    block_names_, block_kinds_ : list of str
    block_shapes_ : dict
        Block name -> shape of the block (all processes' samples).
    block_scales_ : dict
        Block name -> factor applied to the raw block (``weight / norm``).
    fit_ : dict
        Block name -> explained variance of the scaled block (1 - residual / norm squared).
    negative_share_ : dict
        Nonnegative fits: block name -> share of the block's squared norm held by its negative
        values, which the fit cannot explain (``fit_`` of the block is at most ``1 -`` that);
        a fit warns of shares above ``NEGATIVE_SHARE``. Empty for least-squares fits.
    explained_variance_ : (n_blocks, rank)
        Share of each block's variance explained by each component, ``<X_b, Xhat_br> /
        ||X_b||^2`` (scaled block); a row sums to the block's ``fit_`` at a least-squares
        optimum (as ``component_explained_variance(..., method="share")``).
    loss_ : float
        Sum over blocks of the squared residuals of the scaled blocks.
    loss_history_ : list of float
        Loss after each sweep of the kept start: explicit where the residual was formed (the
        first and last entries included), else the last explicit loss minus the exact
        decreases of the sweeps since (to about ``DRIFT`` relative), or after an extrapolated
        sweep its estimated start loss minus its decrease (to about ``ESTIMATE * eps`` of the
        energy).
    n_iter_ : int
    converged_, interrupted_ : bool
    comm_bytes_per_sweep_ : float
        Bytes this process handed to collectives per sweep (0 without a process group).

    Notes
    -----
    Under an initialized ``torch.distributed`` process group of more than one process, call
    ``fit`` on every process with the same parameters and that process's rows of every block
    (contiguous, the processes in rank order making up all samples). Every fitted attribute
    but ``A_`` (and ``row_offset_``) is then the same on every process and equals a fit of
    all samples on one process, to rounding (in float32 the products' rounding differs with
    the rows of a batch, so a fit that stops on ``tol`` may stop a sweep earlier or later).
    Ctrl-C or a KeyboardInterrupt in ``callback`` on any process stops all of them after the
    same sweep; an exception on one process ends the others' fits in their next collective
    (give ``init_process_group`` a ``timeout``, see :mod:`peekwidgets.distributed`).
    """

    def __init__(self, rank: int = 5, *, nonnegative: bool = False, init="svd", n_init: int = 1,
                 max_iter: int = 1000, tol: float = 1e-6, block_weights=None,
                 normalize: bool = True, batch_size: int | None = None, device=None,
                 dtype: torch.dtype = torch.float32, random_state: int | None = None,
                 progress: bool = False, extrapolate: bool = True):
        self.rank = rank
        self.nonnegative = nonnegative
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.block_weights = block_weights
        self.normalize = normalize
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.progress = progress
        self.extrapolate = extrapolate

    # ---------------------------------------------------------------------------- checks
    def _check_params(self):
        for name, what, example in (("rank", "components", 5), ("n_init", "starts", 1),
                                    ("max_iter", "sweeps", 1000)):
            _check_count(name, getattr(self, name), what, example)
        if isinstance(self.tol, bool) or not isinstance(self.tol, numbers.Real) \
                or math.isnan(self.tol):
            raise ValueError(
                f"tol={self.tol!r}: expected a number (the relative decrease of the loss that "
                "stops a fit; a negative tol runs max_iter sweeps)"
            )
        self._device()
        for name in ("nonnegative", "normalize", "progress", "extrapolate"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name}={getattr(self, name)!r}: expected True or False")
        if self.batch_size is not None and (
            not isinstance(self.batch_size, numbers.Integral) or self.batch_size < 1
        ):
            raise ValueError(f"batch_size={self.batch_size!r}: expected None or an integer >= 1")
        if self.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype={self.dtype}: expected torch.float32 or torch.float64")
        if not (isinstance(self.init, Mapping) or self.init in ("svd", "random")):
            raise ValueError(
                f"init={self.init!r}: expected 'svd', 'random' or a dict of block factors"
            )

    def _device(self, blocks: Blocks | None = None) -> torch.device:
        """The compute device: ``device``, else the blocks' (raises on one that cannot run)."""
        if self.device is None:
            return blocks[0].device if blocks is not None else torch.device("cpu")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"device={self.device!r} is not a torch device ({error}); pass "
                             "'cpu', 'cuda' or None for the blocks' own device") from None
        if device.type == "meta":
            raise ValueError("device='meta' holds no values to fit; pass 'cpu' or 'cuda'")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r}, but torch sees no CUDA device here; "
                             "pass device='cpu' (or None for the blocks' own device)")
        return device

    def _check_blocks(self, blocks: Blocks) -> tuple[list[float], int, int]:
        """Validate rank against the blocks; return their norms (finite, nonzero), this
        process's first global row and the samples of all processes.

        The rank may not exceed the number of samples nor the features of all blocks together
        (the rank of the joint sample-mode unfolding); a single block narrower than the rank
        (for example 10 logits at rank 20) is allowed, its factor columns are then dependent.
        """
        offset, n_total = self._check_processes(blocks)
        if self.rank > n_total:
            raise ValueError(
                f"rank={self.rank} is larger than the {n_total} samples allow; "
                f"use rank <= {n_total}"
            )
        sizes = {b.name: math.prod(b.mode_shape) for b in blocks}
        if self.rank > sum(sizes.values()):
            raise ValueError(
                f"rank={self.rank} is larger than the blocks allow: {sum(sizes.values())} "
                f"features per sample in all ({sizes}); use rank <= {sum(sizes.values())}"
            )
        norms = distributed.block_norms(blocks)
        for b, norm in zip(blocks, norms):
            if norm == 0.0:
                raise ValueError(f"block {b.name!r} is all zeros; leave it out")
        return norms, offset, n_total

    def _check_processes(self, blocks: Blocks) -> tuple[int, int]:
        """``(first global row of this process, samples of all processes)``; under a process
        group, every process must fit the same blocks (names, feature shapes) with the same
        parameters and hold at least one sample (:func:`~peekwidgets.distributed.agree`)."""
        params = {k: v for k, v in self.get_params().items()
                  if k not in ("init", "device", "progress", "batch_size")}
        counts = distributed.agree(blocks.n_samples, {
            "blocks": blocks.names, "shapes": [b.mode_shape for b in blocks],
            "init": self.init if isinstance(self.init, str) else "dict", **params})
        return sum(counts[:distributed.rank()]), sum(counts)

    # ---------------------------------------------------------------------------- fit
    @torch.no_grad()
    def fit(self, blocks, callback=None) -> CoupledCP:
        """Fit the coupled model.

        Parameters
        ----------
        blocks : Blocks, list of Block, or dict name -> array
            Blocks sharing the sample mode.
        callback : callable, optional
            ``callback(sweep, loss)`` after every sweep (``loss`` relative to the scaled data's
            energy, None on a sweep that measured none), for live progress; raising
            KeyboardInterrupt in it stops the fit like Ctrl-C (best factors kept,
            ``interrupted_=True``).

        Returns
        -------
        self
        """
        self._check_params()
        seed = as_seed(self.random_state)
        blocks = as_blocks(blocks)
        norms, offset, n_total = self._check_blocks(blocks)
        negative = _negative_shares(blocks, norms) if self.nonnegative else {}
        weights = resolve_block_weights(self.block_weights, blocks.names)
        scales = [w / nrm if self.normalize else w for w, nrm in zip(weights, norms)]
        data = self._batched(blocks, scales, self._device(blocks), n_total)
        generator = torch.Generator()
        if seed is None:  # the same seed on every process
            generator.manual_seed(distributed.broadcast_object(generator.seed()))
        else:
            generator.manual_seed(seed)
        sq_norms = [(s * nrm) ** 2 for s, nrm in zip(scales, norms)]

        from tqdm.auto import tqdm

        best = None
        bar = tqdm(total=self.max_iter * self.n_init, unit="sweep",
                   disable=not self.progress or distributed.rank() != 0,  # one bar a group
                   desc=f"CoupledCP rank {self.rank}")
        with data.threads(), bar, distributed.deferred_interrupts() as stop:
            for start in range(self.n_init):
                try:
                    factors = self._initial_factors(data, blocks.names, start, generator)
                except KeyboardInterrupt:  # while initializing a further start
                    if best is None or stop is not None:
                        raise
                    best["interrupted"] = True
                    break
                run = self._sweeps(data, factors, sum(sq_norms), bar, callback, stop)
                if best is None or run["loss"] < best["loss"]:
                    best = run
                if run["interrupted"]:
                    best["interrupted"] = True
                    break
            if not best["interrupted"]:  # an early stop is a success: show the bar complete
                complete(bar)
        if best["interrupted"]:
            warnings.warn(
                f"fit interrupted after {best['n_iter']} sweeps; keeping the best factors so "
                "far (interrupted_=True)", RuntimeWarning, stacklevel=3,
            )
        elif not best["converged"] and self.tol >= 0 and distributed.rank() == 0:
            # a negative tol asks for max_iter; under a group, process 0 says it for all
            from sklearn.exceptions import ConvergenceWarning  # importing sklearn takes ~1 s

            losses = best["losses"]
            change = (f"last relative change of the loss "
                      f"{abs(losses[-2] - losses[-1]) / losses[-2]:.2e}" if len(losses) > 1 else
                      "a single loss, no change measured")
            warnings.warn(
                f"CoupledCP rank {self.rank} did not converge in max_iter={self.max_iter} sweeps "
                f"({change}, tol={self.tol:g}); raise "
                "max_iter, loosen tol, or fit in dtype=torch.float64", ConvergenceWarning,
                stacklevel=3,  # the caller of fit, through torch.no_grad's wrapper
            )
        self._finish(blocks, scales, sq_norms, best, offset, n_total)
        self.negative_share_ = negative
        return self

    def _batched(self, blocks: Blocks, scales, device, n_total=None) -> BatchedData:
        """The blocks as this fit reads them (``n_total``: the samples of all processes)."""
        return BatchedData(blocks, scales, device, self.dtype, self.batch_size, self.rank,
                           n_total=n_total)

    def _initial_factors(self, data, names, start, generator):
        if isinstance(self.init, Mapping):  # process 0's on every process
            return distributed.broadcast_object(
                _init.check_user_factors(self.init, names, data.mode_shapes, self.rank,
                                         self.nonnegative))
        if self.init == "svd" and start == 0:
            return _init.svd_factors(data, self.rank, generator, self.nonnegative)
        return _init.random_factors(data.mode_shapes, self.rank, generator)

    def _factors_on_device(self, data: BatchedData) -> bool:
        """Whether the sweeps keep the block factors on the compute device
        (``DEVICE_FACTORS``)."""
        return data.device.type != "cpu" and not self.nonnegative \
            and self.rank * sum(data.sizes) >= DEVICE_FACTORS

    def _sweeps(self, data: BatchedData, factors, total_sq: float, bar, callback=None,
                stop=None) -> dict:
        """ALS or HALS sweeps from the given block factors; stops on convergence or Ctrl-C
        (under a process group: when ``stop``, a :class:`~peekwidgets.distributed.StopRequest`,
        is raised on any process at a sweep's reduction; that sweep is not kept).

        Every update (rows of A, each block factor) solves a quadratic problem, whose decrease
        the sweep computes exactly from factor-sized quantities (:func:`ops.decrease`), with a
        rounding error that shrinks with the step. The loss of each state is the loss of the
        one before minus that decrease, so the stopping rule (relative change below ``tol``)
        needs no explicit residual and is not limited by the float32 cancellation of
        ``||X||^2 - ||Xhat||^2``. Explicit residuals anchor the loss: in the second sweep
        (the first state's loss), every ``CHECK_EVERY`` sweeps, whenever the rounding the
        tracked loss may have gathered exceeds ``DRIFT`` of it (large steps towards a nearly
        exact fit), at extrapolated points, and at the end.

        With ``extrapolate``, a sweep now and then starts from the extrapolated point
        ``S_ext = S + (j - 1) (S - S_prev)`` with ``j = sweep ** (1 / p)`` (the line search
        schedule of TensorLy and Bro 1998) and is kept when its result has a lower loss than
        ``S`` by more than the uncertainty of the two losses: the loss of ``S_ext`` comes from
        the sweep's own products (``||X||^2 - 2 <X F_ext, A_ext> + <A_ext^T A_ext, G_ext>``,
        to about ``ESTIMATE * eps * ||X||^2``), or from its explicit residual when the fit is so
        close that this estimate is too coarse (loss below ``FINE_FIT`` of the energy), minus
        the exact decrease of the sweep. A kept sweep that does not also beat the decrease of
        the last plain sweep, or a sweep that is not kept (it is redone from ``S``), counts as
        a failure: after 4, ``p`` grows (smaller jumps). Tries come every second sweep, and
        after a sweep that is not kept twice as far apart (at most ``MAX_INTERVAL``).
        """
        if self._factors_on_device(data):
            factors = [[torch.from_numpy(f).to(data.device, torch.float64) for f in fs]
                       for fs in factors]
        a_cur, a_next, a_last = (
            torch.zeros(data.n, self.rank, dtype=data.dtype, device=data.home) for _ in range(3))
        a_ext = torch.empty_like(a_cur) if self.extrapolate else None
        have_a = False  # before the first sweep A holds no values
        losses = []  # loss of the state after each sweep (None until the second sweep)
        converged, interrupted, n_iter = False, False, 0
        last_factors, power, fails, interval, next_try = None, 2.0, 0, 2, 2
        last_drop = 0.0  # decrease of the last plain sweep
        eps = torch.finfo(data.dtype).eps
        floor = (10 * eps) ** 2 * total_sq  # an exact fit, to rounding
        drift = 0.0  # rounding gathered by the tracked loss since the last explicit one
        guess = 0.0  # uncertainty of an estimated loss since the last explicit one
        entries = self.rank * min(data.n_total, *(d for shape in data.mode_shapes for d in shape))
        sent = distributed.comm_bytes()
        request = {} if stop is None else {"stop": stop}
        try:
            for it in range(self.max_iter):
                after = None  # loss after a kept extrapolated sweep
                if self.extrapolate and it >= next_try:
                    jump = it ** (1.0 / power) - 1.0
                    torch.add(a_cur, a_cur - a_last, alpha=jump, out=a_ext)
                    ext = [[f + jump * (f - g) for f, g in zip(fs, gs)]
                           for fs, gs in zip(factors, last_factors)]
                    explicit = losses[-1] < FINE_FIT * total_sq
                    loss, new_factors, drop = self._sweep(
                        data, ext, a_ext, a_next, measure=explicit,
                        energy=None if explicit else total_sq, **request)
                    margin = 10 * eps * math.sqrt(total_sq * max(losses[-1], 0.0)) if explicit \
                        else ESTIMATE * eps * total_sq
                    if loss - drop < losses[-1] - margin - guess - drift:
                        after = loss - drop
                        guess = 0.0 if explicit else margin
                        interval = 2
                        fails += after > losses[-1] - last_drop
                    else:
                        interval = min(2 * interval, MAX_INTERVAL)
                        fails += 1
                    if fails >= 4:
                        power, fails = power + 1.0, 0
                    next_try = it + interval
                if after is None:
                    measure = it == 1 or (it > 1 and (it % CHECK_EVERY == 0
                                                      or drift > DRIFT * losses[-1]))
                    loss, new_factors, drop = self._sweep(
                        data, factors, a_cur if have_a else None, a_next, measure, **request)
                    if loss is not None:  # explicit
                        losses[-1], drift, guess = loss, 0.0, 0.0
                    last_drop = drop
                a_last, a_cur, a_next = a_cur, a_next, a_last
                last_factors, factors, have_a = factors, new_factors, True
                losses.append(None if it == 0 else after if after is not None
                              else losses[-1] - drop)
                drift += eps * math.sqrt(total_sq * abs(drop) / entries)
                n_iter += 1
                bar.update()
                if callback is not None:
                    try:
                        callback(n_iter, None if it == 0 else losses[-1] / total_sq)
                    except KeyboardInterrupt:
                        if stop is None:
                            raise
                        stop.set()  # every process stops at the next sweep's reduction
                if it == 0:
                    continue
                bar.set_postfix(loss=f"{losses[-1] / total_sq:.3e}", refresh=False)
                change = losses[-2] - losses[-1]
                if losses[-1] <= floor or abs(change) <= self.tol * losses[-2]:
                    converged = True
                    break
        except (KeyboardInterrupt, _Stop) as e:
            if stop is not None and isinstance(e, KeyboardInterrupt):
                raise  # a second Ctrl-C under a group: out at once
            interrupted = True
        comm = (distributed.comm_bytes() - sent) / max(n_iter, 1)
        final = self._final_pass(data, factors, a_cur if have_a else None, stop)
        if final.pop("stopped"):  # asked for after the last sweep's reduction
            interrupted, converged = True, False
        if have_a:
            losses[-1] = final["loss"]
        final.update(factors=factors, n_iter=n_iter, converged=converged,
                     interrupted=interrupted, losses=losses, comm=comm)
        return final

    def _sweep(self, data, factors, a_prev, a_out, measure: bool = False,
               energy: float | None = None, stop=None):
        """One pass: new A rows (into ``a_out``) and new block factors.

        ``a_prev`` (None before the first sweep) is the current A: the start of the nonnegative
        solves; with ``measure``, the explicit residual of the current state is formed too;
        with ``energy`` (``||X||^2`` of the scaled blocks) instead, the loss of the current
        state is estimated from the pass's products, ``energy - 2 <X F, A> + <A^T A, G>``.
        Returns ``(loss of the current state or None, new block factors, decrease)``, the
        decrease of the loss from the current state to the new one (without ``a_prev``, from
        the state with the new A only). The sums over samples are reduced over processes in
        one all-reduce; raises ``_Stop`` (before any state changes) when ``stop`` is raised on
        any process.
        """
        rank, dev = self.rank, data.device
        measure = measure and a_prev is not None
        plain_t, scaled = _unfolded(factors, data, plain=measure)
        g_a = sum(ops.gram(fs) for fs in factors)
        g_t = torch.as_tensor(g_a).to(dev)
        inv = torch.as_tensor(ops.spd_inverse(g_a)).to(dev)
        buf, accs, tail = self._reduction(data)
        m_all = data.buffer("m", (data.n, rank), torch.float64)  # X F of every row
        a32 = data.buffer("a32", (data.batch_size, rank))
        m_t, a_t, a_s = (data.columns(k, rank) for k in ("mt", "at", "as"))
        if measure:
            work, norms = self._residual_buffers(data)
        on_home = data.home == dev
        split = data.split
        rows = zip(data.chunks(), m_t, split(m_all), split(a_out) if on_home
                   else split(a32), split(a_prev) if measure else repeat(None), a_t, a_s)
        for (start, end, xs), m, m64, stored, old, a_rows, a_s_rows in rows:
            torch.mm(scaled[0], xs[0].T, out=m)  # (X F)^T: the faster layout (ops.khatri_rao_t)
            for x, f in zip(xs[1:], scaled[1:]):
                torch.addmm(m, f, x.T, out=m)
            m64.copy_(m.T)
            if measure:
                old = old.to(dev)
                for x, f_t, s, out in zip(xs, plain_t, data.scales, norms):
                    ops.residual_norms(x, old, f_t, s, work, out[start:end])
            if not self.nonnegative:  # the batch's rows of A, then its Y_b while in cache
                stored.copy_(torch.mm(m64, inv))  # A as stored: the decreases are of the stored
                self._compress(xs, a_rows.copy_(stored.T), data, accs, a_s_rows)
                if not on_home:
                    a_out[start:end] = stored.to(data.home)
        if self.nonnegative:  # HALS on all rows at once (per batch, its steps would dominate)
            start_a = None if a_prev is None else a_prev.to(dev, torch.float64)
            a_out.copy_(ops.solve(g_t, m_all, start_a, True, n_inner=2, inv=inv))
            for (_, _, xs), a, a_rows, a_s_rows in zip(data.chunks(), split(a_out), a_t, a_s):
                self._compress(xs, a_rows.copy_(a.T), data, accs, a_s_rows)
        a64 = a_out.to(dev, torch.float64)
        ata, sums = tail[:rank * rank].view(rank, rank), tail[rank * rank:]
        torch.mm(a64.T, a64, out=ata)
        sums.zero_()  # residual, decrease of A, <X F, A_prev>, <A_prev^T A_prev, G>, stop
        if measure:
            sums[0] = sum(r.double().square().sum() for r in norms)
        if a_prev is not None:
            old = a_prev.to(dev, torch.float64)
            sums[1] = ops.decrease(old, a64, g_t, m_all)
            if energy is not None:
                sums[2], sums[3] = (m_all * old).sum(), ((old.T @ old) * g_t).sum()
        if stop is not None:
            sums[4] = float(stop.raised)
        for acc in accs:
            acc.result()  # into the buffer
        distributed.all_reduce_(buf)
        residual, drop, cross, model, stopped = sums.tolist()
        if stopped:
            stop.clear()
            raise _Stop
        loss = residual if measure else None
        if a_prev is not None and energy is not None:
            loss = energy - 2.0 * cross + model
        totals = [acc.total for acc in accs]
        if isinstance(factors[0][0], np.ndarray):  # factor-sized work on the host
            ata, totals = ops.host(ata), [ops.host(t) for t in totals]
        updates = [ops.update_block(fs, y, ata, self.nonnegative)
                   for fs, y in zip(factors, totals)]
        drop += float(sum(d for _, d in updates))
        return loss, [f for f, _ in updates], drop

    @staticmethod
    def _compress(xs, a_t, data, accs, a_s) -> None:
        """Add each block's ``s_b a^T x_b`` to its accumulator, from ``a_t = a^T : (rank,
        rows)`` contiguous (scaled first, into ``a_s``: no overflow)."""
        for x, acc, s in zip(xs, accs, data.scales):
            acc.add((a_t if s == 1.0 else torch.mul(a_t, s, out=a_s)).T, x)

    @staticmethod
    def _residual_buffers(data) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The work buffer of explicit residuals and each block's row norms ``(n_samples,)``."""
        elements = RESIDUAL_ELEMENTS.get(data.device.type, RESIDUAL_ELEMENTS["cuda"])
        work = data.buffer("residual", (max(elements, *data.sizes),))
        return work, [data.buffer(("norms", i), (data.n,)) for i in range(len(data.sizes))]

    def _reduction(self, data) -> tuple[torch.Tensor, list, torch.Tensor]:
        """The fit's buffer of a sweep's sums over samples: the accumulators of ``A^T X_b(0)``
        (one per block, reset), then ``A^T A`` and five scalars (the tail)."""
        red = data.cache.get("reduction")
        if red is None:
            red = data.cache["reduction"] = accumulators(
                self.rank, data.sizes, data.device, data.dtype, extra=self.rank ** 2 + 5)
        for acc in red[1]:
            acc.reset()
        return red

    def _final_pass(self, data, factors, a_cur, stop=None) -> dict:
        """Explicit residual and per-component inner products ``<X_b, Xhat_br>`` of the final state.

        Solves ``A`` from the block factors first when no sweep completed. ``stopped``: a stop
        was requested on some process since the last sweep's reduction.
        """
        if a_cur is None:
            a_cur = torch.empty(data.n, self.rank, dtype=data.dtype, device=data.home)
            self._sweep(data, factors, None, a_cur)
        plain_t, scaled = _unfolded(factors, data)
        work, norms = self._residual_buffers(data)
        n_blocks = len(factors)
        sums = torch.zeros(n_blocks * (self.rank + 1) + 1, dtype=torch.float64,
                           device=data.device)  # residuals, inner products, stop
        ips = sums[n_blocks:-1].view(n_blocks, self.rank)
        for start, end, xs in data.chunks():
            a = a_cur[start:end].to(data.device)
            a64 = a.double()
            for x, f_t, f_s, s, out, ip in zip(xs, plain_t, scaled, data.scales, norms, ips):
                ops.residual_norms(x, a, f_t, s, work, out[start:end])
                ip += (torch.mm(f_s, x.T).T.double() * a64).sum(0)
        for i, r in enumerate(norms):
            sums[i] = r.double().square().sum()
        if stop is not None:
            sums[-1] = float(stop.raised)
            stop.clear()
        distributed.all_reduce_(sums)
        res = sums[:n_blocks].tolist()
        return {"loss": sum(res), "residuals": res, "A": a_cur,
                "ips": list(ips.cpu().numpy()), "stopped": bool(sums[-1] > 0)}

    def _finish(self, blocks: Blocks, scales, sq_norms, run: dict, offset: int, n_total: int):
        """Normalize, order by weight, fix signs and store the fitted attributes (numpy);
        ``A``'s column norms and signs over the rows of all processes."""
        a = run["A"].double().cpu().numpy()
        factors = [[ops.host(f) for f in fs] for fs in run["factors"]]
        a_norm = np.sqrt(distributed.all_reduce(np.sum(a * a, axis=0)))
        a_norm[a_norm == 0] = 1.0
        a = a / a_norm
        block_norm = []
        for fs in factors:
            if len(fs) == 2:
                u_norm = np.linalg.norm(fs[0], axis=0)
                u_norm[u_norm == 0] = 1.0
                fs[0] = fs[0] / u_norm
                fs[1] = fs[1] * u_norm
            fs[-1] = fs[-1] * a_norm
            block_norm.append(np.linalg.norm(fs[-1], axis=0))
        weights = np.sqrt(np.sum(np.square(block_norm), axis=0))
        safe = np.where(weights > 0, weights, 1.0)
        order = np.argsort(-weights, kind="stable")
        a = a[:, order]
        for fs in factors:
            fs[-1] = fs[-1] / safe
            fs[:] = [f[:, order] for f in fs]
        # sign convention: the largest |entry| of each A column (and of each U column) is > 0
        flip = _signs(a, split_rows=True)
        a = a * flip
        for fs in factors:
            fs[-1] = fs[-1] * flip
            if len(fs) == 2:
                fu = _signs(fs[0])
                fs[0], fs[1] = fs[0] * fu, fs[1] * fu

        ev = np.stack([ip / sq for ip, sq in zip(run["ips"], sq_norms)])[:, order]
        names = blocks.names
        self.weights_ = weights[order]
        self.A_ = a
        self.factors_ = dict(zip(names, factors))
        self.block_names_ = list(names)
        self.block_kinds_ = [b.kind for b in blocks]
        self.block_shapes_ = {b.name: (n_total, *b.mode_shape) for b in blocks}
        self.block_scales_ = dict(zip(names, [float(s) for s in scales]))
        self.fit_ = {n: float(1.0 - r / sq) for n, r, sq in zip(names, run["residuals"], sq_norms)}
        self.explained_variance_ = ev
        self.loss_ = float(run["loss"])
        self.loss_history_ = [float(v) for v in run["losses"]]
        self.n_iter_ = int(run["n_iter"])
        self.converged_ = bool(run["converged"])
        self.interrupted_ = bool(run["interrupted"])
        self.n_samples_, self.row_offset_ = int(n_total), int(offset)
        self.comm_bytes_per_sweep_ = float(run["comm"])

    # ---------------------------------------------------------------------------- use
    def _check_fitted(self):
        if not hasattr(self, "A_"):
            from sklearn.exceptions import NotFittedError  # a ValueError and AttributeError

            raise NotFittedError("this CoupledCP is not fitted yet; call fit(blocks) first")

    def cp_tensor(self, name: str, *, scaled: bool = True):
        """TensorLy ``CPTensor (weights, [A_, *factors_[name]])`` of block ``name`` (copies).

        ``scaled=True``: the model of the block as fitted, ``block_scales_[name] * X``, with
        ``weights_``; ``scaled=False``: of the block as given, ``X`` (the weights divided by
        the scale), the one to pass to the diagnostics with the raw block. The weights are
        shared by all blocks, so the last factor's columns do not have unit norm (TensorLy's
        ``cp_normalize`` moves their norms into block-specific weights). The arrays are of
        TensorLy's current backend (``tl.tensor``): numpy arrays by default, torch tensors
        under ``tl.set_backend("pytorch")``.
        """
        import tensorly as tl
        from tensorly.cp_tensor import CPTensor

        self._check_fitted()
        if name not in self.factors_:
            raise KeyError(f"no block named {name!r}; blocks are {self.block_names_}")
        weights = self.weights_ if scaled else self.weights_ / self.block_scales_[name]
        return CPTensor((tl.tensor(weights), [tl.tensor(f)
                                              for f in (self.A_, *self.factors_[name])]))

    @torch.no_grad()
    def transform(self, blocks, *, n_iter: int = 100) -> np.ndarray:
        """Fold in new samples: their rows of ``A_`` with the block factors fixed.

        Parameters
        ----------
        blocks : Blocks, list of Block, or dict name -> array
            Any subset of the fitted blocks (by name) for ``M`` new samples, raw (unscaled).
        n_iter : int
            HALS iterations of a nonnegative fold-in.

        Returns
        -------
        A : (M, rank) ndarray
            In the units of ``A_`` (the training samples give back their own rows).
        """
        self._check_fitted()
        _check_count("n_iter", n_iter, "HALS iterations", 100, least=0)
        blocks = as_blocks(blocks)
        for b in blocks:
            if b.name not in self.factors_:
                raise ValueError(
                    f"block {b.name!r} was not fitted; fitted blocks are {self.block_names_}"
                )
            want = self.block_shapes_[b.name][1:]
            if b.mode_shape != want:
                raise ValueError(
                    f"block {b.name!r} has mode shape {b.mode_shape}, fitted with {want}; "
                    "capture the new inputs with the layers and settings of the fit"
                )
        check_finite(blocks)
        data = self._batched(blocks, [self.block_scales_[n] for n in blocks.names],
                             self._device(blocks))
        factors = [self.factors_[n][:-1] + [self.factors_[n][-1] * self.weights_]
                   for n in blocks.names]
        _, scaled = _unfolded(factors, data, plain=False)
        g = sum(ops.gram(fs) for fs in factors)
        g_t, inv = (torch.from_numpy(h).to(data.device) for h in (g, ops.spd_inverse(g)))
        out = np.empty((blocks.n_samples, len(self.weights_)))
        with data.threads():
            for start, stop, xs in data.chunks():
                m = sum(torch.mm(f, x.T).T.double() for x, f in zip(xs, scaled))
                a = ops.solve(g_t, m, None, self.nonnegative, n_inner=n_iter, inv=inv)
                out[start:stop] = a.cpu().numpy()
        return out

    def save(self, path) -> Path:
        """Save the fitted model to one ``.npz`` file (see :mod:`peekwidgets.engine.io`).

        ``.npz`` is appended to ``path`` unless it ends with it; returns the path written.
        A ``random_state`` given as a numpy RandomState or Generator is saved as None.

        A model fitted under a process group holds its process's rows of ``A_``: call
        ``save`` on every process of the group; the rows are gathered and process 0 writes
        the whole model (the others write nothing and return the same path).
        """
        self._check_fitted()
        fitted = {a: getattr(self, a) for a in _io.FITTED}
        if len(self.A_) != self.n_samples_:  # this process's rows of a fit under a group
            if not distributed.is_active():
                raise ValueError(
                    f"this CoupledCP holds rows {self.row_offset_} to "
                    f"{self.row_offset_ + len(self.A_) - 1} of {self.n_samples_} samples (fitted "
                    "under a process group); save it on every process of that group, which "
                    "gathers A, or gather A yourself (peekwidgets.distributed.gather_rows)")
            fitted["A_"] = distributed.gather_rows(self.A_)
            if distributed.rank() != 0:
                return _io.npz_path(path)
        return _io.write(path, self.get_params(), fitted)

    @classmethod
    def load(cls, path) -> CoupledCP:
        """Load a model saved with :meth:`save` (``path``, or ``path.npz`` as :meth:`save`
        names it); it can be fitted again (``init`` holds the initial factors of a fit from
        ``init={...}``)."""
        path, params, fitted = _io.read(path)
        try:
            model = cls().set_params(**params)
        except ValueError as e:
            raise ValueError(f"{path}: {e}; was it saved by a newer peekwidgets?") from None
        for name, value in fitted.items():
            setattr(model, name, value)
        model.n_samples_ = int(model.block_shapes_[model.block_names_[0]][0])
        model.row_offset_, model.comm_bytes_per_sweep_ = 0, 0.0  # the file holds rows 0..
        return model

    def __repr__(self) -> str:
        """As scikit-learn writes an estimator: its parameters that differ from the defaults
        (the rank always)."""
        defaults = type(self)().get_params()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items()
                   if k == "rank" or not _same(v, defaults[k])]
        return f"{type(self).__name__}({', '.join(changed)})"
