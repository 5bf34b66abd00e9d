"""Layer response: the selected component in the selected block."""

from __future__ import annotations

import bqplot as bq
import ipywidgets as w
import numpy as np

from peekwidgets.images import map_2d
from peekwidgets.palette import ACCENT, DIVERGING_HEX, INK, NEGATIVE

from .base import View, figure_layout
from .component_map import TOOLTIP_STYLE, color_bar_html, set_grid, view_styles
from .render import InputRenderer
from .theme import caption_html
from .ticks import set_ticks

__all__ = ["LayerResponse", "LoadingBars"]

#: Display size of the input-space pattern, pixels.
PATTERN_SIZE = 200
#: Spatial maps wider or taller than this are drawn without cell borders (a mesh, else).
MESH_SIDE = 24
#: A block with more units than this is drawn as its ``TOP_BARS`` strongest units, sorted.
MAX_BARS = 64
TOP_BARS = 32


def _ordinal_ticks(n_values: int, most: int = 12) -> int | None:
    """``num_ticks`` of an ordinal axis of ``n_values``: all of them when few, else about 9
    evenly spaced (bqplot's ordinal axes take ``num_ticks``, not ``tick_values``)."""
    return None if n_values <= most else 9


class LoadingBars:
    """Signed loadings as bars (blue positive, red negative), the strongest labelled.

    Narrow blocks show every unit in order, the ``n_labels`` strongest labelled; wider ones
    (more than :data:`MAX_BARS` units) their :data:`TOP_BARS` strongest by magnitude, sorted,
    the first labelled (the labels of bars side by side would overlap), and ``note`` sums up
    the rest. The
    y axis gets round ticks inside the data and room for the labels above and below the bars.

    Parameters
    ----------
    x_label : str
        What the bars are (``"unit"``, ``"channel"``).
    """

    def __init__(self, x_label: str):
        self.x_label = x_label
        xs, ys = bq.OrdinalScale(), bq.LinearScale()
        self.x_scale, self.scale = xs, ys
        self.bars = bq.Bars(x=np.array([""]), y=np.zeros(1), scales={"x": xs, "y": ys},
                            padding=0.15, colors=[INK],
                            tooltip=bq.Tooltip(fields=["x", "y"], labels=[x_label, "loading"],
                                               formats=["", ".3f"]),
                            tooltip_style=TOOLTIP_STYLE)
        self.labels = bq.Label(x=np.array([""]), y=np.zeros(1), text=[""],
                               scales={"x": xs, "y": ys}, colors=[ACCENT], default_size=11,
                               align="middle", font_weight="bold")
        self.x_axis = bq.Axis(scale=xs, label=x_label, grid_lines="none")
        self.y_axis = bq.Axis(scale=ys, side="left", grid_lines="dashed", label="loading")
        self.figure = bq.Figure(marks=[self.bars, self.labels], axes=[self.x_axis, self.y_axis],
                                display_toolbar=False,
                                fig_margin=dict(top=10, bottom=40, left=60, right=10),
                                layout=figure_layout(min_width="240px", height="260px"))
        self.note = w.HTML()

    def draw(self, values: np.ndarray, names: list, n_labels: int):
        """Show ``values (n_units,)`` named ``names`` with the ``n_labels`` strongest labelled."""
        values = np.asarray(values, dtype=float)
        n = len(values)
        by_size = np.argsort(-np.abs(values), kind="stable")
        order = by_size[:TOP_BARS] if n > MAX_BARS else np.arange(n)
        shown = values[order]
        x = np.array([names[i] for i in order])
        # sorted, the strongest bars stand side by side: one label, the axis names the rest
        strongest = by_size[: min(n_labels if n <= MAX_BARS else 1, n)]
        lo, hi = min(float(shown.min()), 0.0), max(float(shown.max()), 0.0)
        span = (hi - lo) or 1.0
        pad = 0.05 * span  # the labels sit this far beyond their bar's end
        if list(x) != list(self.x_scale.domain):
            # the front end draws after each message: labels of units the new domain lacks
            # would be placed at NaN, so they are emptied before the domain changes
            with self.labels.hold_sync():
                self.labels.x, self.labels.y, self.labels.text = x[:0], np.zeros(0), []
            self.x_scale.domain = list(x)  # the bars' order, not the labels' (strongest first)
        with self.bars.hold_sync():
            self.bars.x, self.bars.y = x, shown
            self.bars.colors = np.where(shown >= 0, INK, NEGATIVE).tolist()
        with self.labels.hold_sync():
            self.labels.x = np.array([names[i] for i in strongest])
            self.labels.y = values[strongest] + np.where(values[strongest] >= 0, pad,
                                                         -3.2 * pad)
            self.labels.text = [str(names[i]) for i in strongest]
        set_ticks(self.y_axis, self.scale, lo, hi, limits=(lo - (4.5 * pad if lo < 0 else 0.0),
                                                           hi + (3.0 * pad if hi > 0 else 0.0)))
        self.x_axis.num_ticks = _ordinal_ticks(len(x))
        if n > MAX_BARS:
            rest = by_size[TOP_BARS:]
            energy = float(np.sum(values ** 2)) or 1.0
            self.x_axis.label = f"{self.x_label} (the {TOP_BARS} strongest, sorted)"
            self.note.value = caption_html(
                f"the {TOP_BARS} strongest of {n} {self.x_label}s by |loading|; the other "
                f"{len(rest)} hold {np.sum(values[rest] ** 2) / energy:.0%} of the squared "
                f"loadings (largest |loading| {np.abs(values[rest]).max():.3f})")
        else:
            self.x_axis.label = self.x_label
            self.note.value = ""


