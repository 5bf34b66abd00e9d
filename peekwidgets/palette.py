"""The colours of peekwidgets, shared by the widgets and the report (one look everywhere).

Hex strings, so that both bqplot (widgets) and matplotlib (report) read them, and the share of
viridis that checkpoints are drawn in.
"""

from __future__ import annotations

__all__ = ["ACCENT", "CHECKPOINT_VIRIDIS", "CRITERION_COLORS", "DIVERGING_HEX", "INK", "MUTED",
           "NEGATIVE", "NEW", "SEQUENTIAL"]

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
#: Diverging palette for signed values (negative red, zero white, positive blue: the colours
#: of the bar charts, ``NEGATIVE`` and ``INK``, so a sign reads the same in every view).
DIVERGING_HEX = ["#c92a2a", "#ff8787", "#f8f9fa", "#74c0fc", "#1864ab"]
#: Checkpoints along a run take viridis from 0 (dark blue, first) up to here (green, last): its
#: yellow end is too pale on white.
CHECKPOINT_VIRIDIS = 0.8
#: Lines of the label-free criteria of a checkpoint comparison, and of accuracy.
CRITERION_COLORS = {"score": "#1f77b4", "logits_energy_rank": "#2ca02c", "rankme": "#9467bd",
                    "first_share": "#8c564b", "accuracy": "#ff7f0e"}
