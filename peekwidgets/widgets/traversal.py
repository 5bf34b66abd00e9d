"""Traversal: each component's share of every block, blocks in forward order, as lines."""

from __future__ import annotations

import bqplot as bq
import ipywidgets as w
import numpy as np

from peekwidgets.palette import ACCENT, MUTED
from peekwidgets.viewmodel import crowded

from .base import View, figure_layout
from .component_map import TOOLTIP_STYLE, short_names, view_styles
from .theme import caption_html
from .ticks import set_ticks

__all__ = ["Traversal", "path_summary"]


def path_summary(names, shares: np.ndarray) -> str:
    """One sentence on how one component's ``shares (n_blocks,)`` run through ``names``: where
    it peaks, and the blocks where it holds at least half its peak."""
    shares = np.asarray(shares, dtype=float)
    peak = int(np.argmax(shares))
    if not shares[peak] > 0:
        return "explains no block's variance (every share is 0 or negative)"
    strong = np.flatnonzero(shares >= shares[peak] / 2)
    first, last = names[strong[0]], names[strong[-1]]
    span = (f"at least half of that only in {first}" if first == last else
            f"at least half of that from {first} to {last}")
    gaps = len(strong) < strong[-1] - strong[0] + 1
    return (f"peaks in <b>{names[peak]}</b> ({shares[peak]:.0%}), {span}"
            + (" (with dips between)" if gaps else ""))


#: Block names longer than this together are slanted on the x axis (:func:`crowded`).
SLANT_CHARS = 60


class Traversal(View):
    """How every component travels through the network: its signed share of each block's
    variance (``fitted.shares``, the component map's numbers), blocks in forward order on x.

    The selected component is drawn thick in the accent colour, the others thin; clicking a
    point selects its component and block. The caption says where the selected component
    peaks and where it holds.

    Parameters
    ----------
    fitted : ViewModel
    errors : ErrorArea, optional
    """

    title = "Traversal"
    subtitle = ("each line is a component: its signed share of each block's variance, from the "
                "input through the layers in forward order (the component map's numbers)")

    def _build(self):
        xs, ys = bq.OrdinalScale(), bq.LinearScale()
        self._xs, self._ys = xs, ys
        self.lines = bq.Lines(x=np.array(["", " "]), y=np.zeros((1, 2)),
                              scales={"x": xs, "y": ys}, colors=[MUTED], stroke_width=1.5,
                              opacities=[0.8])
        self.selected_line = bq.Lines(x=np.array(["", " "]), y=np.zeros(2),
                                      scales={"x": xs, "y": ys}, colors=[ACCENT],
                                      stroke_width=4, marker="circle", marker_size=40)
        self.points = bq.Scatter(
            x=np.array([""]), y=np.zeros(1), scales={"x": xs, "y": ys}, colors=[MUTED],
            default_size=36, opacities=[0.0],
            tooltip=bq.Tooltip(fields=["x", "y"], labels=["block", "share"],
                               formats=["", ".1%"]), tooltip_style=TOOLTIP_STYLE)
        self.points.on_element_click(self.errors.guard(self._on_click))
        self.y_axis = bq.Axis(scale=ys, side="left", tick_format=".0%", grid_lines="dashed",
                              label="share of the block's variance", label_offset="58px")
        self.x_axis = bq.Axis(scale=xs, grid_lines="none", label="block (forward order)")
        self.figure = bq.Figure(
            marks=[self.lines, self.selected_line, self.points], axes=[self.x_axis, self.y_axis],
            display_toolbar=False, fig_margin=dict(top=14, bottom=45, left=80, right=20),
            layout=figure_layout(min_width="300px", height="260px"))
        self.caption = w.HTML()

    def _body(self):
        self.add_class("peek-traversal")
        return w.VBox([view_styles(), self.figure, self.caption])

    def _refit(self):
        f = self.fitted
        names = np.array(short_names(f.names))  # as the component map's rows
        slant = crowded(names, SLANT_CHARS)
        self.x_axis.tick_rotate, self.x_axis.label = (-20, "") if slant else (
            0, "block (forward order)")
        with self.lines.hold_sync():
            self.lines.x = names
            self.lines.y = f.shares.T
        rank, n = f.rank, len(names)
        with self.points.hold_sync():
            self.points.x = np.tile(names, rank)
            self.points.y = f.shares.T.reshape(-1)
        lo, hi = float(min(f.shares.min(), 0.0)), float(max(f.shares.max(), 0.0))
        set_ticks(self.y_axis, self._ys, lo, hi, n=5, percent=True)
        self._n_blocks = n

    def _on_click(self, mark, event):
        component, block = divmod(int(event["data"]["index"]), self._n_blocks)
        with self.hold_trait_notifications():
            self.block = self.fitted.names[block]
            self.component = component

    def update(self, changed=None):
        if changed == "selected":
            return
        f = self.fitted
        r = self.component
        with self.selected_line.hold_sync():
            self.selected_line.x = np.array(short_names(f.names))
            self.selected_line.y = f.shares[:, r]
        self.caption.value = caption_html(
            f"<b style='color:{ACCENT}'>component {r}</b> " + path_summary(f.names, f.shares[:, r]))

    @property
    def figures(self):
        return {"traversal": self.figure}
