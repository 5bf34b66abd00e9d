"""Progress bars that end full and true, in terminals and notebooks alike (tqdm.auto)."""

from __future__ import annotations

__all__ = ["complete"]


def complete(bar) -> None:
    """End ``bar`` full at its current count (an early stop, such as convergence, is a success).

    tqdm.notebook keeps its own maximum in its widget, which setting ``bar.total`` does not
    change; it is set too, so the bar is drawn full and its text reads ``n/n``.
    """
    bar.total = bar.n
    widget = getattr(bar, "container", None)
    if widget is not None:
        widget.children[1].max = bar.n
        widget.children[1].value = bar.n
    bar.refresh()
