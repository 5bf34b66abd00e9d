"""Shared state traits, the error area and the base class of every view."""

from __future__ import annotations

import functools
import html
import traceback

import ipywidgets as w
import numpy as np
import traitlets as T

from peekwidgets.viewmodel import ViewModel

from .theme import FONT, title_html

__all__ = ["ErrorArea", "StateTraits", "View"]


def figure_layout(**kwargs) -> w.Layout:
    """The layout of a figure as wide as its view: ``width="100%"`` without the 2 px side
    margins widgets get by default, which would make it overflow its box (a scroll bar)."""
    return w.Layout(width="100%", margin="2px 0", **kwargs)


class ErrorArea(w.VBox):
    """A visible box that shows exceptions raised in widget callbacks.

    ``errors.exceptions`` keeps every exception shown since the last
    :meth:`clear`; the box is hidden while it is empty.
    """

    def __init__(self, **kwargs):
        self._html = w.HTML()
        self._dismiss = w.Button(description="Dismiss", icon="times",
                                 layout=w.Layout(width="100px"))
        self._dismiss.on_click(lambda _: self.clear())
        super().__init__([self._html, self._dismiss], **kwargs)
        self.add_class("peek-error")
        self.exceptions: list[BaseException] = []
        self.layout.display = "none"

    def show(self, exc: BaseException):
        """Add ``exc`` (with its traceback folded) to the box and reveal it."""
        self.exceptions.append(exc)
        items = []
        for e in self.exceptions[-3:]:
            tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
            items.append(
                f"<div><b>{html.escape(type(e).__name__)}</b>: {html.escape(str(e))}"
                f"<details><summary>traceback</summary><pre style='font-size:11px'>"
                f"{html.escape(tb)}</pre></details></div>"
            )
        self._html.value = (
            f"<div style=\"{FONT}background:rgba(201,42,42,0.08);border:1px solid #ffa8a8;"
            f"color:var(--jp-error-color1, #c92a2a);"
            f"padding:6px 10px;border-radius:6px;font-size:13px\">{''.join(items)}</div>"
        )
        self.layout.display = None

    def clear(self):
        self.exceptions = []
        self._html.value = ""
        self.layout.display = "none"

    def guard(self, fn):
        """Wrap a callback so that an exception lands in this area instead of being lost."""
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # shown to the user, not swallowed
                self.show(exc)
        return wrapper


class StateTraits(T.HasTraits):
    """The shared state: ``component``, ``block``, ``selected`` and the ``fitted`` result.

    Values are checked against ``fitted`` (a component beyond the rank, an
    unknown block or an out-of-range sample raise :class:`traitlets.TraitError`).
    """

    component = T.Union([T.Int(), T.Instance(np.integer)], default_value=0,
                        help="Selected component (column of A).")
    block = T.Unicode("", help="Selected block name.")
    selected = T.Union([T.List(), T.Tuple(), T.Instance(np.ndarray)], default_value=[],
                       help="Selected sample indices (ints; a list or an integer array).")
    fitted = T.Instance(ViewModel, allow_none=True, help="The fit on show.")

    @T.validate("component")
    def _check_component(self, proposal):
        r = proposal["value"]
        if isinstance(r, (bool, np.bool_)):
            raise T.TraitError(f"component must be an integer (a column of A), got {r!r}")
        r = int(r)
        if self.fitted is not None and not 0 <= r < self.fitted.rank:
            raise T.TraitError(
                f"component {r} is out of range; the fit has rank {self.fitted.rank} "
                f"(components 0..{self.fitted.rank - 1})"
            )
        return r

    @T.validate("block")
    def _check_block(self, proposal):
        name = proposal["value"]
        if self.fitted is not None and name not in self.fitted.names:
            raise T.TraitError(f"no fitted block {name!r}; blocks are {self.fitted.names}")
        return name

    @T.validate("selected")
    def _check_selected(self, proposal):
        sel = proposal["value"]
        arr = np.asarray(sel)
        if arr.size == 0:
            return []
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise T.TraitError(
                f"selected must be a list of sample indices (ints, or an integer array), got "
                f"{arr.dtype} values {arr.ravel()[:3].tolist()}{'...' if arr.size > 3 else ''}")
        n = self.fitted.n_samples if self.fitted is not None else None
        if n is not None and (arr.min() < 0 or arr.max() >= n):
            bad = arr[(arr < 0) | (arr >= n)][:5].tolist()
            raise T.TraitError(f"selected samples {bad} out of range 0..{n - 1}")
        return list(dict.fromkeys(arr.tolist()))  # each sample once, in the order given


class View(w.VBox, StateTraits):
    """Base of the linked views: the state traits, a header and an error area.

    Every view observes ``component``, ``block``, ``selected`` and ``fitted``;
    inside :class:`~peekwidgets.widgets.Peek` these are linked to the
    dashboard's traits, alone they are the view's own.
    """

    title = ""
    subtitle = ""

    def __init__(self, fitted: ViewModel, *, errors: ErrorArea | None = None, **kwargs):
        self.errors = errors if errors is not None else ErrorArea()
        self.header = w.HTML(title_html(self.title, self.subtitle))
        super().__init__(**kwargs)
        self.fitted = fitted
        if not self.block or self.block not in fitted.names:
            self.block = fitted.names[0]
        self._build()
        self.observe(self.errors.guard(self._on_state), ["component", "block", "selected"])
        self.observe(self.errors.guard(self._on_fitted), "fitted")
        body = [self.header, self._body()]
        self.children = body + ([self.errors] if errors is None else [])
        self.layout.margin = "0 6px 6px 0"
        self._on_fitted()

    @classmethod
    def from_fitted(cls, blocks, estimator, **kwargs) -> View:
        """The view alone, for a fitted estimator and the blocks it was fitted on."""
        return cls(ViewModel(blocks, estimator), **kwargs)

    def _on_fitted(self, change=None):
        """A new fit: clamp the state into range, then redraw."""
        fitted = self.fitted
        with self.hold_trait_notifications():
            if self.component >= fitted.rank:
                self.component = 0
            if self.block not in fitted.names:
                self.block = fitted.names[0]
            if any(i >= fitted.n_samples for i in self.selected):
                self.selected = []
        self._refit()
        self.update()

    def _on_state(self, change):
        self.update(change["name"])

    # -- subclass API ----------------------------------------------------------------------
    def _build(self):
        """Create the widgets (once)."""
        raise NotImplementedError

    def _body(self) -> w.Widget:
        """The widget shown under the header."""
        raise NotImplementedError

    def _refit(self):
        """Adapt to a new fit (rank, blocks) before :meth:`update`."""

    def update(self, changed: str | None = None):
        """Push the data for the current state into the widgets.

        ``changed`` names the trait that changed (``"component"``, ``"block"``,
        ``"selected"``), or None to redraw everything.
        """
        raise NotImplementedError

    @property
    def figures(self) -> dict:
        """``{name: bqplot.Figure}`` of the view, for export."""
        return {}

    def close(self):
        """Close the view and let go of its fit (and of the blocks behind it)."""
        self.unobserve_all()
        self.set_trait("fitted", None)
        super().close()
