"""Small HTML helpers shared by every view; the colours come from :mod:`peekwidgets.palette`."""

from __future__ import annotations

import html

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
