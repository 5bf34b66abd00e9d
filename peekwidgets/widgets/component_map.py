"""Component map: blocks x components, each component's signed share of each block's variance."""

from __future__ import annotations

import html

import bqplot as bq
import ipywidgets as w
import numpy as np

from peekwidgets.palette import ACCENT, DIVERGING_HEX
from peekwidgets.viewmodel import LOADS_ON_Z

from .base import View, figure_layout
from .theme import BORDER, FONT, MUTED_TEXT, caption_html

__all__ = ["ComponentMap", "color_bar_html", "health_html", "set_grid", "view_styles"]

#: Marks after a component's number on the map's column axis.
MARKS = {"mean": "μ", "dead": "✕", "duplicate": "≈", "cancelling": "±", "selection": "▲"}
#: Text colour of warnings.
WARN = "var(--jp-error-color1, #c92a2a)"
#: Style of every tooltip of the views: it never catches the mouse (it pops up under the
#: pointer, and a click meant for the cell beneath would land on it).
TOOLTIP_STYLE = {"opacity": 0.9, "pointer-events": "none"}


#: The style sheet of :func:`view_styles`.
VIEW_CSS = """
.bqplot_tooltip_div { pointer-events: none !important; }
[class*="peek-"] .bqplot {
  --bq-axislabel-fill: var(--jp-ui-font-color1, #212529);
  --bq-mainheading-fill: var(--jp-ui-font-color1, #212529);
}
[class*="peek-"] select:focus-visible, [class*="peek-"] input:focus-visible,
[class*="peek-"] button:focus-visible, [class*="peek-"] .noUi-handle:focus-visible {
  outline: 2px solid var(--jp-brand-color1, #1971c2) !important;  /* ipywidgets sets none */
  outline-offset: 1px;
}
"""


def view_styles() -> w.HTML:
    """A style sheet, as an invisible widget, for the views' bqplot figures:

    - bqplot's tooltip container (one per figure, around each mark's tooltip) does not catch
      the mouse: it pops up under the pointer and took the clicks meant for the cell beneath;
    - axis labels and titles take the front end's text colour: bqplot's dark theme draws them
      orange, the views' colour for what is selected;
    - the dropdowns, fields, buttons and slider show where the keyboard is (a focus ring).
    """
    styles = w.HTML(f"<style>{VIEW_CSS}</style>", layout=w.Layout(height="0px", margin="0"))
    styles.add_class("peek-styles")
    return styles


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


def color_bar_html(lo: float, hi: float, label: str, fmt: str = "{:+.0%}",
                   colors=DIVERGING_HEX) -> str:
    """A colour bar as HTML: ``label``, ``lo``, a gradient through ``colors``, ``hi``.

    (bqplot's vertical ColorAxis keeps 100 px free at each end, so it vanishes on a figure
    less than about 250 px tall; this one fits any width.)
    """
    gradient = ", ".join(colors)
    return (f"<div class='peek-color-bar' style=\"{FONT}display:flex;align-items:center;"
            f"gap:6px;font-size:11px;color:{MUTED_TEXT};margin:0 4px\">"
            f"<span>{label}</span><span>{fmt.format(lo)}</span>"
            f"<span style='flex:0 1 180px;min-width:60px;height:10px;border-radius:2px;"
            f"border:1px solid {BORDER};background:linear-gradient(to right, {gradient})'>"
            f"</span><span>{fmt.format(hi)}</span></div>")


def health_html(fitted) -> str:
    """The fit's problems (how it ended, dead and near-duplicate components), each with its
    fix, as a warning line; empty for a healthy fit."""
    problems = fitted.health.problems(fitted.rank)
    if not problems:
        return ""
    return caption_html(f"<span style='color:{WARN}'>⚠ " + " · ".join(problems) + "</span>")


def _pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{100 * x:.0f}%"


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