def _fold(box: w.Box, folded: bool) -> None:
    """Fold ``box`` to no height, hidden but laid out at its width (a figure inside keeps its
    size: ``display: none`` would lay it out at zero width), or unfold it."""
    with box.layout.hold_sync():
        box.layout.height = "0px" if folded else None
        box.layout.overflow = "hidden" if folded else None
        box.layout.visibility = "hidden" if folded else None


class LayerResponse(View):
    """The selected component's factors in the selected block.

    A matrix block shows its loadings over units as bars with the
    ``n_labels`` strongest units labelled; a tensor block of a map shows the channel
    loadings and the ``H x W`` spatial map; a sequence block ``(N, T, D)`` (a
    transformer's tokens, a recurrent layer's steps: a tensor block without a spatial
    shape) shows its loadings over positions and over features as bars; the input block
    shows the component's pattern in input space as an image.

    Parameters
    ----------
    fitted : ViewModel
    renderer : InputRenderer, optional
        Draws input-space patterns; :meth:`InputRenderer.for_blocks` by default.
    n_labels : int
        How many of the strongest units are labelled.
    class_names : sequence of str, optional
        Names of the units of the prediction block (the logits,
        :attr:`~peekwidgets.viewmodel.ViewModel.prediction_block`), one per class.
    errors : ErrorArea, optional
    """

    title = "Layer response"
    subtitle = ("the component's factors in the selected block: unit or channel loadings, "
                "spatial map, or its pattern in input space")

    def __init__(self, fitted, *, renderer: InputRenderer | None = None, n_labels: int = 5,
                 class_names=None, **kwargs):
        self.renderer = renderer if renderer is not None else InputRenderer.for_blocks(
            fitted.blocks)
        self.n_labels = int(n_labels)
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.mode = ""
        super().__init__(fitted, **kwargs)

    def _build(self):
        self.units, self.channels = LoadingBars("unit"), LoadingBars("channel")
        self.unit_figure, self.unit_bars, self.unit_labels = (
            self.units.figure, self.units.bars, self.units.labels)
        self.channel_figure, self.channel_bars, self.channel_labels = (
            self.channels.figure, self.channels.bars, self.channels.labels)
        rs, cs = bq.OrdinalScale(reverse=True), bq.OrdinalScale()
        self._map_colors = bq.ColorScale(colors=DIVERGING_HEX, min=-1.0, max=1.0)
        self.spatial_map = bq.GridHeatMap(
            row=np.arange(2), column=np.arange(2), color=np.zeros((2, 2)),
            scales={"row": rs, "column": cs, "color": self._map_colors}, stroke="white",
            tooltip=bq.Tooltip(fields=["row", "column", "color"], formats=["", "", ".3f"]),
            tooltip_style=TOOLTIP_STYLE)
        self.map_axes = (bq.Axis(scale=cs, grid_lines="none", label="W (position)"),
                         bq.Axis(scale=rs, side="left", grid_lines="none", label="H"))
        self.map_figure = bq.Figure(
            marks=[self.spatial_map], axes=list(self.map_axes),
            fig_margin=dict(top=10, bottom=40, left=40, right=10), padding_y=0.0,
            display_toolbar=False, min_aspect_ratio=1, max_aspect_ratio=1,
            layout=figure_layout(min_width="180px", max_width="300px", height="240px"))
        self.pattern_image = w.Image(format="png", layout=w.Layout(
            width=f"{PATTERN_SIZE}px", height="auto"))
        self.pattern_image.add_class("peek-pattern")
        self.matrix_box = w.VBox([self.unit_figure, self.units.note],
                                 layout=w.Layout(width="100%"))
        self.map_bar = w.HTML()
        channels = w.VBox([w.HTML(caption_html("channel loadings (U)")), self.channel_figure,
                           self.channels.note], layout=w.Layout(flex="1 1 260px", min_width="0"))
        spatial = w.VBox([w.HTML(caption_html("spatial map (V)")), self.map_figure,
                          self.map_bar], layout=w.Layout(flex="1 1 200px", min_width="0"))
        self.tensor_box = w.HBox([channels, spatial], layout=w.Layout(flex_flow="row wrap",
                                                                      width="100%"))
        self.positions, self.features = LoadingBars("position"), LoadingBars("feature")
        self.sequence_box = w.HBox([
            w.VBox([w.HTML(caption_html(caption)), bars.figure, bars.note],
                   layout=w.Layout(flex="1 1 260px", min_width="0"))
            for bars, caption in ((self.positions, "position loadings (U): tokens or steps"),
                                  (self.features, "feature loadings (V)"))],
            layout=w.Layout(flex_flow="row wrap", width="100%"))
        self.pattern_caption = w.HTML()
        self.image_box = w.HBox([self.pattern_image, self.pattern_caption],
                                layout=w.Layout(align_items="center"))
        self.block_pick = w.Dropdown(description="block", layout=w.Layout(
            width="auto", min_width="220px", max_width="min(100%, 420px)"),
                                     tooltip="the block on show: every view follows it")
        self.block_pick.style.description_width = "40px"
        self.block_pick.observe(self.errors.guard(
            lambda change: setattr(self, "block", change["new"])), "value")
        self.caption = w.HTML()
        self.caption.add_class("peek-layer-caption")
        self.matrix_box.add_class("peek-layer-units")
        self.tensor_box.add_class("peek-layer-tensor")
        self.sequence_box.add_class("peek-layer-sequence")

    def _body(self):
        self.add_class("peek-layer-response")
        self._boxes = {"matrix": self.matrix_box, "tensor": self.tensor_box,
                       "sequence": self.sequence_box, "image": self.image_box}
        for box in self._boxes.values():
            _fold(box, True)
        self._shown = w.VBox([view_styles(), self.block_pick, self.caption,
                              *self._boxes.values()])
        return self._shown

    def _show(self, mode: str):
        """Show the box of ``mode`` alone. The others stay on the page, folded to no height:
        taken off the page, a bqplot figure's view would be made anew when it comes back,
        while the old one, never freed, goes on redrawing at no size (NaN positions)."""
        if mode != self.mode:
            for name, box in self._boxes.items():
                _fold(box, name != mode)
            self.mode = mode

    def unit_names(self, name: str, n: int) -> list[str]:
        """Names of the ``n`` units of block ``name``: the class names on the prediction block
        (when given, one per unit), else the unit numbers."""
        names = self.class_names
        if names is not None and name == self.fitted.prediction_block and len(names) == n:
            return names
        return [str(i) for i in range(n)]

    def _pattern_legend(self, factors, r: int) -> str:
        """What the input-space pattern's colours mean: diverging for one channel; for RGB,
        each channel's sign around mid-grey, with the channel loadings when the input block
        has them."""
        if self.renderer.sample_shape[0] == 1:
            return ("input-space pattern<br><span style='color:#1864ab'>blue</span> positive, "
                    "<span style='color:#c92a2a'>red</span> negative, white 0")
        legend = ("input-space pattern in colour: mid-grey is 0; a channel where the pattern "
                  "is positive adds its colour (R, G, B), a negative one takes it away")
        if len(factors) == 2 and len(factors[0]) == 3:
            u = factors[0][:, r]
            legend += "<br>channel loadings " + " · ".join(
                f"{c} {v:+.2f}" for c, v in zip("RGB", u))
        return legend

    def _refit(self):
        self.block_pick.options = self.fitted.names

    def update(self, changed=None):
        if changed == "selected":
            return
        f = self.fitted
        name, r = self.block, self.component
        self.block_pick.value = name
        factors = f.factors[name]
        block = f.blocks[name]
        desc = "x".join(map(str, block.mode_shape))
        if name == "input" and self.renderer.is_image:
            pattern = (factors[0][:, r] if len(factors) == 1
                       else np.outer(factors[0][:, r], factors[1][:, r]))
            self.pattern_image.value = self.renderer.png(self.renderer.pattern_uint8(pattern),
                                                         size=PATTERN_SIZE)
            self.pattern_caption.value = caption_html(self._pattern_legend(factors, r))
            self._show("image")
        elif len(factors) == 1:
            values = factors[0][:, r]
            self.units.draw(values, self.unit_names(name, len(values)), self.n_labels)
            self._show("matrix")
        elif block.spatial_shape is None:  # a sequence (N, T, D): positions and features
            u, v = factors[0][:, r], factors[1][:, r]
            self.positions.draw(u, [f"t{i}" for i in range(len(u))], self.n_labels)
            self.features.draw(v, [str(i) for i in range(len(v))], self.n_labels)
            desc += " (positions x features)"
            self._show("sequence")
        else:
            u, v = factors[0][:, r], factors[1][:, r]
            self.channels.draw(u, [f"c{i}" for i in range(len(u))], self.n_labels)
            grid = map_2d(v, block.spatial_shape)
            hw = grid.shape
            m = float(np.abs(v).max()) or 1.0
            set_grid(self.spatial_map, np.arange(hw[0]), np.arange(hw[1]), grid)
            self.spatial_map.stroke = "white" if max(hw) <= MESH_SIDE else None
            for axis, size in zip(self.map_axes, (hw[1], hw[0])):
                axis.num_ticks = _ordinal_ticks(size)
            with self._map_colors.hold_sync():
                self._map_colors.min, self._map_colors.max = -m, m
            self.map_bar.value = color_bar_html(-m, m, "loading", "{:+.2f}")
            spatial = block.spatial_shape or hw
            desc += f" (map {'x'.join(map(str, spatial))}" + (
                f", {hw[1] // spatial[2]} frames side by side)" if len(spatial) == 3 else ")")
            self._show("tensor")
        self.caption.value = caption_html(
            f"<b>{name}</b> · {f.kind(name)} {desc} · "
            f"<b style='color:{ACCENT}'>component {r}</b> · "
            f"{100 * f.shares[f.block_index(name), r]:.0f}% of the block's variance")

    @property
    def figures(self):
        """The figures on show (the input pattern is an image, not a figure)."""
        return {"matrix": {"layer_units": self.unit_figure},
                "tensor": {"layer_channels": self.channel_figure, "layer_map": self.map_figure},
                "sequence": {"layer_positions": self.positions.figure,
                             "layer_features": self.features.figure},
                }.get(self.mode, {})
