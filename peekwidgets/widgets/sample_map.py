"""Sample map: a scatter of two columns of A with brush and lasso selection."""

from __future__ import annotations

import html
import weakref

import bqplot as bq
import ipywidgets as w
import numpy as np
import traitlets as T

from peekwidgets.palette import ACCENT, INK, MUTED, NEW, SEQUENTIAL
from peekwidgets.viewmodel import LOADS_ON_Z, class_name

from .base import View, figure_layout
from .component_map import TOOLTIP_STYLE, color_bar_html, view_styles
from .render import InputRenderer
from .theme import caption_html
from .ticks import set_ticks

__all__ = ["CATEGORY", "SELECTION_STROKE", "SampleMap"]

#: Category colours (labels, predictions): none near the selection colour ``ACCENT`` (orange)
#: or the folded-in colour ``NEW`` (green).
CATEGORY = ["#1c7ed6", "#7048e8", "#c2255c", "#0c8599", "#5c940d", "#862e9c", "#495057",
            "#364fc7", "#20c997", "#8b5e34"]
#: Outline of selected points, so they read on any category colour.
SELECTION_STROKE = "#212529"
#: Tooltip thumbnail size, pixels.
THUMB = 96


class SampleMap(View):
    """Scatter of ``A[:, x_component]`` against ``A[:, y_component]``, coloured by label,
    prediction or loading.

    The x axis follows the selected component (both axes can be chosen). Three tools: "hover"
    shows a point's input, index and label, and a click selects it (``selected``); "brush"
    selects the samples inside a rectangle (among all samples); "lasso" selects the drawn
    samples inside its outline (a brush or lasso covers the points, so tooltips need "hover").
    A selection made elsewhere (a tile, code) or cleared removes the brush and lasso marks.
    The bar chart shows how the selection loads on every component relative to all samples
    (:meth:`~peekwidgets.viewmodel.ViewModel.selection_z`: the selection's mean loading minus
    all samples' mean, in standard deviations of all samples); the top inputs of the component
    stand in when nothing is selected. Clicking a bar selects that component. Folded-in samples
    are drawn as green diamonds.

    Parameters
    ----------
    fitted : ViewModel
    max_points : int
        At most this many samples are drawn (a fixed random subset); the
        brush selects among all samples.
    top_k : int
        Samples used for the profile when nothing is selected.
    renderer : InputRenderer, optional
        Draws the hovered input; :meth:`InputRenderer.for_blocks` by default.
    class_names : sequence of str, optional
        Names of the label and prediction categories (``class_names[k]`` for class ``k``).
    errors : ErrorArea, optional
    """

    title = "Sample map"
    subtitle = ("each point is a sample, placed by its loadings on two components (columns "
                "of A); hover a point to see its input, brush or lasso to select")

    x_component = T.Int(0)
    y_component = T.Int(1)
    color_by = T.Unicode("label", help="'label', 'prediction', 'loading' or 'none'.")

    def __init__(self, fitted, *, max_points: int = 3000, top_k: int = 12,
                 renderer: InputRenderer | None = None, class_names=None, **kwargs):
        self.max_points = int(max_points)
        self.top_k = int(top_k)
        self.renderer = renderer if renderer is not None else InputRenderer.for_blocks(
            fitted.blocks)
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self._syncing = False
        self._selecting = False  # the brush or lasso is setting `selected`
        self._drawn_x = self._drawn_y = self._drawn_colors = None
        super().__init__(fitted, **kwargs)

    def _build(self):
        xs, ys = bq.LinearScale(), bq.LinearScale()
        self._xs, self._ys = xs, ys
        self._loading_scale = bq.ColorScale(colors=SEQUENTIAL)
        self.hover_image = w.Image(format="png", layout=w.Layout(width=f"{THUMB}px",
                                                                 height="auto"))
        self.hover_text = w.HTML()
        self.hover_box = w.VBox([self.hover_image, self.hover_text],
                                layout=w.Layout(align_items="center", padding="4px"))
        self.hover_box.add_class("peek-hover")
        self.scatter = bq.Scatter(x=np.zeros(1), y=np.zeros(1),
                                  scales={"x": xs, "y": ys, "color": self._loading_scale},
                                  colors=[INK], default_size=14, opacities=[0.6],
                                  tooltip=self.hover_box, tooltip_style=TOOLTIP_STYLE,
                                  interactions={"hover": "tooltip", "click": "select"})
        self.scatter.on_hover(self.errors.guard(self._on_hover))
        self.highlight = bq.Scatter(x=np.zeros(0), y=np.zeros(0), scales={"x": xs, "y": ys},
                                    colors=[ACCENT], default_size=34, stroke=SELECTION_STROKE,
                                    stroke_width=1.0)
        self.folded = bq.Scatter(x=np.zeros(0), y=np.zeros(0), scales={"x": xs, "y": ys},
                                 colors=[NEW], marker="diamond", default_size=70,
                                 stroke="white")
        # the brush and lasso in grey: the points they select are drawn in the accent colour
        self.brush = bq.interacts.BrushSelector(x_scale=xs, y_scale=ys, marks=[self.scatter],
                                                color=MUTED)
        self.brush.observe(self.errors.guard(self._on_brush), "brushing")
        self.lasso = bq.interacts.LassoSelector(x_scale=xs, y_scale=ys, marks=[self.scatter],
                                                color=MUTED)
        self.scatter.observe(self.errors.guard(self._on_mark_selected), "selected")
        self.tool = w.ToggleButtons(options=["hover", "brush", "lasso"], value="hover",
                                    style={"button_width": "60px"})
        self.tool.observe(self.errors.guard(self._on_tool), "value")
        self.x_axis = bq.Axis(scale=xs, label="component 0", grid_lines="dashed")
        self.y_axis = bq.Axis(scale=ys, side="left", label="component 1", grid_lines="dashed")
        self.figure = bq.Figure(marks=[self.scatter, self.highlight, self.folded],
                                axes=[self.x_axis, self.y_axis], interaction=None,
                                display_toolbar=False,
                                fig_margin=dict(top=10, bottom=45, left=55, right=16),
                                layout=figure_layout(min_width="260px", height="320px"))
        self.x_pick = w.Dropdown(description="x", layout=w.Layout(width="130px"),
                                 tooltip="the component on show: every view follows it")
        self.y_pick = w.Dropdown(description="y", layout=w.Layout(width="130px"),
                                 tooltip="the component on the y axis")
        for pick in (self.x_pick, self.y_pick):
            pick.style.description_width = "16px"
            pick.observe(self.errors.guard(self._on_pick), "value")
        self.color_pick = w.Dropdown(description="colour", layout=w.Layout(width="170px"))
        self.color_pick.style.description_width = "44px"
        self.color_pick.observe(self.errors.guard(
            lambda change: setattr(self, "color_by", change["new"])), "value")
        self.observe(self.errors.guard(lambda _: self._draw_colors()), "color_by")
        self.clear_button = w.Button(description="clear selection", icon="times",
                                     layout=w.Layout(width="140px"))
        self.clear_button.on_click(self.errors.guard(lambda _: setattr(self, "selected", [])))
        ps, py = bq.OrdinalScale(), bq.LinearScale()
        self._profile_scale = py
        self.profile = bq.Bars(x=np.zeros(1), y=np.zeros(1), scales={"x": ps, "y": py},
                               colors=[INK], padding=0.2)
        self.profile.on_element_click(self.errors.guard(self._on_profile_click))
        self.profile_axis = bq.Axis(scale=py, side="left", grid_lines="dashed", label="z")
        self.profile_figure = bq.Figure(
            marks=[self.profile],
            axes=[bq.Axis(scale=ps, label="component"), self.profile_axis],
            fig_margin=dict(top=10, bottom=40, left=50, right=10), display_toolbar=False,
            layout=figure_layout(min_width="220px", height="220px"))
        self.profile_title = w.HTML(caption_html(
            "<b>selection vs all samples</b> (z, per component)"))
        self.caption = w.HTML()
        self.legend = w.HTML()
        self.legend.add_class("peek-legend")

    def _body(self):
        self.add_class("peek-sample-map")
        controls = w.HBox([self.x_pick, self.y_pick, self.color_pick, self.tool,
                           self.clear_button], layout=w.Layout(flex_flow="row wrap"))
        left = w.VBox([self.figure, self.legend], layout=w.Layout(flex="1 1 300px",
                                                                  min_width="0"))
        right = w.VBox([self.profile_title, self.profile_figure, self.caption],
                       layout=w.Layout(flex="1 1 240px", min_width="0"))
        return w.VBox([view_styles(), controls, w.HBox([left, right], layout=w.Layout(
            flex_flow="row wrap", width="100%"))])

    # -- a new fit -------------------------------------------------------------------------
    def _refit(self):
        f = self.fitted
        rng = np.random.default_rng(0)
        n = f.n_samples
        self.shown = (np.sort(rng.choice(n, self.max_points, replace=False))
                      if n > self.max_points else np.arange(n))
        options = [(f"component {r}", r) for r in range(f.rank)]
        colorings = [(name, key) for name, key, ok in (
            ("label", "label", f.blocks.labels is not None),
            (f"prediction ({f.prediction_block})", "prediction", f.predictions is not None),
            ("loading on x", "loading", True), ("none", "none", True)) if ok]
        self._syncing = True
        try:
            for pick in (self.x_pick, self.y_pick):
                pick.options = options
            self.x_component = min(self.component, f.rank - 1)
            if self.y_component >= f.rank or self.y_component == self.x_component:
                self.y_component = (self.x_component + 1) % f.rank
            self.x_pick.value, self.y_pick.value = self.x_component, self.y_component
            self.color_pick.options = colorings
            keys = [key for _, key in colorings]
            if self.color_by not in keys:
                self.color_by = keys[0]
            self.color_pick.value = self.color_by
        finally:
            self._syncing = False
        self._drawn_x = self._drawn_y = self._drawn_colors = None

    # -- colour ----------------------------------------------------------------------------
    def categories(self) -> np.ndarray | None:
        """``(n_samples,)`` the categories points are coloured by (labels or predictions), or
        None when colouring by loading or not at all."""
        f = self.fitted
        return {"label": f.blocks.labels, "prediction": f.predictions}.get(self.color_by)

    def category_name(self, value) -> str:
        """A category's name: ``class_names[value]`` when given, else the value."""
        return class_name(value, self.class_names)

    def _draw_colors(self):
        key = (weakref.ref(self.fitted), self.color_by,
               self.x_component if self.color_by == "loading" else None)
        if key != self._drawn_colors:  # labels and predictions stay with a new component
            self._color_points()
            self._drawn_colors = key
        if self.color_pick.value != self.color_by:
            self.color_pick.value = self.color_by

    def _color_points(self):
        f = self.fitted
        cats = self.categories()
        with self.scatter.hold_sync():
            if self.color_by == "loading":
                values = f.A[self.shown, self.x_component]
                self.scatter.color = values
                self._loading_scale.min, self._loading_scale.max = (float(values.min()),
                                                                    float(values.max()))
                self.legend.value = color_bar_html(
                    values.min(), values.max(), f"colour: loading on component "
                    f"{self.x_component}", "{:+.2f}", SEQUENTIAL)
            elif cats is not None:
                shown = cats[self.shown]
                if shown.dtype == object:  # None or mixed types: sorted by their text
                    shown = shown.astype(str)
                uniques, codes = np.unique(shown, return_inverse=True)
                self.scatter.color = None
                self.scatter.colors = [CATEGORY[c % len(CATEGORY)] for c in codes]
                what = ("label (given with the inputs; the fit never saw it)"
                        if self.color_by == "label" else
                        f"prediction (argmax of {f.prediction_block})")
                swatches = " ".join(
                    f"<span style='white-space:nowrap'><span style='color:"
                    f"{CATEGORY[k % len(CATEGORY)]};font-size:15px'>●</span>"
                    f"{html.escape(self.category_name(u))}</span>"
                    for k, u in enumerate(uniques))
                self.legend.value = caption_html(f"colour: {what} · {swatches}")
            else:
                self.scatter.color = None
                self.scatter.colors = [INK]
                self.legend.value = ""

    # -- interaction -----------------------------------------------------------------------
    def _on_pick(self, change):
        if self._syncing:
            return
        self.x_component, self.y_component = self.x_pick.value, self.y_pick.value
        if self.x_component != self.component:  # x is the component on show: all views follow
            self.component = self.x_component
        else:
            self._draw_scatter()

    def _on_brush(self, change):
        if change["new"] or self.brush.selected_x is None or self.brush.selected_y is None:
            return
        self.select_box(self.brush.selected_x, self.brush.selected_y)

    def _on_tool(self, change):
        self._clear_marks()
        self.figure.interaction = {"brush": self.brush, "lasso": self.lasso}.get(change["new"])

    def _on_mark_selected(self, change):
        """The lasso's points, or the point clicked with the hover tool."""
        if self.tool.value != "brush" and change["new"] is not None:
            self._select(sorted(int(i) for i in self.shown[np.asarray(change["new"], int)]))

    def _on_hover(self, mark, event):
        point = event.get("point") or event.get("data")  # bqplot sends the point's data dict
        self.show_hover(int(self.shown[int(point["index"])]))

    def show_hover(self, i: int):
        """Fill the tooltip with sample ``i``: its input, index, label and loadings."""
        f = self.fitted
        if f.input is not None and self.renderer.is_image:
            self.hover_image.value = self.renderer.sample_png(
                i, f.input_rows([i])[0] if self.renderer.needs(i) else None)
            self.hover_image.layout.display = None
        else:
            self.hover_image.layout.display = "none"
        labels = f.blocks.labels
        lines = [f"<b>#{i}</b>"]
        if labels is not None:
            lines.append(f"label {html.escape(self.category_name(labels[i]))}")
        if f.predictions is not None:
            lines.append(f"predicted {html.escape(self.category_name(f.predictions[i]))}")
        lines.append(f"x {f.A[i, self.x_component]:+.3f} · y {f.A[i, self.y_component]:+.3f}")
        self.hover_text.value = caption_html("<br>".join(lines))

    def _select(self, index):
        self._selecting = True
        try:
            self.selected = index
        finally:
            self._selecting = False

    def select_box(self, x_range, y_range):
        """Select every sample whose loadings fall in the rectangle (the brush's action)."""
        (x0, x1), (y0, y1) = sorted(map(float, x_range)), sorted(map(float, y_range))
        A = self.fitted.A
        x, y = A[:, self.x_component], A[:, self.y_component]
        inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
        self._select(np.flatnonzero(inside).tolist())

    def _clear_marks(self):
        """Remove the brush rectangle and the lasso outline (in the browser too)."""
        self.brush.reset()
        self.lasso.reset()
        with self.brush.hold_trait_notifications():
            self.brush.selected_x = self.brush.selected_y = None
        self.scatter.selected = None

    def _on_profile_click(self, mark, event):
        self.component = int(event["data"]["index"])

    # -- drawing ---------------------------------------------------------------------------
    def _draw_scatter(self):
        f = self.fitted
        i, j = self.x_component, self.y_component
        key = (weakref.ref(f), len(f.folded_A))  # unchanged columns are not sent again
        new_x, new_y = (key, i) != self._drawn_x, (key, j) != self._drawn_y
        if new_x or new_y:  # a brush or lasso drawn on the old axes no longer outlines anything
            self._clear_marks()
        for mark, rows in ((self.scatter, f.A[self.shown]), (self.folded, f.folded_A)):
            with mark.hold_sync():
                if new_x:
                    mark.x = rows[:, i]
                if new_y:
                    mark.y = rows[:, j]
        self._drawn_x, self._drawn_y = (key, i), (key, j)
        self.x_axis.label, self.y_axis.label = f"component {i}", f"component {j}"
        for scale, axis, r in ((self._xs, self.x_axis, i), (self._ys, self.y_axis, j)):
            values = np.concatenate([f.A[self.shown, r], f.folded_A[:, r]])
            set_ticks(axis, scale, float(values.min()), float(values.max()))
        self._draw_colors()
        self._draw_selection()

    def _draw_selection(self):
        f = self.fitted
        sel = np.asarray(self.selected, dtype=int)
        drawn = sel[: self.max_points]
        with self.highlight.hold_sync():
            self.highlight.x = f.A[drawn, self.x_component]
            self.highlight.y = f.A[drawn, self.y_component]
        if len(sel):
            rows, what = sel, f"the {len(sel)} selected samples"
        else:
            rows = f.top(self.component, self.top_k)
            what = (f"the top {len(rows)} inputs of component {self.component} (nothing "
                    "selected)")
        z = f.selection_z(rows)
        hits = f.loads_on(rows)
        colors = np.full(f.rank, MUTED, dtype=object)
        colors[hits] = INK
        colors[self.component] = ACCENT
        with self.profile.hold_sync():
            self.profile.x = np.arange(f.rank)
            self.profile.y = z
            self.profile.colors = colors.tolist()
        set_ticks(self.profile_axis, self._profile_scale, min(float(z.min()), 0.0),
                  max(float(z.max()), 0.0))
        loads = (f"they load on component{'s' if len(hits) > 1 else ''} "
                 f"{', '.join(map(str, hits))} (z &ge; {LOADS_ON_Z:g}: blue bars, the "
                 "component on show orange)" if len(hits)
                 else f"no component stands out (all z &lt; {LOADS_ON_Z:g})")
        self.caption.value = caption_html(
            f"mean loading of {what} on each component minus all samples' mean, in standard "
            f"deviations of all samples (z); {loads}")

    def update(self, changed=None):
        if changed == "block":
            return
        if changed == "selected":
            if not self._selecting:
                self._clear_marks()
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
