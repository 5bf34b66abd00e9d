"""Sample map: a scatter of two columns of A with brush selection."""

from __future__ import annotations

import weakref

import bqplot as bq
import ipywidgets as w
import numpy as np
import traitlets as T

from peekwidgets.palette import ACCENT, INK, MUTED, NEW

from .base import View
from .theme import caption_html

__all__ = ["SampleMap"]

_CATEGORY = ["#1c7ed6", "#f08c00", "#2f9e44", "#c2255c", "#7048e8", "#0c8599", "#e8590c",
             "#5c940d", "#862e9c", "#495057"]


class SampleMap(View):
    """Scatter of ``A[:, x_component]`` against ``A[:, y_component]``.

    The x axis follows the selected component (both axes can be chosen).
    Brushing a rectangle selects the samples inside it (``selected``; among
    all samples), a lasso selects the drawn samples inside its outline; the
    bar chart shows the mean component profile of the selection (of the
    gallery's top samples when nothing is selected). Clicking a profile bar
    selects that component. Folded-in samples are drawn as green diamonds.

    Parameters
    ----------
    fitted : ViewModel
    max_points : int
        At most this many samples are drawn (a fixed random subset); the
        brush selects among all samples.
    top_k : int
        Samples used for the profile when nothing is selected.
    errors : ErrorArea, optional
    """

    title = "Sample map"
    subtitle = ("each point is a sample, placed by its loadings on two components (columns "
                "of A); brush or lasso to select")

    x_component = T.Int(0)
    y_component = T.Int(1)

    def __init__(self, fitted, *, max_points: int = 3000, top_k: int = 12, **kwargs):
        self.max_points = int(max_points)
        self.top_k = int(top_k)
        self._syncing = False
        self._drawn_x = self._drawn_y = None
        super().__init__(fitted, **kwargs)

    def _build(self):
        xs, ys = bq.LinearScale(), bq.LinearScale()
        self._xs, self._ys = xs, ys
        self.scatter = bq.Scatter(x=np.zeros(1), y=np.zeros(1), scales={"x": xs, "y": ys},
                                  colors=[INK], default_size=14, opacities=[0.55])
        self.highlight = bq.Scatter(x=np.zeros(0), y=np.zeros(0), scales={"x": xs, "y": ys},
                                    colors=[ACCENT], default_size=30, stroke="white",
                                    stroke_width=0.5)
        self.folded = bq.Scatter(x=np.zeros(0), y=np.zeros(0), scales={"x": xs, "y": ys},
                                 colors=[NEW], marker="diamond", default_size=70,
                                 stroke="white")
        self.brush = bq.interacts.BrushSelector(x_scale=xs, y_scale=ys, marks=[self.scatter],
                                                color=ACCENT)
        self.brush.observe(self.errors.guard(self._on_brush), "brushing")
        self.lasso = bq.interacts.LassoSelector(x_scale=xs, y_scale=ys, marks=[self.scatter],
                                                color=ACCENT)
        self.scatter.observe(self.errors.guard(self._on_lasso), "selected")
        self.tool = w.ToggleButtons(options=["brush", "lasso"], value="brush",
                                    style={"button_width": "60px"})
        self.tool.observe(self.errors.guard(self._on_tool), "value")
        self.x_axis = bq.Axis(scale=xs, label="component 0", grid_lines="dashed", num_ticks=5,
                              tick_format=".2f")
        self.y_axis = bq.Axis(scale=ys, side="left", label="component 1",
                              grid_lines="dashed", num_ticks=5, tick_format=".2f")
        self.figure = bq.Figure(marks=[self.scatter, self.highlight, self.folded],
                                axes=[self.x_axis, self.y_axis], interaction=self.brush,
                                display_toolbar=False,
                                fig_margin=dict(top=10, bottom=45, left=55, right=24),
                                layout=w.Layout(width="360px", height="320px"))
        self.x_pick = w.Dropdown(description="x", layout=w.Layout(width="130px"))
        self.y_pick = w.Dropdown(description="y", layout=w.Layout(width="130px"))
        for pick in (self.x_pick, self.y_pick):
            pick.style.description_width = "16px"
            pick.observe(self.errors.guard(self._on_pick), "value")
        self.clear_button = w.Button(description="clear selection", icon="times",
                                     layout=w.Layout(width="140px"))
        self.clear_button.on_click(self.errors.guard(lambda _: setattr(self, "selected", [])))
        ps, py = bq.OrdinalScale(), bq.LinearScale()
        self.profile = bq.Bars(x=np.zeros(1), y=np.zeros(1), scales={"x": ps, "y": py},
                               colors=[INK], padding=0.2)
        self.profile.on_element_click(self.errors.guard(self._on_profile_click))
        self.profile_figure = bq.Figure(
            marks=[self.profile],
            axes=[bq.Axis(scale=ps, label="component"),
                  bq.Axis(scale=py, side="left", tick_format=".2f", num_ticks=4,
                          grid_lines="dashed")],
            fig_margin=dict(top=34, bottom=40, left=50, right=10), display_toolbar=False,
            layout=w.Layout(width="300px", height="220px"), title="mean profile")
        self.caption = w.HTML()

    def _body(self):
        self.add_class("peek-sample-map")
        controls = w.HBox([self.x_pick, self.y_pick, self.tool, self.clear_button])
        right = w.VBox([self.profile_figure, self.caption], layout=w.Layout(width="310px"))
        return w.VBox([controls, w.HBox([self.figure, right])])

    def _refit(self):
        f = self.fitted
        rng = np.random.default_rng(0)
        n = f.n_samples
        self.shown = (np.sort(rng.choice(n, self.max_points, replace=False))
                      if n > self.max_points else np.arange(n))
        labels = f.blocks.labels
        if labels is not None:
            _, codes = np.unique(labels[self.shown], return_inverse=True)
            self.scatter.colors = [_CATEGORY[c % len(_CATEGORY)] for c in codes]
        options = [(f"component {r}", r) for r in range(f.rank)]
        self._syncing = True
        try:
            for pick in (self.x_pick, self.y_pick):
                pick.options = options
            self.x_component = min(self.component, f.rank - 1)
            if self.y_component >= f.rank or self.y_component == self.x_component:
                self.y_component = (self.x_component + 1) % f.rank
            self.x_pick.value, self.y_pick.value = self.x_component, self.y_component
        finally:
            self._syncing = False

    def _on_pick(self, change):
        if self._syncing:
            return
        self.x_component, self.y_component = self.x_pick.value, self.y_pick.value
        self._draw_scatter()

    def _on_brush(self, change):
        if change["new"] or self.brush.selected_x is None or self.brush.selected_y is None:
            return
        self.select_box(self.brush.selected_x, self.brush.selected_y)

    def _on_tool(self, change):
        self.figure.interaction = self.brush if change["new"] == "brush" else self.lasso

    def _on_lasso(self, change):
        if self.tool.value == "lasso" and change["new"] is not None:
            self.selected = sorted(int(i) for i in self.shown[np.asarray(change["new"], int)])

    def select_box(self, x_range, y_range):
        """Select every sample whose loadings fall in the rectangle (the brush's action)."""
        (x0, x1), (y0, y1) = sorted(map(float, x_range)), sorted(map(float, y_range))
        A = self.fitted.A
        x, y = A[:, self.x_component], A[:, self.y_component]
        inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
        self.selected = np.flatnonzero(inside).tolist()

    def _on_profile_click(self, mark, event):
        self.component = int(event["data"]["index"])

    def _draw_scatter(self):
        f = self.fitted
        i, j = self.x_component, self.y_component
        key = (weakref.ref(f), len(f.folded_A))  # unchanged columns are not sent again
        new_x, new_y = (key, i) != self._drawn_x, (key, j) != self._drawn_y
        for mark, rows in ((self.scatter, f.A[self.shown]), (self.folded, f.folded_A)):
            with mark.hold_sync():
                if new_x:
                    mark.x = rows[:, i]
                if new_y:
                    mark.y = rows[:, j]
        self._drawn_x, self._drawn_y = (key, i), (key, j)
        self.x_axis.label, self.y_axis.label = f"component {i}", f"component {j}"
        self._draw_selection()

    def _draw_selection(self):
        f = self.fitted
        sel = np.asarray(self.selected, dtype=int)[: self.max_points]
        with self.highlight.hold_sync():
            self.highlight.x = f.A[sel, self.x_component]
            self.highlight.y = f.A[sel, self.y_component]
        if len(self.selected):
            rows, what = np.asarray(self.selected), f"{len(self.selected)} selected samples"
        else:
            rows = f.top(self.component, self.top_k)
            what = f"top {len(rows)} samples of component {self.component} (nothing selected)"
        colors = [MUTED] * f.rank
        colors[self.component] = ACCENT
        with self.profile.hold_sync():
            self.profile.x = np.arange(f.rank)
            self.profile.y = f.A[rows].mean(axis=0)
            self.profile.colors = colors
        self.caption.value = caption_html(f"mean loadings of {what}")

    def update(self, changed=None):
        if changed == "block":
            return
        if changed == "selected":
            self._draw_selection()
            return
        if changed in (None, "component") and self.x_component != self.component:
            self._syncing = True
            try:
                self.x_component = self.component
                if self.y_component == self.component:
                    self.y_component = (self.component + 1) % self.fitted.rank
                self.x_pick.value, self.y_pick.value = self.x_component, self.y_component
            finally:
                self._syncing = False
        self._draw_scatter()

    @property
    def figures(self):
        return {"sample_map": self.figure, "sample_profile": self.profile_figure}
