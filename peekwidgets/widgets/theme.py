"""Colours and small HTML helpers shared by every view (one look across the dashboard)."""

from __future__ import annotations

import html

#: Selection (component, block, selected samples).
ACCENT = "#e8590c"
#: Data marks.
INK = "#1c7ed6"
#: Secondary marks (unselected, context).
MUTED = "#adb5bd"
#: Folded-in (new) inputs.
NEW = "#2f9e44"
#: Sequential scale of the component map (white -> deep blue).
SEQUENTIAL = ["#f8f9fa", "#a5d8ff", "#1c7ed6", "#0b3d91"]
#: Diverging palette for signed patterns (negative blue, zero white, positive red).
DIVERGING_HEX = ["#1864ab", "#74c0fc", "#f8f9fa", "#ff8787", "#c92a2a"]

FONT = "font-family: system-ui, -apple-system, 'Segoe UI', sans-serif;"


def title_html(title: str, subtitle: str = "") -> str:
    """A view header: bold title and a muted subtitle."""
    sub = (f" <span style='color:#868e96;font-weight:400'>{html.escape(subtitle)}</span>"
           if subtitle else "")
    return (f"<div style=\"{FONT}font-size:14px;font-weight:600;color:#212529;"
            f"margin:2px 0 2px 4px\">{html.escape(title)}{sub}</div>")


def caption_html(text: str) -> str:
    """A small muted line of text under a figure."""
    return f"<div style=\"{FONT}font-size:12px;color:#495057;margin-left:4px\">{text}</div>"
