"""The :class:`Analysis`: one model and its inputs through the whole pipeline.

``model + inputs --capture--> Blocks --engine--> CoupledCP --> view model, rank profile``

The dashboard (:class:`peekwidgets.widgets.Peek`) and the headless report
(:func:`peekwidgets.report.write_report`) both drive an :class:`Analysis`; neither runs capture
or the engine itself. No widget library is imported here.
"""

from __future__ import annotations

import inspect
import time
import warnings
import weakref
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from peekwidgets import distributed
from peekwidgets.analysis import compare_checkpoints, rank_profile
from peekwidgets.analysis.checkpoints import COMPARED_RANKS
from peekwidgets.blocks import Blocks
from peekwidgets.capture import capture
from peekwidgets.engine import CoupledCP, clone
from peekwidgets.gather import NOT_GATHERED, gather_shown
from peekwidgets.images import InputImages
from peekwidgets.viewmodel import ViewModel

__all__ = ["Analysis"]


def _check_kwargs(what: str, kwargs: dict | None, own: tuple) -> None:
    """Raise when ``kwargs`` sets one of the parameters ``own`` that Analysis takes itself."""
    taken = [key for key in own if key in (kwargs or {})]
    if taken:
        raise TypeError(
            f"{what} sets {taken[0]!r}, which is a parameter of Analysis itself; pass "
            f"Analysis(..., {taken[0]}=...) and leave it out of {what}")


