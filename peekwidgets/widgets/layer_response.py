"""Layer response: the selected component in the selected block."""

from __future__ import annotations

import bqplot as bq
import ipywidgets as w
import numpy as np

from peekwidgets.palette import ACCENT, DIVERGING_HEX, INK, MUTED

from .base import View
from .component_map import color_bar_html, set_grid
from .render import InputRenderer
from .theme import caption_html

__all__ = ["LayerResponse"]

#: Display size of the input-space pattern, pixels.
PATTERN_SIZE = 200


def _bar_figure(x_label: str, width: str, height: str):
    xs, ys = bq.LinearScale(), bq.LinearScale()
    bars = bq.Bars(x=np.zeros(1), y=np.zeros(1), scales={"x": xs, "y": ys}, padding=0.15,
                   colors=[INK],
                   tooltip=bq.Tooltip(fields=["x", "y"], labels=["unit", "loading"],
                                      formats=["", ".3f"]))
    labels = bq.Label(x=np.zeros(0), y=np.zeros(0), text=[], scales={"x": xs, "y": ys},
                      colors=[ACCENT], default_size=11, align="middle", y_offset=-6,
                      font_weight="bold")
    axes = [bq.Axis(scale=xs, label=x_label, grid_lines="none", num_ticks=6, tick_format="d"),
            bq.Axis(scale=ys, side="left", grid_lines="dashed", num_ticks=4,
                    tick_format=".2f")]
    fig = bq.Figure(marks=[bars, labels], axes=axes, display_toolbar=False,
                    fig_margin=dict(top=16, bottom=40, left=50, right=10),
                    layout=w.Layout(width=width, height=height))
    return fig, bars, labels


class LayerResponse(View):
    """The selected component's factors in the selected block.

    A matrix block shows its loadings over units as bars with the
    ``n_labels`` strongest units labelled; a tensor block shows the channel
    loadings and the ``H x W`` spatial map; the input block shows the
    component's pattern in input space as an image.

    Parameters
    ----------
    fitted : ViewModel
    renderer : InputRenderer, optional
        Draws input-space patterns; :meth:`InputRenderer.for_blocks` by default.
    n_labels : int
        How many of the strongest units are labelled.
    errors : ErrorArea, optional
    """

    title = "Layer response"
    subtitle = ("the component's factors in the selected block: unit or channel loadings, "
                "spatial map, or its pattern in input space")

    def __init__(self, fitted, *, renderer: InputRenderer | None = None, n_labels: int = 5,
                 **kwargs):
        self.renderer = renderer if renderer is not None else InputRenderer.for_blocks(
            fitted.blocks)
        self.n_labels = int(n_labels)
        self.mode = ""
        super().__init__(fitted, **kwargs)

    def _build(self):
        self.unit_figure, self.unit_bars, self.unit_labels = _bar_figure(
            "unit", "560px", "260px")
        self.channel_figure, self.channel_bars, self.channel_labels = _bar_figure(
            "channel", "300px", "260px")
        rs, cs = bq.OrdinalScale(reverse=True), bq.OrdinalScale()
        self._map_colors = bq.ColorScale(colors=DIVERGING_HEX, min=-1.0, max=1.0)
        self.spatial_map = bq.GridHeatMap(
            row=np.arange(2), column=np.arange(2), color=np.zeros((2, 2)),
            scales={"row": rs, "column": cs, "color": self._map_colors}, stroke="white",
            tooltip=bq.Tooltip(fields=["row", "column", "color"], formats=["", "", ".3f"]))
        self.map_figure = bq.Figure(
            marks=[self.spatial_map],
            axes=[bq.Axis(scale=cs, grid_lines="none", num_ticks=4, label="W"),
                  bq.Axis(scale=rs, side="left", grid_lines="none", label="H",
                          num_ticks=4)],
            fig_margin=dict(top=34, bottom=40, left=40, right=10), padding_y=0.0,
            display_toolbar=False,
            layout=w.Layout(width="260px", height="260px"), title="spatial map")
        self.pattern_image = w.Image(format="png", layout=w.Layout(
            width=f"{PATTERN_SIZE}px", height="auto"))
        self.pattern_image.add_class("peek-pattern")
        self.matrix_box = w.VBox([self.unit_figure])
        self.map_bar = w.HTML()
        self.tensor_box = w.HBox([self.channel_figure, w.VBox([self.map_figure, self.map_bar])])
        self.pattern_caption = w.HTML()
        self.image_box = w.HBox([self.pattern_image, self.pattern_caption],
                                layout=w.Layout(align_items="center"))
        self.caption = w.HTML()
        self.caption.add_class("peek-layer-caption")
        self.matrix_box.add_class("peek-layer-units")
        self.tensor_box.add_class("peek-layer-tensor")

    def _body(self):
        self.add_class("peek-layer-response")
        self._shown = w.VBox([self.caption])
        return self._shown

    def _show(self, mode: str):
        """Show the box of ``mode`` alone: the others leave the page (a hidden bqplot figure is
        laid out at zero size, with negative widths)."""
        if mode != self.mode:
            box = {"matrix": self.matrix_box, "tensor": self.tensor_box,
                   "image": self.image_box}[mode]
            self._shown.children = [self.caption, box]
            self.mode = mode

    def _fill_bars(self, bars, labels, values: np.ndarray, prefix: str):
        k = min(self.n_labels, len(values))
        strongest = np.argsort(-np.abs(values), kind="stable")[:k]
        colors = np.full(len(values), MUTED if len(values) > k else INK, dtype=object)
        colors[strongest] = INK
        with bars.hold_sync():
            bars.x = np.arange(len(values))
            bars.y = values
            bars.colors = colors.tolist()
        with labels.hold_sync():
            labels.x = strongest.astype(float)
            labels.y = values[strongest]
            labels.text = [f"{prefix}{i}" for i in strongest]

    def _pattern_legend(self, factors, r: int) -> str:
        """What the input-space pattern's colours mean: diverging for one channel; for RGB,
        each channel's sign around mid-grey, with the channel loadings when the input block
        has them."""
        if self.renderer.sample_shape[0] == 1:
            return ("input-space pattern<br><span style='color:#c92a2a'>red</span> positive, "
                    "<span style='color:#1864ab'>blue</span> negative, white 0")
        legend = ("input-space pattern in colour: mid-grey is 0; a channel where the pattern "
                  "is positive adds its colour (R, G, B), a negative one takes it away")
        if len(factors) == 2 and len(factors[0]) == 3:
            u = factors[0][:, r]
            legend += "<br>channel loadings " + " · ".join(
                f"{c} {v:+.2f}" for c, v in zip("RGB", u))
        return legend

    def update(self, changed=None):
        if changed == "selected":
            return
        f = self.fitted
        name, r = self.block, self.component
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
            self._fill_bars(self.unit_bars, self.unit_labels, factors[0][:, r], "")
            self._show("matrix")
        else:
            u, v = factors[0][:, r], factors[1][:, r]
            self._fill_bars(self.channel_bars, self.channel_labels, u, "c")
            hw = block.spatial_shape or (1, len(v))
            m = float(np.abs(v).max()) or 1.0
            set_grid(self.spatial_map, np.arange(hw[0]), np.arange(hw[1]), v.reshape(hw))
            with self._map_colors.hold_sync():
                self._map_colors.min, self._map_colors.max = -m, m
            self.map_bar.value = color_bar_html(-m, m, "loading", "{:+.2f}")
            desc += f" (map {hw[0]}x{hw[1]})"
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
                }.get(self.mode, {})
