"""Input gallery: the top-k inputs of the selected component, with their loadings."""

from __future__ import annotations

import weakref

import ipywidgets as w
import numpy as np

from peekwidgets.palette import ACCENT, NEW
from peekwidgets.viewmodel import LOADS_ON_Z

from .base import View
from .component_map import WARN
from .overlay import overlay_map
from .render import InputRenderer
from .theme import caption_html

__all__ = ["InputGallery"]


class InputGallery(View):
    """The ``top_k`` samples with the largest loading in ``A[:, component]``.

    Each tile shows the input (image, or a small line plot for non-image
    inputs) and a button with its index and loading; clicking it selects
    the sample (``selected = [index]``). Selected samples are outlined and
    shown in a row of their own. Folded-in inputs (``fitted.folded_A``)
    appear in a further row. With a conv block selected, "map on inputs"
    draws the component's spatial map of that block over each image
    (:func:`~peekwidgets.widgets.overlay.overlay_map`).

    Parameters
    ----------
    fitted : ViewModel
    top_k : int
        Number of tiles.
    renderer : InputRenderer, optional
        Draws the inputs; :meth:`InputRenderer.for_blocks` by default.
    errors : ErrorArea, optional
    """

    title = "Input gallery"
    subtitle = "the inputs with the largest loading on the component (its column of A)"

    def __init__(self, fitted, *, top_k: int = 12, renderer: InputRenderer | None = None,
                 **kwargs):
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        self.top_k = int(top_k)
        self.renderer = renderer if renderer is not None else InputRenderer.for_blocks(
            fitted.blocks)
        self.shown = np.zeros(0, dtype=int)
        self._cached_blocks = None
        super().__init__(fitted, **kwargs)

    def _make_tile(self, on_click, css_class="peek-tile"):
        display = self.renderer.make_tile()
        button = w.Button(layout=w.Layout(width=display.layout.width, height="22px",
                                          padding="0"))
        button.style.font_size = "11px"
        button.on_click(self.errors.guard(on_click))
        box = w.VBox([display, button], layout=w.Layout(border="3px solid transparent",
                                                        margin="1px", align_items="center"))
        box.add_class(css_class)
        return box, display, button

    def _build(self):
        self.tiles = []
        for slot in range(self.top_k):
            box, display, button = self._make_tile(lambda _, slot=slot: self._on_tile(slot))
            self.tiles.append((box, display, button))
        self.grid = w.HBox([t[0] for t in self.tiles],
                           layout=w.Layout(flex_flow="row wrap", width="100%"))
        self.grid.add_class("peek-gallery-grid")
        self.new_label = w.HTML()
        self.new_grid = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self.new_tiles = []
        self.selection_label = w.HTML()
        self.selection_grid = w.HBox(layout=w.Layout(flex_flow="row wrap", width="100%"))
        self.selection_grid.add_class("peek-selection-grid")
        self.selection_tiles = []
        self.selection_shown = np.zeros(0, dtype=int)
        self.caption = w.HTML()
        self.overlay_toggle = w.Checkbox(value=True, description="map on inputs", indent=False,
                                         layout=w.Layout(width="auto"))
        self.overlay_toggle.observe(self.errors.guard(lambda _: self.update()), "value")
        self.overlay_caption = w.HTML()
        self.overlay_box = w.HBox([self.overlay_toggle, self.overlay_caption],
                                  layout=w.Layout(align_items="center", flex_flow="row wrap"))
        self.overlay_box.add_class("peek-overlay")

    def _body(self):
        self.add_class("peek-gallery")
        return w.VBox([self.caption, self.overlay_box, self.grid, self.selection_label,
                       self.selection_grid, self.new_label, self.new_grid])

    def spatial_map(self) -> np.ndarray | None:
        """``(H, W)`` the component's spatial map in the selected block when it is drawn over
        the inputs (a tensor block with a spatial shape, image inputs, the toggle on), else
        None."""
        f = self.fitted
        block = f.blocks[self.block]
        if (self.block == "input" or f.kind(self.block) != "tensor" or f.input is None
                or block.spatial_shape is None or not self.renderer.is_image):
            return None
        return f.factors[self.block][1][:, self.component].reshape(block.spatial_shape)

    def _fill(self, display, i: int, row, spatial):
        """Show sample ``i`` (its input ``row``, None when cached) in a tile, with the
        ``spatial`` map over it unless that is None."""
        if spatial is None or not self.overlay_toggle.value:
            self.renderer.fill_tile(display, i, row)
        else:
            pixels = overlay_map(self.renderer.to_uint8(row)[None], spatial)[0]
            display.value = self.renderer.png(pixels)

    def _rows(self, index, spatial) -> dict:
        """``{i: input row}`` of the samples whose tiles need their values."""
        f = self.fitted
        need = [int(i) for i in index if spatial is not None or self.renderer.needs(int(i))]
        return dict(zip(need, f.input_rows(need))) if need and f.input is not None else {}

    def _on_tile(self, slot: int):
        if slot < len(self.shown):
            self.selected = [int(self.shown[slot])]

    def _refit(self):
        f = self.fitted
        cached = self._cached_blocks and self._cached_blocks()
        if f.blocks is not cached:  # cached encodings are keyed by sample index
            self.renderer.clear_cache()
            self._cached_blocks = weakref.ref(f.blocks)  # keeps no blocks alive
        m = min(len(f.folded_A), self.top_k)
        while len(self.new_tiles) < m:
            box, display, button = self._make_tile(lambda _: None, "peek-new-tile")
            box.layout.border = f"3px solid {NEW}"
            self.new_tiles.append((box, display, button))
        self.new_grid.children = [t[0] for t in self.new_tiles[:m]]
        self.new_label.value = caption_html(
            f"<span style='color:{NEW};font-weight:600'>new inputs</span> (folded in, "
            f"{len(f.folded_A)} total; loading on the component)") if m else ""
        if m and f.folded_inputs is not None:
            for i, (_, display, _) in enumerate(self.new_tiles[:m]):
                self.renderer.fill_tile(display, ("new", i), f.folded_inputs[i])

    def update(self, changed=None):
        f = self.fitted
        r = self.component
        selected = set(self.selected)
        if changed != "selected":
            dead = r in f.health.dead  # every loading 0: an order of samples would be made up
            self.shown = f.top(r, 0 if dead else self.top_k)
            spatial = self.spatial_map()
            self._show_overlay(spatial)
            rows = self._rows(self.shown, spatial)
            labels = f.blocks.labels
            for slot, (box, display, button) in enumerate(self.tiles):
                visible = slot < len(self.shown)
                box.layout.display = None if visible else "none"
                if not visible:
                    continue
                i = int(self.shown[slot])
                if f.input is not None:
                    self._fill(display, i, rows.get(i), spatial)
                with button.hold_sync():
                    button.description = f"#{i}  {f.A[i, r]:+.3f}"
                    button.tooltip = (f"sample {i}, loading {f.A[i, r]:.4f}"
                                      + (f", label {labels[i]}" if labels is not None else ""))
            for j, (_, _, button) in enumerate(self.new_tiles[: len(f.folded_A)]):
                button.description = f"new {j}  {f.folded_A[j, r]:+.3f}"
            self.caption.value = caption_html(
                f"component <b style='color:{ACCENT}'>{r}</b>: {len(self.shown)} of "
                f"{f.n_samples} samples, largest loading first"
                + ("" if f.input is not None else " (no input block captured: indices only)")
                + "".join(f"<br><span style='color:{WARN}'>⚠ {flag}</span>"
                          for flag in f.health.flags(r)))
        self._fill_selection()
        for slot, (box, _, _) in enumerate(self.tiles):
            on = slot < len(self.shown) and int(self.shown[slot]) in selected
            border = f"3px solid {ACCENT}" if on else "3px solid transparent"
            if box.layout.border_top != border:
                box.layout.border = border

    def _fill_selection(self):
        """The selected samples (up to ``top_k``, largest loading on the component first) and
        the components they load on."""
        f, r = self.fitted, self.component
        sel = np.asarray(self.selected, dtype=int)
        self.selection_shown = sel[np.argsort(-f.A[sel, r], kind="stable")][: self.top_k]
        m = len(self.selection_shown)
        while len(self.selection_tiles) < m:
            box, display, button = self._make_tile(lambda _: None, "peek-selection-tile")
            box.layout.border = f"3px solid {ACCENT}"
            self.selection_tiles.append((box, display, button))
        self.selection_grid.children = [t[0] for t in self.selection_tiles[:m]]
        if not m:
            self.selection_label.value = ""
            return
        spatial = self.spatial_map()
        rows = self._rows(self.selection_shown, spatial)
        for i, (_, display, button) in zip(self.selection_shown, self.selection_tiles):
            if f.input is not None:
                self._fill(display, int(i), rows.get(int(i)), spatial)
            button.description = f"#{i}  {f.A[i, r]:+.3f}"
        hits = f.loads_on(sel)
        loads = (f"they load on component{'s' if len(hits) > 1 else ''} "
                 f"<b>{', '.join(map(str, hits))}</b>" if len(hits) else
                 "no component stands out")
        self.selection_label.value = caption_html(
            f"<span style='color:{ACCENT};font-weight:600'>selected</span>: {len(sel)} "
            f"sample{'s' if len(sel) > 1 else ''}"
            + (f", the {m} with the largest loading on component {r}" if m < len(sel) else "")
            + f" · {loads} (mean loading &ge; {LOADS_ON_Z:g} sd above all samples')")

    def _show_overlay(self, spatial):
        """The toggle and its caption, shown while a spatial map can be drawn."""
        self.overlay_box.layout.display = None if spatial is not None else "none"
        if spatial is None:
            return
        h, w_ = spatial.shape
        H, W = self.renderer.sample_shape[1:]
        self.overlay_caption.value = caption_html(
            f"spatial map of component {self.component} in <b>{self.block}</b> ({h}x{w_}, "
            f"upsampled to {H}x{W}: positions stretched, not traced through receptive fields)"
            " over each input: <span style='color:#c92a2a'>red</span> positive, "
            "<span style='color:#1864ab'>blue</span> negative, clear where it is 0")