class Analysis:
    """Capture a model's layers, fit one coupled factorization, and keep what follows from it.

    ``Analysis(model, inputs, rank=5)`` runs ``model`` once over ``inputs``
    (:func:`~peekwidgets.capture.capture`) and fits a :class:`~peekwidgets.engine.CoupledCP`;
    :meth:`refit`, :meth:`fold_in` and :meth:`rank_profile` continue from there. Pass
    ``blocks=`` (and a fitted ``estimator=``) to start from an earlier capture or fit instead;
    :meth:`from_fitted` is the short form.

    Parameters
    ----------
    model : torch.nn.Module, optional
        The trained network; never modified. Needed to capture ``inputs``, to fold in raw
        inputs and to compare checkpoints.
    inputs : tensor, Dataset, DataLoader, ..., optional
        The samples to analyse (anything ``capture`` takes); kept for
        :meth:`compare_checkpoints`, so pass something that can be iterated again.
    rank : int
        Number of components of the fit.
    layers : "auto", str, type or list
        Which layers to capture (:func:`~peekwidgets.capture.resolve_layers`).
    nonnegative : bool
        Nonnegative factors (HALS) instead of least squares.
    random_state : int
        Seed of the fit.
    progress : bool
        Progress bars for capture and fits.
    capture_kwargs, engine_kwargs : dict, optional
        Extra arguments of ``capture`` and ``CoupledCP``.
    mean, std : float or sequence, optional
        The normalization of the inputs, undone when they are drawn.
    blocks : Blocks, optional
        Captured blocks to analyse instead of capturing ``inputs``.
    estimator : CoupledCP, optional
        An estimator already fitted on ``blocks`` (no fit is run).
    gather : bool
        Under a ``torch.distributed`` process group (each process captures and holds its own
        shard of the samples, :mod:`peekwidgets.capture.shard`): whether every process
        gathers what the views draw (:func:`~peekwidgets.gather.gather_shown`); by default
        only rank 0 does, and :attr:`view` and :attr:`images` are None on the others. Every
        process must then call the same methods in the same order (each is a collective).

    Attributes
    ----------
    model, inputs, blocks : as given (``blocks`` captured when not given; this process's
        shard under a group)
    estimator : CoupledCP, the fit on show (fitted attributes ``A_``, ``weights_``, ...;
        ``A_`` holds this process's rows under a group)
    view : ViewModel, what the views and the report draw (order, shares, top inputs), of the
        gathered samples under a group
    images : InputImages, how inputs and input-space patterns are drawn
    n_samples : int, the samples analysed (of all processes)
    sample_index : (M,) int array or None, the samples :attr:`view` holds when they are not
        all of them in order (:mod:`peekwidgets.gather`)
    profile : RankProfile or None, the last :meth:`rank_profile`
    folded : list of Blocks, inputs folded in with :meth:`fold_in` (kept across refits)
    timings : dict, seconds of the last run of each stage (``capture``, ``fit``, ...)
    """

    def __init__(self, model=None, inputs=None, rank: int = 5, layers="auto",
                 nonnegative: bool = False, *, random_state: int = 0, progress: bool = True,
                 capture_kwargs: dict | None = None, engine_kwargs: dict | None = None,
                 mean=None, std=None, blocks: Blocks | None = None,
                 estimator: CoupledCP | None = None, gather: bool = False):
        if (inputs is None) == (blocks is None):
            raise ValueError(
                "pass either inputs (captured with model) or blocks (an earlier capture), "
                f"not {'both' if blocks is not None else 'neither'}"
            )
        if estimator is not None and blocks is None:
            raise ValueError("a fitted estimator needs the blocks it was fitted on; pass "
                             "blocks= too (Analysis.from_fitted(blocks, estimator))")
        _check_kwargs("capture_kwargs", capture_kwargs, ("layers", "progress"))
        _check_kwargs("engine_kwargs", engine_kwargs,
                      ("rank", "nonnegative", "random_state", "progress"))
        self.model = model
        self.inputs = inputs
        self.progress = progress
        self.gather = gather
        self._mean_std = (mean, std)
        self.images = None
        self.capture_kwargs = dict(capture_kwargs or {})
        self.timings: dict[str, float] = {}
        self.profile = None
        self._profile_settings: dict = {}
        self.folded: list[Blocks] = []
        self._watchers: list = []
        if blocks is None:
            if model is None:
                raise ValueError("capturing inputs needs the model; pass model=")
            with self._timed("capture"):
                blocks = capture(model, inputs, layers, progress=progress,
                                 **self.capture_kwargs)
        self.blocks = blocks
        if estimator is None:
            estimator = CoupledCP(rank, nonnegative=nonnegative, random_state=random_state,
                                  progress=progress, **(engine_kwargs or {}))
            with self._timed("fit"):
                estimator.fit(blocks.select(_fittable(blocks)))
        self.estimator = estimator
        self.view = self._shown_view(estimator)

    @classmethod
    def from_fitted(cls, blocks: Blocks, estimator: CoupledCP, *, model=None,
                    capture_kwargs: dict | None = None, mean=None, std=None) -> Analysis:
        """The analysis of an estimator already fitted on ``blocks`` (no capture, no fit).

        ``model`` (optional) lets :meth:`fold_in` capture raw new inputs.
        """
        return cls(model, blocks=blocks, estimator=estimator, capture_kwargs=capture_kwargs,
                   mean=mean, std=std)

    # -- the pipeline ----------------------------------------------------------------------
    def on_change(self, callback) -> None:
        """Call ``callback()`` after every :meth:`refit` and :meth:`fold_in` (a dashboard of
        this analysis follows it so). A bound method is held weakly: it does not keep its
        object alive."""
        self._watchers.append(weakref.WeakMethod(callback) if inspect.ismethod(callback)
                              else lambda: callback)

    def _changed(self) -> None:
        for ref in list(self._watchers):
            callback = ref()
            if callback is None:
                self._watchers.remove(ref)
            else:
                callback()

    @property
    def labels(self) -> np.ndarray | None:
        """Labels found in the inputs (only ever drawn) of the samples :attr:`view` holds, or
        None."""
        return (self.blocks if self.view is None else self.view.blocks).labels

    def refit(self, blocks=None, callback=None, **changes) -> Analysis:
        """Fit again with changed estimator parameters, then update :attr:`view`.

        ``analysis.refit(rank=8, nonnegative=True)``. The current fit stays on show until the
        new one has finished; folded-in inputs are projected onto the new fit.

        Parameters
        ----------
        blocks : list of str, optional
            Names of the blocks taking part (the fitted ones by default).
        callback : callable, optional
            ``callback(sweep, loss)`` after every sweep (:meth:`CoupledCP.fit`); raising
            KeyboardInterrupt in it stops the fit, keeping its best factors.
        **changes
            Parameters of :class:`~peekwidgets.engine.CoupledCP` (``rank``, ``nonnegative``,
            ``tol``, ...); the others keep their current values.
        """
        self._check_values("refit")
        names = list(self.estimator.block_names_) if blocks is None else (
            [blocks] if isinstance(blocks, str) else list(blocks))
        if not names:
            raise ValueError("no blocks chosen; choose at least one block to fit")
        unknown = [n for n in names if n not in self.blocks.names]
        if unknown:
            raise ValueError(f"unknown blocks {unknown}; blocks are {self.blocks.names}")
        names = [n for n in self.blocks.names if n in names]
        if isinstance(self.estimator.init, Mapping) and "init" not in changes:
            changes["init"] = "svd"  # initial factors fit only the model they were made for
        estimator = clone(self.estimator).set_params(**changes)
        with self._timed("fit"):
            estimator.fit(self.blocks.select(names), callback=callback)
        view = self._shown_view(estimator)
        if view is not None:  # None on the processes of a group that do not gather it
            view = self._project(view, self.folded)
        self.estimator, self.view = estimator, view
        self._changed()
        return self

    def fold_in(self, inputs) -> np.ndarray:
        """Project new inputs onto the fit (no refit); they stay in :attr:`view`, also after
        a :meth:`refit`.

        Parameters
        ----------
        inputs : tensor, Dataset, ... or Blocks
            Raw inputs, captured with the analysis' model like the fitted blocks
            (``capture(..., like=self.blocks)``: same layers, pooling and flattening), or
            blocks with the fitted block names and shapes.

        Returns
        -------
        A_new : (M, rank) ndarray, the loadings of the new inputs.
        """
        if distributed.is_active():
            raise ValueError(
                "fold_in runs on one process: under a process group each process holds only "
                "its shard; save the analysis (Analysis.dump) and fold in on one process "
                "after Analysis.load")
        if isinstance(inputs, Blocks):
            new = inputs
        elif self.model is None:
            raise ValueError(
                "this analysis has no model to capture raw inputs with; pass model= to "
                "Analysis.from_fitted, or pass the new inputs as Blocks"
            )
        else:
            kwargs = {**self.capture_kwargs, "progress": False}
            new = capture(self.model, inputs, like=self.blocks, **kwargs)
        missing = [n for n in self.view.names if n not in new.names]
        if missing and len(missing) < len(self.view.names):
            warnings.warn(
                f"the new inputs have no block {missing}: their loadings come from the other "
                f"fitted blocks alone, {[n for n in self.view.names if n in new.names]}; "
                "capture them like the fit (pass raw inputs) to fold in on every block",
                stacklevel=2)
        self.view = self._project(self.view, [new])
        self.folded.append(new)
        self._changed()
        return self.view.folded_A[-new.n_samples:]

    def rank_profile(self, max_rank: int, **kwargs):
        """:func:`~peekwidgets.analysis.rank_profile` of the fitted blocks; kept as
        :attr:`profile`."""
        self._check_values("compute a rank profile")
        progress = kwargs.pop("progress", self.progress)
        with self._timed("rank_profile"):
            self.profile = rank_profile(self.blocks.select(self.estimator.block_names_),
                                        max_rank, progress=progress, **kwargs)
        self._profile_settings = {"max_rank": max_rank, **kwargs}
        return self.profile

    def compare_checkpoints(self, checkpoints, *, labels=None, max_rank: int | None = None,
                            layers=None, **kwargs):
        """:func:`~peekwidgets.analysis.compare_checkpoints` of ``checkpoints`` (of the
        architecture of :attr:`model`) on the analysed inputs.

        ``max_rank`` defaults to that of :attr:`profile` when there is one, else to
        ``compare_checkpoints``' own (20). A checkpoint whose weights equal the model's reuses
        :attr:`profile` when it was computed with the same settings (``max_rank`` and the
        rank-profile keywords in ``kwargs``) on all captured blocks. ``layers`` defaults to the
        captured ones, ``labels`` (for the accuracy column alone) to those found in the inputs,
        read again with each pass (``labels="inputs"``).
        """
        if self.model is None or self.inputs is None:
            raise ValueError("comparing checkpoints needs the model and its inputs; build the "
                             "analysis as Analysis(model, inputs, ...)")
        progress = kwargs.pop("progress", self.progress)
        if max_rank is None:
            max_rank = self.profile.max_rank if self.profile is not None else COMPARED_RANKS
        same = (self.profile is not None and self.estimator.block_names_ == self.blocks.names
                and self._profile_settings == {"max_rank": max_rank, **kwargs})
        layers = [n for n in self.blocks.names if n != "input"] if layers is None else layers
        with self._timed("compare_checkpoints"):
            return compare_checkpoints(
                self.model, checkpoints, self.inputs, layers=layers,
                labels="inputs" if labels is None and self.blocks.labels is not None
                else labels,
                max_rank=max_rank, capture_kwargs=self.capture_kwargs,
                model_profile=self.profile if same else None, progress=progress, **kwargs)

    def save(self, path) -> Path:
        """Save the fitted factors (:meth:`CoupledCP.save`; ``A`` of the samples :attr:`view`
        holds); returns the path written."""
        return self._view_or_raise("save the factors").estimator.save(path)

    def dump(self, folder) -> Path:
        """Save what the views draw into ``folder``, for :meth:`load` (:mod:`peekwidgets.saved`:
        the fit, the drawn inputs, labels and predictions, the blocks' layouts and norms, the
        rank profile); returns the folder. Under a group, call it where :attr:`view` is."""
        from peekwidgets.saved import dump

        self._view_or_raise("dump the analysis")
        return dump(self, folder)

    @classmethod
    def load(cls, folder) -> Analysis:
        """The analysis saved by :meth:`dump`: views and the report work without the model;
        :meth:`refit` and :meth:`rank_profile` need the blocks' values, which it does not
        hold."""
        from peekwidgets.saved import load

        return load(cls, folder)

    # -- helpers ---------------------------------------------------------------------------
    def _shown_view(self, estimator) -> ViewModel | None:
        """The view model of ``estimator`` over the samples this process draws (all of its
        blocks without a group; :func:`~peekwidgets.gather.gather_shown` under one)."""
        shown = gather_shown(self.blocks, estimator, everywhere=self.gather)
        self.n_samples = shown.n_samples
        if shown.blocks is None:
            self.images, self.sample_index = None, None
            return None
        if self.images is None or shown.blocks is not self.blocks:
            mean, std = self._mean_std
            self.images = InputImages.for_blocks(shown.blocks, mean=mean, std=std)
        self.sample_index = shown.index
        return ViewModel(shown.blocks, shown.estimator)

    def _view_or_raise(self, what: str) -> ViewModel:
        if self.view is None:
            raise ValueError(
                f"this process (rank {distributed.rank()}) holds no gathered view to {what}; "
                "call it on rank 0, or build the Analysis with gather=True")
        return self.view

    @property
    def holds_values(self) -> bool:
        """Whether the blocks' values are here: False for an analysis from :meth:`load`,
        which can be drawn and reported but not refitted nor profiled."""
        return not any(b.meta.get("values") == NOT_GATHERED for b in self.blocks)

    def _check_values(self, what: str):
        """Raise when the blocks' values are not here (an analysis from :meth:`load`)."""
        missing = [b.name for b in self.blocks if b.meta.get("values") == NOT_GATHERED]
        if missing:
            raise ValueError(
                f"this analysis holds the fit and the drawn inputs, not the values of blocks "
                f"{missing} (it was loaded with Analysis.load); to {what}, run the analysis "
                "again from the model and its inputs (Analysis(model, inputs) or peekwidgets "
                "analyze)")

    def _project(self, view: ViewModel, folded: list) -> ViewModel:
        """``view`` with the samples of each Blocks in ``folded`` projected onto its fit."""
        for new in folded:
            names = [n for n in view.names if n in new.names]
            if not names:
                raise ValueError(
                    f"the new inputs have blocks {new.names}, none of the fitted blocks "
                    f"{view.names}"
                )
            A_new = view.estimator.transform(new.select(names))
            shown = new.thumbnails if new.thumbnails is not None else (
                new["input"] if "input" in new.names else None)
            inputs = None if shown is None else shown.numpy()
            view = view.with_folded(A_new, inputs)
        return view

    def _timed(self, stage: str):
        return _Timer(self.timings, stage)

    def __repr__(self) -> str:
        cp = self.estimator
        kind = "nonnegative" if cp.nonnegative else "least squares"
        model = "" if self.model is None else f"{type(self.model).__name__}, "
        return (f"Analysis({model}{self.n_samples} samples, blocks {list(cp.block_names_)}, "
                f"rank {cp.rank}, {kind})")


def _fittable(blocks: Blocks) -> list[str]:
    """The names of the blocks that hold any signal; an all-zero block (an untrained layer
    initialized at zero, such as torchvision's ViT head) is left out of the fit, with a
    warning, and stays in the blocks."""
    norms = distributed.block_norms(blocks)  # of all processes' rows
    zero = [b.name for b, norm in zip(blocks, norms) if norm == 0]
    if zero:
        if len(zero) == len(blocks):
            raise ValueError(f"every block is all zeros ({zero}); there is nothing to fit; "
                             "check the model's weights and the inputs")
        warnings.warn(f"blocks {zero} are all zeros (for example an untrained layer "
                      "initialized at zero) and are left out of the fit", RuntimeWarning,
                      stacklevel=3)
    return [b.name for b in blocks if b.name not in zero]


class _Timer:
    """Context manager that records the seconds spent inside it as ``timings[stage]``."""

    def __init__(self, timings: dict, stage: str):
        self.timings, self.stage = timings, stage

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.timings[self.stage] = round(time.perf_counter() - self.start, 3)
