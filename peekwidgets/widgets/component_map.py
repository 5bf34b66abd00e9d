"""Component map: blocks x components, each component's signed share of each block's variance."""

from __future__ import annotations

import bqplot as bq
import ipywidgets as w
import numpy as np

from peekwidgets.palette import ACCENT, DIVERGING_HEX

from .base import View
from .theme import caption_html

__all__ = ["ComponentMap", "set_grid"]


def set_grid(heatmap: bq.GridHeatMap, rows: np.ndarray, columns: np.ndarray,
             color: np.ndarray):
    """Set a GridHeatMap's rows, columns and ``color (len(rows), len(columns))`` at once.

    bqplot squeezes a single row or column away, so one is padded with a
    blank, empty (NaN) row or column.
    """
    color = np.asarray(color, dtype=float)
    if len(rows) == 1:
        rows, color = np.append(rows, " "), np.vstack([color, np.full_like(color, np.nan)])
    if len(columns) == 1:
        columns = np.append(columns.astype(str), " ")
        color = np.hstack([color, np.full_like(color, np.nan)])
    with heatmap.hold_sync(), heatmap.hold_trait_notifications():
        heatmap.row = rows
        heatmap.column = columns
        heatmap.color = color


def _pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{100 * x:.0f}%"


class ComponentMap(View):
    """Heatmap of ``fitted.shares`` (blocks as rows, input first; components as columns).

    Each cell is the signed share of a block's variance that a component explains (a row sums
    to the block's fit; negative where a component cancels part of another), on a diverging
    scale centred at 0 (the report's component map shows the same numbers). Clicking a cell
    selects that component and block.

    Parameters
    ----------
    fitted : ViewModel
        See :class:`~peekwidgets.viewmodel.ViewModel`; or use :meth:`from_fitted`.
    errors : ErrorArea, optional
        Where callback exceptions are shown (the view's own area by default).
    """

    title = "Component map"
    subtitle = "signed share of each block's variance per component"

    def _build(self):
        self._row_scale = bq.OrdinalScale(reverse=True)
        self._col_scale = bq.OrdinalScale()
        self._color_scale = bq.ColorScale(colors=DIVERGING_HEX, mid=0.0, min=-1.0, max=1.0)
        self.heatmap = bq.GridHeatMap(
            row=np.array(["", " "]), column=np.array(["", " "]), color=np.zeros((2, 2)),
            scales={"row": self._row_scale, "column": self._col_scale,
                    "color": self._color_scale},
            display_format=".0%", font_style={"font-size": "11px"},
            stroke="white", selected_style={"stroke": ACCENT, "stroke-width": "4"},
            unselected_style={}, tooltip=bq.Tooltip(fields=["row", "column", "color"],
                                                   labels=["block", "component", "share"],
                                                   formats=["", "", ".1%"]),
        )
        self.heatmap.on_element_click(self.errors.guard(self._on_click))
        axes = [
            bq.Axis(scale=self._col_scale, label="component (strongest first)",
                    grid_lines="none"),
            bq.Axis(scale=self._row_scale, side="left", grid_lines="none"),
        ]
        self.figure = bq.Figure(
            marks=[self.heatmap], axes=axes, padding_y=0.0, display_toolbar=False,
            fig_margin=dict(top=10, bottom=45, left=130, right=10),
            layout=w.Layout(width="100%", min_width="320px", height="300px"),
        )
        self.caption = w.HTML()

    def _body(self):
        self.add_class("peek-component-map")
        return w.VBox([self.figure, self.caption])

    def _refit(self):
        f = self.fitted
        rows = np.array([f"{n} · {_pct(fit)}" for n, fit in zip(f.names, f.block_fit)])
        cols = np.array([str(r) for r in range(f.rank)])
        set_grid(self.heatmap, rows, cols, f.shares)
        lim = max(float(np.abs(f.shares).max()), 1e-12)
        with self._color_scale.hold_sync():
            self._color_scale.min, self._color_scale.max = -lim, lim
        self.figure.layout.height = f"{max(200, 60 + 34 * len(f.names))}px"

    def _on_click(self, mark, event):
        data = event.get("data") or {}
        row = data.get("rowNum", data.get("row_num"))
        col = data.get("columnNum", data.get("column_num"))
        if row is None or col is None:
            index = int(data["index"])
            row, col = divmod(index, self.fitted.rank)
        with self.hold_trait_notifications():
            self.block = self.fitted.names[int(row)]
            self.component = int(col)

    def update(self, changed=None):
        if changed == "selected":
            return
        f = self.fitted
        b = f.block_index(self.block)
        r = self.component
        self.heatmap.selected = np.array([[b, r]])
        rel = f.weights[r] / f.weights.sum() if f.weights.sum() else np.nan
        self.caption.value = caption_html(
            f"<b style='color:{ACCENT}'>component {r}</b> · {_pct(rel)} of total weight · "
            f"<b>{self.block}</b>: {_pct(f.shares[b, r])} of its variance "
            f"(block fit {_pct(f.block_fit[b])})"
        )

    @property
    def figures(self):
        return {"component_map": self.figure}
