"""The dashboard: capture, fit, and linked views of the factorization."""

from __future__ import annotations

import contextlib
import inspect
import time
from pathlib import Path

import ipywidgets as w
import numpy as np
import traitlets as T

from .base import ErrorArea, StateTraits
from .component_map import ComponentMap
from .controls import Controls
from .fitted import Fitted
from .gallery import InputGallery
from .layer_response import LayerResponse
from .render import InputRenderer
from .sample_map import SampleMap
from .theme import ACCENT, FONT

__all__ = ["Peek"]

_LINKED = ("component", "block", "selected")


def _refit_params(estimator) -> dict:
    """The constructor parameters of a fitted estimator (scikit-learn ``get_params`` style)."""
    sig = inspect.signature(type(estimator).__init__)
    return {n: getattr(estimator, n) for n in list(sig.parameters)[1:] if hasattr(estimator, n)}


class Peek(w.VBox, StateTraits):
    """Capture a model's layers, fit a coupled factorization, show linked views.

    ``Peek(model, inputs, rank=5)`` runs ``model`` once over ``inputs``
    (:func:`peekwidgets.capture.capture`), fits a
    :class:`~peekwidgets.engine.CoupledCP` (progress bars for both) and,
    displayed as the last expression of a cell, shows the component map,
    layer response, input gallery, sample map and controls.

    Parameters
    ----------
    model : torch.nn.Module
        The trained network; left untouched.
    inputs : tensor, Dataset, DataLoader, ...
        The samples to analyse (anything :func:`~peekwidgets.capture.capture` takes).
    rank : int
        Number of components.
    layers : "auto", str, type or list
        Which layers to capture (see :func:`~peekwidgets.capture.resolve_layers`).
    nonnegative : bool
        Nonnegative factors (HALS) instead of least squares.
    top_k : int
        Inputs shown in the gallery.
    mean, std : float or sequence, optional
        The normalization of the inputs, undone for display.
    renderer : InputRenderer, optional
        Draws inputs (overrides ``mean``/``std``).
    random_state : int
        Seed of the fit.
    progress : bool
        Progress bars for capture and fit.
    capture_kwargs, engine_kwargs : dict, optional
        Extra arguments of ``capture`` and ``CoupledCP``.

    Attributes
    ----------
    component, block, selected, rank : traitlets
        The shared state; every view observes them. Setting ``rank`` refits.
    blocks : Blocks
    estimator : CoupledCP
    fitted : Fitted
    views : dict name -> view (``component_map``, ``layer_response``, ``gallery``,
        ``sample_map``)
    errors : ErrorArea
        Exceptions raised in callbacks are shown here.
    """

    rank = T.Int(1, help="Rank of the fit on show; setting it refits.")

    def __init__(self, model, inputs, rank: int = 5, layers="auto", nonnegative: bool = False,
                 *, top_k: int = 12, mean=None, std=None, renderer: InputRenderer | None = None,
                 random_state: int = 0, progress: bool = True, capture_kwargs=None,
                 engine_kwargs=None):
        from peekwidgets.capture import capture
        from peekwidgets.engine import CoupledCP

        capture_kwargs = dict(capture_kwargs or {})
        blocks = capture(model, inputs, layers, progress=progress, **capture_kwargs)
        estimator = CoupledCP(rank, nonnegative=nonnegative, random_state=random_state,
                              progress=progress, **(engine_kwargs or {}))
        estimator.fit(blocks)
        if renderer is None:
            renderer = InputRenderer.for_blocks(blocks, mean=mean, std=std)
        self._setup(blocks, estimator, renderer, top_k, model, capture_kwargs)

    @classmethod
    def from_fitted(cls, blocks, estimator, renderer: InputRenderer | None = None, *,
                    top_k: int = 12, model=None, capture_kwargs=None) -> Peek:
        """The dashboard for an estimator already fitted on ``blocks`` (no model needed).

        ``model`` (optional) lets :meth:`add_inputs` capture raw new inputs;
        without it, pass new inputs as :class:`~peekwidgets.blocks.Blocks`.
        """
        peek = cls.__new__(cls)
        peek._setup(blocks, estimator, renderer or InputRenderer.for_blocks(blocks), top_k,
                    model, dict(capture_kwargs or {}))
        return peek

    def _setup(self, blocks, estimator, renderer, top_k, model, capture_kwargs):
        self.blocks = blocks
        self.estimator = estimator
        self.model = model
        self.renderer = renderer
        self._capture_kwargs = capture_kwargs
        self._refitting = False
        self._folded = []  # Blocks of folded-in inputs, projected again after a refit
        self.errors = ErrorArea()
        self.progress = w.Output(layout=w.Layout(width="100%"))
        fitted = Fitted(blocks, estimator)
        super().__init__()
        self.fitted = fitted
        self.block = fitted.names[0]
        self.rank = fitted.rank
        common = {"errors": self.errors}
        self.views = {
            "component_map": ComponentMap(fitted, **common),
            "layer_response": LayerResponse(fitted, renderer=renderer, **common),
            "gallery": InputGallery(fitted, top_k=top_k, renderer=renderer, **common),
            "sample_map": SampleMap(fitted, top_k=top_k, **common),
        }
        for view in self.views.values():
            for name in _LINKED:
                T.link((self, name), (view, name))
        self.controls = Controls(self)
        self.header = w.HTML()
        self.observe(self.errors.guard(self._on_rank), "rank")
        v = self.views
        self.children = [
            self.header, self.errors, self.progress,
            w.HBox([v["component_map"], v["layer_response"]]),
            v["gallery"],
            w.HBox([v["sample_map"], self.controls]),
        ]
        self.layout = w.Layout(padding="6px", border="1px solid #dee2e6")
        self.add_class("peek-dashboard")
        self._update_header()

    @T.validate("rank")
    def _check_rank(self, proposal):
        if proposal["value"] < 1:
            raise T.TraitError(f"rank must be at least 1, got {proposal['value']}")
        return proposal["value"]

    def _on_rank(self, change):
        if not self._refitting and change["new"] != self.fitted.rank:
            self.refit(rank=change["new"])

    def _update_header(self):
        f = self.fitted
        kind = "nonnegative" if f.nonnegative else "least squares"
        fit = np.nanmean(f.block_fit) if np.isfinite(f.block_fit).any() else np.nan
        model = "" if self.model is None else f"{type(self.model).__name__} · "
        extra = f" · {len(f.folded_A)} folded in" if len(f.folded_A) else ""
        self.header.value = (
            f"<div style=\"{FONT}display:flex;align-items:baseline;gap:12px;margin:0 0 6px 4px\">"
            f"<span style='font-size:18px;font-weight:700;color:{ACCENT}'>peek</span>"
            f"<span style='font-size:13px;color:#495057'>{model}{f.n_samples} samples · "
            f"{len(f.names)} blocks · rank {f.rank} · {kind} · mean block fit "
            f"{100 * fit:.0f}%{extra}</span></div>")

    # -- state pushes ----------------------------------------------------------------------
    def _show(self, fitted: Fitted):
        """Put a new fit on show: clamp the state, then push it into every view at once."""
        component = self.component if self.component < fitted.rank else 0
        block = self.block if self.block in fitted.names else fitted.names[0]
        selected = [i for i in self.selected if i < fitted.n_samples]
        with self.hold_trait_notifications():
            self.fitted = fitted
            self.component, self.block, self.selected = component, block, selected
            for view in self.views.values():
                with view.hold_trait_notifications():
                    view.fitted = fitted
                    view.component, view.block, view.selected = component, block, selected
        self._update_header()

    def refit(self, rank: int | None = None, nonnegative: bool | None = None,
              blocks=None) -> Peek:
        """Fit again (new rank, model or blocks) and update every view.

        Parameters
        ----------
        rank : int, optional
            New rank (the current one by default).
        nonnegative : bool, optional
            Nonnegative or least-squares model (the current one by default).
        blocks : list of str, optional
            Names of the blocks taking part (the current ones by default).
        """
        params = _refit_params(self.estimator)
        params["rank"] = self.fitted.rank if rank is None else int(rank)
        if isinstance(params.get("init"), dict):  # initial factors fit only the old model
            params["init"] = "svd"
        if nonnegative is not None:
            params["nonnegative"] = bool(nonnegative)
        names = self.fitted.names if blocks is None else list(blocks)
        if not names:
            raise ValueError("no blocks chosen; tick at least one block to fit")
        unknown = [n for n in names if n not in self.blocks.names]
        if unknown:
            raise ValueError(f"unknown blocks {unknown}; blocks are {self.blocks.names}")
        names = [n for n in self.blocks.names if n in names]
        start = time.perf_counter()
        with self._working("fitting…"):
            estimator = type(self.estimator)(**params).fit(self.blocks.select(names))
        self.estimator = estimator
        self._refitting = True
        try:
            self._show(self._fold_in(Fitted(self.blocks, estimator), self._folded))
            self.rank = estimator.A_.shape[1]
        finally:
            self._refitting = False
        self.controls.sync(self.fitted)
        self.controls.show_status(f"fitted in {time.perf_counter() - start:.1f} s · "
                                  f"{getattr(estimator, 'n_iter_', '?')} sweeps")
        return self

    @contextlib.contextmanager
    def _working(self, what: str):
        """Show ``what`` in the controls and the progress bars of the work in the dashboard."""
        self.controls.show_status(what)
        self.progress.clear_output()
        try:
            with self.progress:
                yield
        except BaseException:
            self.controls.show_status(f"{what} failed")
            raise
        finally:
            self.progress.clear_output()

    def _fold_in(self, fitted: Fitted, folded: list) -> Fitted:
        """``fitted`` with the samples of each Blocks in ``folded`` projected onto it."""
        for new in folded:
            names = [n for n in fitted.names if n in new.names]
            if not names:
                raise ValueError(
                    f"the new inputs have blocks {new.names}, none of the fitted blocks "
                    f"{fitted.names}"
                )
            A_new = fitted.estimator.transform(new.select(names))
            inputs = new["input"].numpy() if "input" in new.names else None
            fitted = fitted.with_folded(A_new, inputs)
        return fitted

    def add_inputs(self, x) -> np.ndarray:
        """Fold new inputs into the fit (no refit) and show them in the views.

        They stay on show, projected again, after a refit.

        Parameters
        ----------
        x : tensor, Dataset, ... or Blocks
            Raw inputs, captured with the dashboard's model like the fitted
            blocks (``capture(..., like=self.blocks)``: same layers, pooling
            and flattening), or blocks with the fitted block names and shapes.

        Returns
        -------
        A_new : (M, rank) ndarray, the loadings of the new inputs.
        """
        from peekwidgets.blocks import Blocks

        if isinstance(x, Blocks):
            new = x
        elif self.model is None:
            raise ValueError(
                "this dashboard has no model to capture raw inputs with; pass model= to "
                "Peek.from_fitted, or pass the new inputs as Blocks"
            )
        else:
            from peekwidgets.capture import capture

            kwargs = {**self._capture_kwargs, "progress": False}
            new = capture(self.model, x, like=self.blocks, **kwargs)
        fitted = self._fold_in(self.fitted, [new])
        self._folded.append(new)
        self._show(fitted)
        return fitted.folded_A[-new.n_samples:]

    def compute_rank_profile(self, max_rank: int | None = None, **kwargs):
        """Compute :func:`peekwidgets.analysis.rank_profile` of the fitted blocks and show it."""
        from peekwidgets.analysis import rank_profile

        max_rank = max_rank or min(self.controls.rank_slider.max, self.blocks.n_samples)
        with self._working("rank profile…"):
            profile = rank_profile(self.blocks.select(self.fitted.names), max_rank, **kwargs)
        self.show_rank_profile(profile)
        self.controls.show_status(f"rank profile up to {max_rank}")
        return profile

    def show_rank_profile(self, profile):
        """Show a precomputed :class:`~peekwidgets.analysis.RankProfile` in the controls."""
        self.controls.show_profile(profile)

    # -- export ----------------------------------------------------------------------------
    @property
    def figures(self) -> dict:
        """``{name: bqplot.Figure}`` of every view."""
        out = {}
        for view in self.views.values():
            out.update(view.figures)
        return out

    def export_figures(self, prefix: str = "peek", fmt: str = "png") -> list[str]:
        """Save every figure as ``{prefix}_{name}.{fmt}`` (``"png"`` or ``"svg"``).

        The browser renders and downloads the files (bqplot's ``save_png`` /
        ``save_svg``), so the dashboard must be on show.
        """
        if fmt not in ("png", "svg"):
            raise ValueError(f"fmt must be 'png' or 'svg', got {fmt!r}")
        names = []
        for name, fig in self.figures.items():
            filename = f"{prefix}_{name}.{fmt}"
            (fig.save_png if fmt == "png" else fig.save_svg)(filename)
            names.append(filename)
        return names

    def save(self, path) -> Path:
        """Save the fitted factors in the engine's file format (``CoupledCP.load`` reads it)."""
        self.estimator.save(path)
        path = Path(path)
        return path if path.suffix == ".npz" else Path(f"{path}.npz")
