"""The dashboard: linked views of an :class:`~peekwidgets.session.Analysis`."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import ipywidgets as w
import numpy as np
import traitlets as T

from peekwidgets.palette import ACCENT
from peekwidgets.session import Analysis
from peekwidgets.viewmodel import ViewModel

from .base import ErrorArea, StateTraits
from .component_map import ComponentMap
from .controls import Controls
from .gallery import InputGallery
from .layer_response import LayerResponse
from .render import InputRenderer
from .sample_map import SampleMap
from .theme import FONT

__all__ = ["Peek"]

_LINKED = ("component", "block", "selected")


class Peek(w.VBox, StateTraits):
    """Linked views of an :class:`~peekwidgets.session.Analysis`.

    ``Peek(analysis)`` shows an analysis; ``Peek(model, inputs, rank=5)`` is the short form of
    ``Peek(Analysis(model, inputs, rank=5))`` (capture and fit, with progress bars). Displayed
    as the last expression of a cell, it shows the component map, layer response, input
    gallery, sample map and controls.

    Parameters
    ----------
    analysis : Analysis or torch.nn.Module
        The analysis to show, or the trained network to analyse (left untouched).
    inputs : tensor, Dataset, DataLoader, ...
        With a model: the samples to analyse (anything :func:`~peekwidgets.capture.capture`
        takes).
    rank, layers, nonnegative, random_state, progress, capture_kwargs, engine_kwargs, mean, std
        With a model: passed to :class:`~peekwidgets.session.Analysis`.
    top_k : int
        Inputs shown in the gallery.
    renderer : InputRenderer, optional
        Draws inputs (default: the analysis' image scaling, :attr:`Analysis.images`).

    Attributes
    ----------
    component, block, selected, rank : traitlets
        The shared state; every view observes them. Setting ``rank`` refits.
    analysis : Analysis
        The pipeline behind the views (``blocks``, ``estimator``, ``view``, ``profile``).
    fitted : ViewModel
        The fit on show.
    views : dict name -> view (``component_map``, ``layer_response``, ``gallery``,
        ``sample_map``)
    errors : ErrorArea
        Exceptions raised in callbacks are shown here.
    """

    rank = T.Int(1, help="Rank of the fit on show; setting it refits.")

    def __init__(self, analysis, inputs=None, rank: int = 5, layers="auto",
                 nonnegative: bool = False, *, top_k: int = 12, mean=None, std=None,
                 renderer: InputRenderer | None = None, random_state: int = 0,
                 progress: bool = True, capture_kwargs=None, engine_kwargs=None):
        if not isinstance(analysis, Analysis):
            analysis = Analysis(analysis, inputs, rank, layers, nonnegative,
                                random_state=random_state, progress=progress,
                                capture_kwargs=capture_kwargs, engine_kwargs=engine_kwargs,
                                mean=mean, std=std)
        elif inputs is not None:
            raise ValueError("Peek(analysis) shows an analysis of inputs already captured; "
                             "pass new inputs to peek.add_inputs, or Peek(model, inputs)")
        self.analysis = analysis
        self.renderer = renderer or InputRenderer.from_images(analysis.images)
        self.errors = ErrorArea()
        self.progress = w.Output(layout=w.Layout(width="100%"))
        fitted = analysis.view
        super().__init__()
        self._refitting = False
        self.fitted = fitted
        self.block = fitted.names[0]
        self.rank = fitted.rank
        common = {"errors": self.errors}
        self.views = {
            "component_map": ComponentMap(fitted, **common),
            "layer_response": LayerResponse(fitted, renderer=self.renderer, **common),
            "gallery": InputGallery(fitted, top_k=top_k, renderer=self.renderer, **common),
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

    @classmethod
    def from_fitted(cls, blocks, estimator, renderer: InputRenderer | None = None, *,
                    top_k: int = 12, model=None, capture_kwargs=None) -> Peek:
        """The dashboard for an estimator already fitted on ``blocks`` (no model needed).

        ``model`` (optional) lets :meth:`add_inputs` capture raw new inputs;
        without it, pass new inputs as :class:`~peekwidgets.blocks.Blocks`.
        """
        analysis = Analysis.from_fitted(blocks, estimator, model=model,
                                        capture_kwargs=capture_kwargs)
        return cls(analysis, renderer=renderer, top_k=top_k)

    @property
    def blocks(self):
        """The analysed :class:`~peekwidgets.blocks.Blocks`."""
        return self.analysis.blocks

    @property
    def estimator(self):
        """The fitted :class:`~peekwidgets.engine.CoupledCP` on show."""
        return self.analysis.estimator

    @property
    def model(self):
        """The analysed network (None for a dashboard made from a fit alone)."""
        return self.analysis.model

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
    def _show(self, fitted: ViewModel):
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
        changes = {"rank": self.fitted.rank if rank is None else int(rank)}
        if nonnegative is not None:
            changes["nonnegative"] = bool(nonnegative)
        start = time.perf_counter()
        with self._working("fitting…"):
            self.analysis.refit(blocks, **changes)
        self._refitting = True
        try:
            self._show(self.analysis.view)
            self.rank = self.fitted.rank
        finally:
            self._refitting = False
        self.controls.sync(self.fitted)
        self.controls.show_status(f"fitted in {time.perf_counter() - start:.1f} s · "
                                  f"{getattr(self.estimator, 'n_iter_', '?')} sweeps")
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

    def add_inputs(self, x) -> np.ndarray:
        """Fold new inputs into the fit (:meth:`Analysis.fold_in`, no refit) and show them.

        They stay on show, projected again, after a refit. Returns their loadings
        ``(M, rank)``.
        """
        A_new = self.analysis.fold_in(x)
        self._show(self.analysis.view)
        return A_new

    def compute_rank_profile(self, max_rank: int | None = None, **kwargs):
        """Compute the rank profile of the fitted blocks (:meth:`Analysis.rank_profile`) and
        show it."""
        max_rank = max_rank or min(self.controls.rank_slider.max, self.blocks.n_samples)
        with self._working("rank profile…"):
            profile = self.analysis.rank_profile(max_rank, **kwargs)
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
        return self.analysis.save(path)
