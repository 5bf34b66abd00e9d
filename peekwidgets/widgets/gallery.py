"""Input gallery: the top-k inputs of the selected component, with their loadings."""

from __future__ import annotations

import html
import weakref

import ipywidgets as w
import numpy as np
import traitlets as T

from peekwidgets.palette import ACCENT, NEW
from peekwidgets.viewmodel import LOADS_ON_Z

from .base import View
from .component_map import WARN
from .overlay import overlay_map
from .render import InputRenderer
from .theme import caption_html
from .tiles import TileGrid

__all__ = ["InputGallery"]


class InputGallery(View):
    """The ``top_k`` samples with the largest loading in ``A[:, component]``.

    Each tile shows the input (image, or a small line plot for non-image inputs) and its index
    and loading; clicking it selects the sample (``selected = [index]``), hovering it sets
    ``hovered``. Selected samples are outlined and shown in a row of their own, folded-in
    inputs (``fitted.folded_A``) in a further row. With a conv block selected, "map on inputs"
    draws the component's spatial map of that block over each image
    (:func:`~peekwidgets.widgets.overlay.overlay_map`): on by default for grayscale inputs,
    off for colour photographs, whose own colours the map's blue and red would tint.

    Each row is one :class:`~peekwidgets.widgets.tiles.TileGrid` (``top_grid``,
    ``selection_grid``, ``new_grid``): its tiles' pixels travel in one binary buffer and are
    drawn in the browser.

    Parameters
    ----------
    fitted : ViewModel
    top_k : int
        Number of tiles per row.
    renderer : InputRenderer, optional
        Scales the inputs to display pixels; :meth:`InputRenderer.for_blocks` by default.
    errors : ErrorArea, optional
    """

    title = "Input gallery"
    subtitle = "the inputs with the largest loading on the component (its column of A)"

    hovered = T.Int(-1, help="Sample index of the top tile under the mouse (-1: none).")

    def __init__(self, fitted, *, top_k: int = 12, renderer: InputRenderer | None = None,
                 **kwargs):
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        self.top_k = int(top_k)
        self.renderer = renderer if renderer is not None else InputRenderer.for_blocks(
            fitted.blocks)
        self.shown = np.zeros(0, dtype=int)
        self.selection_shown = np.zeros(0, dtype=int)
        self._cached_blocks = None
        super().__init__(fitted, **kwargs)

    def _build(self):
        guard = self.errors.guard
        size = self.renderer.size
        self.top_grid = TileGrid(tile_class="peek-tile", size=size)
        self.top_grid.observe(guard(self._on_click), "clicked")
        self.top_grid.observe(guard(self._on_hover), "hovered")
        self.selection_grid = TileGrid(tile_class="peek-selection-tile", frame=ACCENT,
                                       size=size, clickable=False)
        self.new_grid = TileGrid(tile_class="peek-new-tile", frame=NEW, size=size,
                                 clickable=False)
        self.selection_label = w.HTML()
        self.new_label = w.HTML()
        self.caption = w.HTML()
        colour = self.renderer.sample_shape is not None and self.renderer.sample_shape[0] == 3
        self.overlay_toggle = w.Checkbox(value=not colour, description="map on inputs",
                                         indent=False, layout=w.Layout(width="auto"))
        self.overlay_toggle.observe(guard(lambda _: self.update()), "value")
        self.overlay_caption = w.HTML()
        self.overlay_box = w.HBox([self.overlay_toggle, self.overlay_caption],
                                  layout=w.Layout(align_items="center", flex_flow="row wrap"))
        self.overlay_box.add_class("peek-overlay")

    def _body(self):
        self.add_class("peek-gallery")
        return w.VBox([self.caption, self.overlay_box, self.top_grid, self.selection_label,
                       self.selection_grid, self.new_label, self.new_grid],
                      layout=w.Layout(width="100%"))

    # -- front-end events ------------------------------------------------------------------
    def _on_click(self, change):
        slot = change["new"]
        if slot < 0:
            return
        self.top_grid.clicked = -1  # so that a second click on the same tile counts
        if slot < len(self.shown):
            self.selected = [int(self.shown[slot])]

    def _on_hover(self, change):
        slot = change["new"]
        self.hovered = int(self.shown[slot]) if 0 <= slot < len(self.shown) else -1

    # -- drawing ---------------------------------------------------------------------------
    def spatial_map(self) -> np.ndarray | None:
        """``(H, W)`` the component's spatial map in the selected block when it is drawn over
        the inputs (a tensor block with a spatial shape, image inputs, the toggle on), else
        None."""
        if not (self.overlay_toggle.value and self._can_overlay()):
            return None
        shape = self.fitted.blocks[self.block].spatial_shape
        return self.fitted.factors[self.block][1][:, self.component].reshape(shape)

    def _can_overlay(self) -> bool:
        """Whether the selected block has a 2-D spatial map to draw over image inputs."""
        f = self.fitted
        spatial = f.blocks[self.block].spatial_shape
        return (self.block != "input" and f.kind(self.block) == "tensor"
                and f.input is not None and spatial is not None and len(spatial) == 2
                and self.renderer.is_image and len(self.renderer.sample_shape) == 3)

    def pixels(self, rows: np.ndarray, spatial=None) -> np.ndarray:
        """Input ``rows (k, ...)`` -> what the tiles draw: display pixels ``(k, H, W[, 3])``
        uint8 (with ``spatial`` drawn over them unless None), or the raw values of non-image
        inputs."""
        if not self.renderer.is_image:
            rows = np.asarray(rows, dtype=np.float32)
            return rows.reshape(len(rows), int(np.prod(rows.shape[1:])))
        pixels = np.stack([self.renderer.to_uint8(x) for x in rows]) if len(rows) else (
            np.zeros((0, *self.renderer.pixel_shape), np.uint8))
        return pixels if spatial is None else overlay_map(pixels, spatial)

    def _tiles(self, grid: TileGrid, index, captions, tooltips, outlined=None, spatial=None):
        f = self.fitted
        data = None if f.input is None else self.pixels(f.input_rows(index), spatial)
        grid.show(data, captions, tooltips, outlined)

    def _tooltip(self, i: int, r: int) -> str:
        labels = self.fitted.blocks.labels
        return (f"sample {i}, loading {self.fitted.A[i, r]:.4f}"
                + (f", label {labels[i]}" if labels is not None else ""))

    def _refit(self):
        f = self.fitted
        cached = self._cached_blocks and self._cached_blocks()
        if f.blocks is not cached:  # the renderer's cached encodings are keyed by sample index
            self.renderer.clear_cache()
            self._cached_blocks = weakref.ref(f.blocks)  # keeps no blocks alive
        m = min(len(f.folded_A), self.top_k)
        self.new_label.value = caption_html(
            f"<span style='color:{NEW};font-weight:600'>new inputs</span> (folded in, "
            f"{len(f.folded_A)} total; loading on the component)") if m else ""
        self._new_data = (None if not m or f.folded_inputs is None else
                          self.pixels(np.asarray(f.folded_inputs[:m])))

    def update(self, changed=None):
        f = self.fitted
        r = self.component
        selected = set(self.selected)
        if changed != "selected":
            dead = r in f.health.dead  # every loading 0: an order of samples would be made up
            self.shown = f.top(r, 0 if dead else self.top_k)
            spatial = self.spatial_map()
            self._show_overlay()
            self._tiles(self.top_grid, self.shown,
                        [f"#{i}  {f.A[i, r]:+.3f}" for i in self.shown],
                        [self._tooltip(int(i), r) for i in self.shown],
                        [int(i) in selected for i in self.shown], spatial)
            m = min(len(f.folded_A), self.top_k)
            self.new_grid.show(self._new_data, [f"new {j}  {f.folded_A[j, r]:+.3f}"
                                                for j in range(m)],
                               [f"folded-in input {j}, loading {f.folded_A[j, r]:.4f}"
                                for j in range(m)])
            self.caption.value = caption_html(
                f"component <b style='color:{ACCENT}'>{r}</b>: {len(self.shown)} of "
                f"{f.n_samples} samples, largest loading first"
                + ("" if f.input is not None else " (no input block captured: indices only)")
                + "".join(f"<br><span style='color:{WARN}'>⚠ {html.escape(flag)}</span>"
                          for flag in f.health.flags(r)))
        else:
            self.top_grid.outline([int(i) in selected for i in self.shown])
        self._fill_selection()

    def _fill_selection(self):
        """The selected samples (up to ``top_k``, largest loading on the component first) and
        the components they load on."""
        f, r = self.fitted, self.component
        sel = np.asarray(self.selected, dtype=int)
        self.selection_shown = sel[np.argsort(-f.A[sel, r], kind="stable")][: self.top_k]
        m = len(self.selection_shown)
        self._tiles(self.selection_grid, self.selection_shown,
                    [f"#{i}  {f.A[i, r]:+.3f}" for i in self.selection_shown],
                    [self._tooltip(int(i), r) for i in self.selection_shown],
                    spatial=self.spatial_map())
        if not m:
            self.selection_label.value = ""
            return
        hits = f.loads_on(sel)
        loads = (f"they load on component{'s' if len(hits) > 1 else ''} "
                 f"<b>{', '.join(map(str, hits))}</b>" if len(hits) else
                 "no component stands out")
        self.selection_label.value = caption_html(
            f"<span style='color:{ACCENT};font-weight:600'>selected</span>: {len(sel)} "
            f"sample{'s' if len(sel) > 1 else ''}"
            + (f", the {m} with the largest loading on component {r}" if m < len(sel) else "")
            + f" · {loads} (mean loading &ge; {LOADS_ON_Z:g} sd above all samples')")

    def _show_overlay(self):
        """The toggle and its caption, shown while the block has a spatial map to draw."""
        drawable = self._can_overlay()
        self.overlay_box.layout.display = None if drawable else "none"
        if not drawable:
            return
        h, w_ = self.fitted.blocks[self.block].spatial_shape
        H, W = self.renderer.sample_shape[1:]
        drawn = "images drawn" if self.fitted.blocks.thumbnails is None else "thumbnails"
        size = ("the input's size" if (h, w_) == (H, W) else
                f"upsampled to the {H}x{W} {drawn}: positions stretched, not traced through "
                "receptive fields")
        self.overlay_caption.value = caption_html(
            f"spatial map of component {self.component} in <b>{self.block}</b> ({h}x{w_}, "
            f"{size}) over each input: <span style='color:#1864ab'>blue</span> positive, "
            "<span style='color:#c92a2a'>red</span> negative, clear where it is 0")
