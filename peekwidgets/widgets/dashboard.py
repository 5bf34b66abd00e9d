"""The dashboard: linked views of an :class:`~peekwidgets.session.Analysis`."""

from __future__ import annotations

import contextlib
import importlib
import json
import shutil
import time
import weakref
from pathlib import Path

import ipywidgets as w
import numpy as np
import traitlets as T

from peekwidgets import distributed
from peekwidgets.palette import ACCENT
from peekwidgets.session import Analysis
from peekwidgets.viewmodel import ViewModel

from .base import ErrorArea, StateTraits
from .component_map import WARN, ComponentMap
from .controls import Controls
from .gallery import InputGallery
from .layer_response import LayerResponse
from .render import InputRenderer
from .sample_map import SampleMap
from .standalone import write_page
from .theme import BORDER, FONT, MUTED_TEXT, caption_html
from .traversal import Traversal
from .work import Job, Worker

__all__ = ["Peek", "fit_status"]

_LINKED = ("component", "block", "selected")
#: The dashboard refuses larger ranks (fit :class:`~peekwidgets.engine.CoupledCP` directly).
RANK_CAP = 64
#: Live progress is drawn at most this often (seconds), however fast the sweeps.
PROGRESS_INTERVAL = 0.25
#: Dashboards by the notebook cell that made them: running the cell again closes the old one.
_BY_CELL: dict[str, weakref.ref] = {}


def _row(children) -> w.HBox:
    """A row of views that wraps when the output is narrow."""
    for child in children:
        child.layout.flex = child.layout.flex or "1 1 420px"
        child.layout.min_width = "0"
    return w.HBox(children, layout=w.Layout(flex_flow="row wrap", align_items="flex-start"))


def fit_status(estimator, seconds: float | None = None) -> str:
    """One line on how a fit ended: converged, stopped at ``max_iter``, or interrupted."""
    n = getattr(estimator, "n_iter_", None)
    if n is None:
        return "fitted"
    took = "" if seconds is None else f" ({seconds:.1f} s)"
    losses = list(getattr(estimator, "loss_history_", []) or [])
    change = (abs(losses[-2] - losses[-1]) / losses[-2]
              if len(losses) > 1 and losses[-2] else float("nan"))
    if getattr(estimator, "interrupted_", False):
        return f"interrupted after {n} sweeps{took} · best factors so far kept; refit to finish"
    if getattr(estimator, "converged_", True):
        return f"converged in {n} sweeps{took}"
    return (f"stopped at max_iter={n} sweeps{took} before converging (last relative change "
            f"{change:.1e} > tol {estimator.tol:g}); refit with a larger max_iter")


#: Every open widget by its model id: ipywidgets 8 keeps them in ``_instances`` and
#: deprecates ``Widget.widgets`` without a public replacement (read once, here: a dashboard
#: closed at interpreter exit must not need a module that is gone by then).
_OPEN = getattr(importlib.import_module("ipywidgets.widgets.widget"), "_instances", None)


def _open_widgets() -> dict:
    """Every open widget by its model id."""
    return _OPEN if _OPEN is not None else w.Widget.widgets


def _cell_id() -> str | None:
    """The id of the notebook cell running now (JupyterLab and Notebook 7 send it), or None."""
    try:
        from IPython import get_ipython

        kernel = get_ipython().kernel
        return kernel.get_parent("shell").get("metadata", {}).get("cellId")
    except Exception:  # not in a kernel, or a front end that sends no cell id
        return None