#: The widest row labels of the component map, pixels (longer block names are shortened).
MAX_LABEL_PX = 220
#: Block names longer than this are shortened in the component map's rows.
SHORT_NAME = 20


def short_names(names, limit: int = SHORT_NAME) -> list[str]:
    """Block names as row labels: a name longer than ``limit`` keeps its last dotted parts
    that fit, after an ellipsis (``encoder.layers.encoder_layer_11`` -> ``…encoder_layer_11``),
    where that leaves every label different."""
    def short(name):
        if len(name) <= limit:
            return name
        parts = name.split(".")
        kept = parts[-1]
        for part in reversed(parts[:-1]):
            if len(part) + 1 + len(kept) > limit:
                break
            kept = f"{part}.{kept}"
        return f"…{kept[-limit:]}"

    shortened = [short(n) for n in names]
    return shortened if len(set(shortened)) == len(names) else list(names)


class ComponentMap(View):
    """Heatmap of ``fitted.shares`` (blocks as rows, input first; components as columns).

    Each cell is the signed share of a block's variance that a component explains (a row sums
    to the block's fit; negative where a component cancels part of another), on a diverging
    scale centred at 0 with a colour bar (the report's component map shows the same numbers).
    Columns are the components in the engine's order, by weight (the component's size over all
    scaled blocks), largest first; the caption states the selected one's weight and its share
    of all blocks together (``fitted.total_share``). Clicking a cell selects that component and
    block.

    Parameters
    ----------
    fitted : ViewModel
        See :class:`~peekwidgets.viewmodel.ViewModel`; or use :meth:`from_fitted`.
    errors : ErrorArea, optional
        Where callback exceptions are shown (the view's own area by default).
    """

    title = "Component map"
    subtitle = ("each cell: the signed share of the block's variance the component explains "
                "(a row sums to the block's fit)")

    def _build(self):
        self._row_scale = bq.OrdinalScale(reverse=True)
        self._col_scale = bq.OrdinalScale()
        self._color_scale = bq.ColorScale(colors=DIVERGING_HEX, min=-1.0, max=1.0)
        self.heatmap = bq.GridHeatMap(
            row=np.array(["", " "]), column=np.array(["", " "]), color=np.zeros((2, 2)),
            scales={"row": self._row_scale, "column": self._col_scale,
                    "color": self._color_scale},
            display_format=".0%", font_style={"font-size": "11px"},
            stroke="white", selected_style={"stroke": ACCENT, "stroke-width": "4"},
            unselected_style={}, tooltip=bq.Tooltip(fields=["row", "column", "color"],
                                                   labels=["block", "component", "share"],
                                                   formats=["", "", ".1%"]),
            tooltip_style=TOOLTIP_STYLE,
        )
        self.heatmap.on_element_click(self.errors.guard(self._on_click))
        self.column_axis = bq.Axis(scale=self._col_scale, grid_lines="none",
                                   label="component (by weight, largest first)")
        axes = [self.column_axis, bq.Axis(scale=self._row_scale, side="left", grid_lines="none")]
        self.figure = bq.Figure(
            marks=[self.heatmap], axes=axes, padding_y=0.0, display_toolbar=False,
            fig_margin=dict(top=10, bottom=45, left=130, right=10),
            layout=figure_layout(min_width="320px", height="300px"),
        )
        self.color_bar = w.HTML()
        self.caption = w.HTML()
        self.health = w.HTML()
        self.health.add_class("peek-fit-health")
        self.selection = w.HTML()
        self.selection.add_class("peek-map-selection")
        self.legend = w.HTML()
        self.legend.add_class("peek-map-legend")

    def _body(self):
        self.add_class("peek-component-map")
        return w.VBox([view_styles(), self.figure, self.color_bar, self.caption,
                       self.selection, self.health, self.legend])

    def _selection_html(self) -> str:
        if not self.selected:
            return ""
        f = self.fitted
        hits = f.loads_on(self.selected)
        n = len(self.selected)
        what = (f"loads on component{'s' if len(hits) > 1 else ''} "
                f"<b>{', '.join(map(str, hits))}</b> ({MARKS['selection']})" if len(hits)
                else "loads on no component more than the rest do")
        return caption_html(
            f"<span style='color:{ACCENT};font-weight:600'>selection</span> of {n} "
            f"sample{'s' if n > 1 else ''} {what}: mean loading &ge; {LOADS_ON_Z:g} standard "
            "deviation above all samples' mean")

    def _refit(self):
        f = self.fitted
        self._rows = np.array([f"{n} · fit {_pct(fit)}" for n, fit in zip(short_names(f.names),
                                                                        f.block_fit)])
        longest = max(len(row) for row in self._rows)  # room for the row labels
        self.figure.fig_margin = {**self.figure.fig_margin,
                                  "left": int(min(MAX_LABEL_PX, max(130, 6.4 * longest + 16)))}
        self._columns = None
        lim = max(float(np.abs(f.shares).max()), 1e-12)
        with self._color_scale.hold_sync():
            self._color_scale.min, self._color_scale.max = -lim, lim
        self.color_bar.value = color_bar_html(-lim, lim, "signed share")
        self.figure.layout.height = f"{max(200, 60 + 34 * len(f.names))}px"
        self.health.value = health_html(f)
        mean = np.flatnonzero(f.mean_like)
        self.legend.value = caption_html(
            "<b>component</b>: one pattern shared by every block (a column of A and of each "
            "block's factors) · <b>share</b>: the part of a block's variance it explains, "
            "signed · <b>weight</b>: its size over all scaled blocks"
            + ("" if not len(mean) else
               f"<br>{MARKS['mean']} component{'s' if len(mean) > 1 else ''} "
               f"{', '.join(map(str, mean))}: mean-like (nearly the same loading for every "
               "sample: the mean activation of an uncentered fit)")
            + ("" if not f.unfitted else
               f"<br>captured but not in this fit: {html.escape(', '.join(f.unfitted))}"))

    def column_labels(self) -> np.ndarray:
        """The column names: each component's number and its marks (:data:`MARKS`: dead,
        near-duplicate, cancelling, loaded on by the selection)."""
        f = self.fitted
        h = f.health
        pairs = {"duplicate": h.duplicates, "cancelling": h.cancelling}
        loaded = set(f.loads_on(self.selected).tolist()) if self.selected else set()
        labels = []
        for r in range(f.rank):
            marks = MARKS["mean"] if f.mean_like[r] else ""
            marks += MARKS["dead"] if r in h.dead else ""
            marks += "".join(MARKS[kind] for kind, ps in pairs.items()
                             if any(r in p[:2] for p in ps))
            marks += MARKS["selection"] if r in loaded else ""
            labels.append(f"{r} {marks}".strip())
        return np.array(labels)

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
        f = self.fitted
        columns = self.column_labels()
        if self._columns is None or list(columns) != list(self._columns):
            set_grid(self.heatmap, self._rows, columns, f.shares)
            self._columns = columns
        self.selection.value = self._selection_html()
        if changed == "selected":
            return
        b = f.block_index(self.block)
        r = self.component
        self.heatmap.selected = np.array([[b, r]])
        self.caption.value = caption_html(
            f"<b style='color:{ACCENT}'>component {r}</b> · weight {f.weights[r]:.3g} "
            f"({_ordinal(1 + int(np.sum(f.weights > f.weights[r])))} largest of {f.rank}) · "
            f"explains {_pct(f.total_share[r])} of "
            f"all blocks together · <b>{self.block}</b>: {_pct(f.shares[b, r])} of its "
            f"variance (block fit {_pct(f.block_fit[b])})"
            + "".join(f"<br><span style='color:{WARN}'>⚠ {flag}</span>"
                      for flag in f.health.flags(r))
        )

    @property
    def figures(self):
        return {"component_map": self.figure}
