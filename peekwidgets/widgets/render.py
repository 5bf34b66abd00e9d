"""Input renderer: display tiles of raw samples for the views.

:class:`InputRenderer` is :class:`peekwidgets.images.InputImages` (the pixels, shared with the
report) plus the widgets that show them: an :class:`ipywidgets.Image` per image sample, a small
bqplot line plot per non-image sample.
"""

from __future__ import annotations

import bqplot as bq
import ipywidgets as w
import numpy as np

from peekwidgets.images import InputImages
from peekwidgets.palette import INK

__all__ = ["InputRenderer"]


class InputRenderer(InputImages):
    """:class:`~peekwidgets.images.InputImages` with display tiles for the gallery.

    Takes the parameters of :class:`~peekwidgets.images.InputImages`.
    """

    @classmethod
    def from_images(cls, images: InputImages, **kwargs) -> InputRenderer:
        """A renderer that draws like ``images`` (same shape, normalization and range);
        ``kwargs`` (``size``, ``cache_size``) override."""
        return cls(images.sample_shape, **{**images.params(), **kwargs})

    # -- tiles -----------------------------------------------------------------------------
    def make_tile(self) -> w.Widget:
        """An empty display widget for one input (an Image, or a small line plot)."""
        if self.is_image:
            return w.Image(format="png", layout=w.Layout(width=f"{self.size}px",
                                                         height="auto"))
        x_sc, y_sc = bq.LinearScale(), bq.LinearScale()
        line = bq.Lines(x=np.zeros(1), y=np.zeros(1), scales={"x": x_sc, "y": y_sc},
                        colors=[INK], stroke_width=1.5)
        return bq.Figure(marks=[line], fig_margin=dict(top=4, bottom=4, left=4, right=4),
                         layout=w.Layout(width=f"{self.size + 24}px", height=f"{self.size}px"),
                         min_aspect_ratio=0.01, max_aspect_ratio=100)

    def fill_tile(self, tile: w.Widget, key, x: np.ndarray | None):
        """Show input ``x`` (cached under ``key``) in a tile from :meth:`make_tile`.

        ``x`` may be None when :meth:`needs` is False for ``key``.
        """
        if self.is_image:
            tile.value = self.sample_png(key, x)
            return
        y = np.asarray(x, dtype=float).reshape(-1)
        line = tile.marks[0]
        with line.hold_sync():
            line.x = np.arange(len(y))
            line.y = y