def _descendants(widget) -> list:
    """Every widget reachable from ``widget`` through its synced traits (children, marks,
    scales, axes, layouts, styles), ``widget`` included."""
    seen, stack, out = set(), [widget], []
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
            continue
        if isinstance(item, dict):
            stack.extend(item.values())
            continue
        if not isinstance(item, w.Widget) or id(item) in seen:
            continue
        seen.add(id(item))
        out.append(item)
        stack.extend(getattr(item, name, None) for name in item.keys)
    return out


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
    class_names : sequence of str, optional
        Names of the classes: the logits block's units and the label and prediction colours.

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
                 progress: bool = True, capture_kwargs=None, engine_kwargs=None,
                 class_names=None):
        if distributed.is_active() and distributed.world_size() > 1:
            raise RuntimeError(
                f"Peek is a dashboard of one process, and this is process {distributed.rank()} "
                f"of a group of {distributed.world_size()}; run Analysis(model, inputs, ...) "
                "and analysis.dump(folder) on every process, then open "
                "Peek(Analysis.load(folder)) in a notebook")
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
        self.progress = w.Output()
        fitted = analysis.view
        before = set(_open_widgets())
        super().__init__()
        self._refitting = self._own_change = self._closing = False
        self._worker = Worker(on_error=self._work_failed, on_idle=self._work_done)
        self._last_progress = 0.0
        self.fitted = fitted
        self.block = fitted.names[0]
        self.component = fitted.opening_component  # not the mean-like one
        self.rank = fitted.rank
        common = {"errors": self.errors}
        self.views = {
            "component_map": ComponentMap(fitted, **common),
            "layer_response": LayerResponse(fitted, renderer=self.renderer,
                                            class_names=class_names, **common),
            "gallery": InputGallery(fitted, top_k=top_k, renderer=self.renderer, **common),
            "sample_map": SampleMap(fitted, top_k=top_k, renderer=self.renderer,
                                    class_names=class_names, **common),
            "traversal": Traversal(fitted, **common),
        }
        self._links = [T.link((self, name), (view, name))
                       for view in self.views.values() for name in _LINKED]
        self.controls = Controls(self, max_rank=min(20, self.rank_cap))
        self.controls.rank_slider.max = max(min(self.controls.rank_slider.max, self.rank_cap),
                                            fitted.rank)
        self.header = w.HTML()
        self.observe(self.errors.guard(self._on_rank), "rank")
        v = self.views
        self.children = [
            self.header, self.errors, self.progress,
            _row([v["component_map"], v["layer_response"]]),
            v["traversal"],
            v["gallery"],
            _row([v["sample_map"], self.controls]),
        ]
        self.layout = w.Layout(padding="6px", max_width="100%",
                               border=f"1px solid {BORDER}")
        self.add_class("peek-dashboard")
        self._update_header()
        self._owned = set(_open_widgets()) - before  # closed with the dashboard
        self.controls.show_status(fit_status(analysis.estimator, analysis.timings.get("fit")))
        analysis.on_change(self._follow)  # analysis.refit(...) in a cell updates the views
        cell = _cell_id()
        if cell is not None:  # the cell ran again: its earlier dashboard is closed
            earlier = _BY_CELL.get(cell)
            if earlier is not None and earlier() is not None:
                earlier().close()
            _BY_CELL[cell] = weakref.ref(self)

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
        return self._open().blocks

    @property
    def estimator(self):
        """The fitted :class:`~peekwidgets.engine.CoupledCP` on show."""
        return self._open().estimator

    @property
    def model(self):
        """The analysed network (None for a dashboard made from a fit alone)."""
        return self._open().model

    @property
    def rank_cap(self) -> int:
        """The largest rank the dashboard fits: ``RANK_CAP``, and no more than the samples."""
        return min(RANK_CAP, self._open().blocks.n_samples)

    def _open(self):
        """The analysis; a clear error once the dashboard is closed."""
        if self.analysis is None:
            raise RuntimeError("this dashboard was closed (peek.close()); show the analysis "
                               "again with Peek(analysis)")
        return self.analysis

    @contextlib.contextmanager
    def _changing(self):
        """Run a change of the analysis that the dashboard makes and shows itself."""
        self._own_change = True
        try:
            yield self._open()
        finally:
            self._own_change = False

    def _follow(self):
        """The analysis changed outside the dashboard (``analysis.refit`` in a cell): show it."""
        if self.analysis is not None and not self._own_change:
            self._show_fit(None)

    @T.validate("rank")
    def _check_rank(self, proposal):
        value = proposal["value"]
        if isinstance(value, bool):
            raise T.TraitError(f"rank must be an integer, got {value!r}")
        if not 1 <= value <= self.rank_cap:
            raise T.TraitError(
                f"rank must be between 1 and {self.rank_cap}, got {value}; the dashboard fits "
                f"at most {RANK_CAP} components and no more than the {self.blocks.n_samples} "
                "samples (fit CoupledCP directly for more)")
        return value

    def _on_rank(self, change):
        if not self._refitting and change["new"] != self.fitted.rank:
            self.refit(rank=change["new"], background=True)

    def _update_header(self):
        f = self.fitted
        kind = "nonnegative" if f.nonnegative else "least squares"
        fit = np.nanmean(f.block_fit) if np.isfinite(f.block_fit).any() else np.nan
        model = "" if self.model is None else f"{type(self.model).__name__} · "
        extra = f" · {len(f.folded_A)} folded in" if len(f.folded_A) else ""
        self.header.value = (
            f"<div style=\"{FONT}display:flex;align-items:baseline;gap:12px;margin:0 0 6px 4px\">"
            f"<span style='font-size:18px;font-weight:700;color:{ACCENT}'>peek</span>"
            f"<span style='font-size:13px;color:{MUTED_TEXT}'>{model}{f.n_samples} samples · "
            f"{len(f.names)} blocks · rank {f.rank} · {kind} · mean block fit "
            f"{100 * fit:.0f}%{extra}</span></div>" + self._problem_count(f))

    @staticmethod
    def _problem_count(fitted: ViewModel) -> str:
        """How many problems the fit has, as a warning line that points to the component map,
        which lists them (empty for a healthy fit)."""
        n = len(fitted.health.problems(fitted.rank))
        return caption_html(f"<span style='color:{WARN}'>⚠ {n} problem{'s' if n > 1 else ''} "
                            "with this fit, listed under the component map</span>") if n else ""

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
              blocks=None, *, background: bool = False, **params) -> Peek:
        """Fit again (new rank, model or blocks) and update every view.

        Parameters
        ----------
        rank : int, optional
            New rank (the current one by default).
        nonnegative : bool, optional
            Nonnegative or least-squares model (the current one by default).
        blocks : list of str, optional
            Names of the blocks taking part (the current ones by default).
        background : bool
            Fit in a background thread (what the controls and the ``rank`` trait do): the views
            stay interactive and show the old fit until the new one is ready, progress is drawn
            in the controls, :meth:`cancel` stops the fit (its best factors are kept) and
            :meth:`wait` blocks until it is done. A refit asked for while one runs waits for it
            (a newer request replaces a waiting one).
        **params
            Other parameters of :class:`~peekwidgets.engine.CoupledCP` to change (``max_iter``,
            ``tol``, ...); the rest are those of the fit on show when the refit starts.
        """
        self._open()
        changes = {**params, "rank": self.fitted.rank if rank is None else int(rank)}
        if nonnegative is not None:
            changes["nonnegative"] = bool(nonnegative)
        self._check_rank({"value": changes["rank"]})
        label = f"fitting rank {changes['rank']}"
        if not background:
            start = time.perf_counter()
            with self._working(label + "…"), self._changing() as analysis:
                analysis.refit(blocks, progress=analysis.progress, **changes)
            self._show_fit(time.perf_counter() - start)
            return self
        max_iter = changes.get("max_iter", self.estimator.get_params().get("max_iter", 1))

        def run():
            start = time.perf_counter()
            with self._changing() as analysis:
                analysis.refit(blocks, callback=lambda i, loss: self._on_sweep(label, max_iter,
                                                                              i, loss),
                               progress=False, **changes)
            return time.perf_counter() - start

        self._submit(Job(label, run, self._show_fit), total=max_iter)
        return self

    def _submit(self, job: Job, total: int):
        self.controls.show_busy(True, total)
        self.controls.show_status(job.label + "…")
        self._worker.submit(job)

    def _on_sweep(self, label: str, max_iter: int, sweep: int, loss):
        """Live progress of a background fit (throttled), and its cancel point (closing the
        dashboard stops the fit without keeping it: the analysis keeps the fit it had)."""
        if self._closing:
            raise RuntimeError("the dashboard was closed during the fit")
        self._worker.check()
        now = time.monotonic()
        if sweep == 1 or now - self._last_progress >= PROGRESS_INTERVAL:
            self._last_progress = now
            text = f"{label} · sweep {sweep}/{max_iter}"
            self.controls.show_progress(sweep, text if loss is None else
                                        f"{text} · loss {loss:.3g}")

    def _show_fit(self, seconds: float):
        """Put the analysis' new fit on show, with how it ended in the status line."""
        self._refitting = True
        try:
            self._show(self.analysis.view)
            self.rank = self.fitted.rank
        finally:
            self._refitting = False
        self.controls.sync(self.fitted)
        self.controls.fill_progress()
        self.controls.show_status(fit_status(self.estimator, seconds))

    def _work_failed(self, exc: BaseException):
        """A background job raised: show it, and put the rank trait back on the fit on show."""
        if self._closing:
            return
        self.errors.show(exc)
        self._refitting = True
        try:
            self.rank = self.fitted.rank
        finally:
            self._refitting = False
        self.controls.show_status(f"failed: {type(exc).__name__} (see above); "
                                  f"{fit_status(self.estimator)}")

    def _work_done(self):
        self.controls.show_busy(False)

    def cancel(self):
        """Stop the background work: a fit stops after its current sweep and keeps its best
        factors (the status says interrupted); a rank profile's result is dropped."""
        if self._worker.busy:
            self._worker.cancel()
            self.controls.show_status("cancelling…")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background work is done; False when ``timeout`` seconds passed."""
        return self._worker.wait(timeout)

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
        with self._changing() as analysis:
            A_new = analysis.fold_in(x)
        self._show(analysis.view)
        return A_new

    def compute_rank_profile(self, max_rank: int | None = None, *, background: bool = False,
                             **kwargs):
        """Compute the rank profile of the fitted blocks (:meth:`Analysis.rank_profile`) and
        show it; returns it (None with ``background=True``: it is shown when ready, and
        :meth:`cancel` drops it)."""
        analysis = self._open()
        if max_rank is None:  # else checked by the analysis
            max_rank = min(self.controls.rank_slider.max, analysis.blocks.n_samples)
        label = f"rank profile up to {max_rank}"
        if not background:
            with self._working(label + "…"):
                profile = analysis.rank_profile(max_rank, **kwargs)
            self._show_profile(profile)
            return profile

        def done(profile):
            if self._worker.cancelled:
                self.controls.show_status(f"{label} cancelled")
            else:
                self._show_profile(profile)

        self._submit(Job(label, lambda: analysis.rank_profile(max_rank, progress=False,
                                                              **kwargs), done), total=1)
        return None

    def _show_profile(self, profile):
        self.show_rank_profile(profile)
        self.controls.show_status(f"rank profile up to {profile.max_rank}: estimated rank "
                                  f"{profile.estimated_rank}")

    def show_rank_profile(self, profile):
        """Show a precomputed :class:`~peekwidgets.analysis.RankProfile` in the controls."""
        self.controls.show_profile(profile)

    def compare_checkpoints(self, checkpoints, **kwargs):
        """Compare checkpoints of the analysed model (:meth:`Analysis.compare_checkpoints`) and
        show every criterion side by side in the controls; returns the comparison."""
        analysis = self._open()
        with self._working(f"comparing {len(checkpoints)} checkpoints…"):
            comparison = analysis.compare_checkpoints(checkpoints, **kwargs)
        self.controls.show_comparison(comparison)
        self.controls.show_status(f"compared {len(comparison.names)} checkpoints")
        return comparison

    # -- export ----------------------------------------------------------------------------
    @property
    def figures(self) -> dict:
        """``{name: bqplot.Figure}`` of every view."""
        out = {}
        for view in self.views.values():
            out.update(view.figures)
        return out

    def export(self, folder, *, archive: bool = False):
        """Write the dashboard as files a person can keep, into ``folder`` (on the kernel's
        side; created when missing).

        - ``dashboard.html``: the whole dashboard as one standalone page that holds its
          scripts and opens in a browser with no kernel and no network
          (:func:`peekwidgets.widgets.standalone.write_page`);
        - ``component_map.png|svg``, ``top_inputs.png``, ``layer_response.png|svg`` (the
          component on show) and ``rank_profiles.png`` (when computed): the views drawn by the
          report's figures from the same view model;
        - ``factors.npz``: the fit (:meth:`CoupledCP.load` reads it);
        - ``state.json``: the component, block and selection on show, the fit's settings and
          how it ended, and the list of files.

        With ``archive=True`` also ``folder.zip`` (what the Export button offers to download).
        Returns the folder, or ``(folder, zip path)``.
        """
        from matplotlib import rc_context

        from peekwidgets import report

        images = self._open().images
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        view, files = self.fitted, []

        def save(fig, name, formats=("png",)):
            for fmt in formats:
                with rc_context({"svg.fonttype": "none"}):  # SVG text stays text (editable)
                    fig.savefig(out / f"{name}.{fmt}", bbox_inches="tight", pad_inches=0.1)
                files.append(f"{name}.{fmt}")

        write_page(out / "dashboard.html", [self], title="peekwidgets dashboard")
        files.append("dashboard.html")
        save(report.plot_component_map(view), "component_map", ("png", "svg"))
        if view.input is not None:
            save(report.plot_top_inputs(view, images, self.views["gallery"].top_k,
                                        self.analysis.labels), "top_inputs")
        save(report.plot_layer_response(view, images, self.component), "layer_response",
             ("png", "svg"))
        if self.analysis.profile is not None:
            save(report.plot_rank_profiles({"model": self.analysis.profile},
                                           fitted_rank=view.rank), "rank_profiles")
        files.append(self.save(out / "factors.npz").name)
        params = {k: v for k, v in self.estimator.get_params().items()
                  if isinstance(v, (bool, int, float, str, type(None)))}
        files.append("state.json")
        state = {"component": self.component, "block": self.block,
                 "selected": list(self.selected), "rank": view.rank, "blocks": view.names,
                 "fit_status": fit_status(self.estimator), "params": params, "files": files}
        (out / "state.json").write_text(json.dumps(state, indent=2))
        if not archive:
            return out
        zipped = Path(shutil.make_archive(str(out), "zip", root_dir=out))
        return out, zipped

    def close(self):
        """Close every widget of the dashboard and let go of the analysis (its blocks)."""
        if not hasattr(self, "_owned"):  # a dashboard whose construction failed
            if hasattr(self, "_worker"):
                self._worker.cancel()
            return super().close()
        self._closing = True  # a fit in the background stops, and is not kept
        self._worker.cancel()
        self._worker.wait(30)
        for link in self._links:
            link.unlink()
        open_now = _open_widgets()
        widgets = _descendants(self) + [open_now[i] for i in self._owned if i in open_now]
        for widget in widgets:
            widget.unobserve_all()
        for widget in widgets:
            if widget is not self:
                widget.close()
        self.set_trait("fitted", None)
        self.analysis = None
        self.views = {}
        super().close()

    def save(self, path) -> Path:
        """Save the fitted factors in the engine's file format (``CoupledCP.load`` reads it)."""
        return self._open().save(path)
