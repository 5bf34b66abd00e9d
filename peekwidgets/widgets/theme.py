"""Small HTML helpers shared by every view, in the colours of the front end's theme.

Text, borders and backgrounds come from JupyterLab's theme CSS variables (also set by
Notebook 7 and Voilà's lab template), with light fallbacks for front ends that set none (VS
Code, the classic Voilà template), so light and dark themes both read well. The data colours
come from :mod:`peekwidgets.palette`.
"""

from __future__ import annotations

import html

FONT = "font-family: var(--jp-ui-font-family, system-ui, -apple-system, 'Segoe UI', sans-serif);"
#: Main text.
TEXT = "var(--jp-ui-font-color1, #212529)"
#: Secondary text (subtitles, captions).
MUTED_TEXT = "var(--jp-ui-font-color2, #495057)"
#: Faint text (units, hints).
FAINT_TEXT = "var(--jp-ui-font-color3, #868e96)"
#: Lines around boxes.
BORDER = "var(--jp-border-color2, #dee2e6)"


def title_html(title: str, subtitle: str = "") -> str:
    """A view header: bold title and a muted subtitle."""
    sub = (f" <span style='color:{FAINT_TEXT};font-weight:400'>{html.escape(subtitle)}</span>"
           if subtitle else "")
    return (f"<div style=\"{FONT}font-size:14px;font-weight:600;color:{TEXT};"
            f"margin:2px 0 2px 4px\">{html.escape(title)}{sub}</div>")


def caption_html(text: str) -> str:
    """A small muted line of text under a figure (wraps, never truncated)."""
    return (f"<div style=\"{FONT}font-size:12px;color:{MUTED_TEXT};margin-left:4px;"
            f"white-space:normal;overflow-wrap:anywhere\">{text}</div>")
