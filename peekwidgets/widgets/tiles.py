"""A grid of input tiles as one widget: all pixels in one binary buffer, drawn in the browser.

:class:`TileGrid` is an `anywidget <https://anywidget.dev>`_ whose ES module and CSS ship as
package data (``widgets/static/tiles.js``, ``tiles.css``; no build step). One update sends one
buffer and a few lists instead of an image widget, a button and a layout per tile.
"""

from __future__ import annotations

from pathlib import Path

import anywidget
import numpy as np
import traitlets as T

from peekwidgets.palette import ACCENT, INK

__all__ = ["TileGrid"]

_STATIC = Path(__file__).parent / "static"


class TileGrid(anywidget.AnyWidget):
    """Tiles of inputs, each with a caption; a click or hover comes back as a tile slot.

    Fill it with :meth:`show`. The front end sets ``clicked`` to the slot of a clicked tile
    (the observer resets it to -1 after handling, so a second click on the same tile counts)
    and ``hovered`` to the slot under the mouse (-1 when none).

    Parameters
    ----------
    tile_class : str
        CSS class of every tile (``peek-tile``, ...), for styling and tests.
    frame : str
        Border colour of tiles that are not outlined.
    size : int
        Display width of an image tile in pixels.
    clickable : bool
        Whether a click on a tile means something: tiles without an action are neither in
        the keyboard's tab order nor drawn with a pointer.
    """

    _esm = _STATIC / "tiles.js"
    _css = _STATIC / "tiles.css"

    pixels = T.Bytes(b"", help="All tiles' data, concatenated (uint8 images or float32 lines)."
                     ).tag(sync=True)
    kind = T.Enum(["gray", "rgb", "line", "none"], "none").tag(sync=True)
    tile_shape = T.List(T.Int(), help="(H, W) of an image tile, (L,) of a line tile."
                        ).tag(sync=True)
    captions = T.List(T.Unicode()).tag(sync=True)
    tooltips = T.List(T.Unicode()).tag(sync=True)
    outlined = T.List(T.Bool()).tag(sync=True)
    size = T.Int(72).tag(sync=True)
    frame = T.Unicode("transparent").tag(sync=True)
    accent = T.Unicode(ACCENT).tag(sync=True)
    ink = T.Unicode(INK).tag(sync=True)
    tile_class = T.Unicode("peek-tile").tag(sync=True)
    clickable = T.Bool(True).tag(sync=True)
    clicked = T.Int(-1, help="Slot of the tile clicked in the front end (-1: none).").tag(
        sync=True)
    hovered = T.Int(-1, help="Slot of the tile under the mouse (-1: none).").tag(sync=True)

    def show(self, data: np.ndarray | None, captions, tooltips=None, outlined=None):
        """Show ``len(captions)`` tiles.

        Parameters
        ----------
        data : array or None
            ``(k, H, W)`` or ``(k, H, W, 3)`` uint8 display pixels, ``(k, L)`` values drawn as
            line plots, or None for captions only.
        captions, tooltips : list of str, one per tile
        outlined : list of bool, optional
            Tiles drawn with the accent border (for example the selected samples).
        """
        k = len(captions)
        if data is None:
            kind, shape, raw = "none", [], b""
        else:
            data = np.asarray(data)
            if len(data) != k:
                raise ValueError(f"{len(data)} tiles of data for {k} captions")
            if data.dtype == np.uint8 and data.ndim in (3, 4):
                kind, shape = ("gray" if data.ndim == 3 else "rgb"), list(data.shape[1:3])
                raw = np.ascontiguousarray(data).tobytes()
            else:
                values = data.reshape(k, int(np.prod(data.shape[1:]))).astype(np.float32)
                kind, shape, raw = "line", [values.shape[1]], values.tobytes()
        with self.hold_sync():
            self.kind, self.tile_shape, self.pixels = kind, shape, raw
            self.captions = list(captions)
            self.tooltips = list(tooltips) if tooltips is not None else [""] * k
            self.outlined = [bool(o) for o in outlined] if outlined is not None else [False] * k

    def outline(self, outlined):
        """Change only which tiles carry the accent border (no pixels are sent)."""
        outlined = [bool(o) for o in outlined]
        if outlined != self.outlined:
            self.outlined = outlined

    def image(self, slot: int) -> np.ndarray:
        """The pixels (or values) of one tile as the front end receives them."""
        shape = tuple(self.tile_shape)
        if self.kind == "none":
            raise ValueError("these tiles carry no data (no input block)")
        dtype, channels = ((np.float32, ()) if self.kind == "line" else
                           (np.uint8, (3,) if self.kind == "rgb" else ()))
        per = int(np.prod(shape + channels))
        return np.frombuffer(self.pixels, dtype)[slot * per:(slot + 1) * per].reshape(
            shape + channels)
