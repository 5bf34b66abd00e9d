"""The colours of peekwidgets, shared by the widgets and the report (one look everywhere).

Hex strings only, so that both bqplot (widgets) and matplotlib (report) read them.
"""

from __future__ import annotations

__all__ = ["ACCENT", "DIVERGING_HEX", "INK", "MUTED", "NEGATIVE", "NEW", "SEQUENTIAL"]

#: Selection (component, block, selected samples).
ACCENT = "#e8590c"
#: Data marks (positive values).
INK = "#1c7ed6"
#: Negative values in bar charts.
NEGATIVE = "#c92a2a"
#: Secondary marks (unselected, context).
MUTED = "#adb5bd"
#: Folded-in (new) inputs.
NEW = "#2f9e44"
#: Sequential scale (white -> deep blue).
SEQUENTIAL = ["#f8f9fa", "#a5d8ff", "#1c7ed6", "#0b3d91"]
#: Diverging palette for signed values (negative blue, zero white, positive red).
DIVERGING_HEX = ["#1864ab", "#74c0fc", "#f8f9fa", "#ff8787", "#c92a2a"]
