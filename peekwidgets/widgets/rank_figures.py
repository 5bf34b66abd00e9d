"""bqplot figures of a rank profile and of a checkpoint comparison.

Each function builds a NEW figure from the result object on every call (the result holds data
only), so restyling one figure, as the dashboard's controls do, never changes another that is
shown elsewhere. The checkpoint figures name their lines in a legend of their own, below the
figure (:func:`with_legend`): their labels are long, and a legend inside the plot would cover
the lines or be cut off on a narrow figure. The matplotlib versions for the report are in
:mod:`peekwidgets.report`.
"""

from __future__ import annotations

import html

import bqplot as bq
import ipywidgets as w
import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_hex

from peekwidgets.analysis import CRITERIA
from peekwidgets.palette import CHECKPOINT_VIRIDIS, CRITERION_COLORS, INK
from peekwidgets.viewmodel import checkpoint_criteria, crowded

from .component_map import TOOLTIP_STYLE
from .theme import FONT, MUTED_TEXT
from .ticks import log_ticks

__all__ = ["CRITERION_COLORS", "checkpoint_colors", "checkpoint_gains_figure",
           "checkpoint_scores_figure", "legend_html", "rank_profile_figure", "with_legend"]

#: The marginal gain's curve, threshold and axis.
GAIN_COLOR = "#d62728"


def checkpoint_colors(n: int) -> list[str]:
    """``n`` hex colours of viridis, from dark blue (first checkpoint) to green (last; its
    yellow end is too pale on white), as the report draws them."""
    return [to_hex(c) for c in colormaps["viridis"](np.linspace(0, CHECKPOINT_VIRIDIS,
                                                                 max(n, 1)))]


def _log_axis(values: np.ndarray, **axis) -> tuple[bq.LogScale, bq.Axis]:
    """A log scale over the positive ``values`` and its axis, with a few round ticks
    (:func:`~peekwidgets.widgets.ticks.log_ticks`; d3's own crowd a short range)."""
    lo, hi = float(values.min()), float(values.max())
    lo, hi = (lo / 1.5, hi * 1.5) if hi > lo else (lo / 10, hi * 10)
    scale = bq.LogScale(min=lo, max=hi)
    return scale, bq.Axis(scale=scale, tick_values=log_ticks(lo, hi), tick_format=".1~g",
                          **axis)


def rank_profile_figure(profile, blocks: bool = True) -> bq.Figure:
    """Joint fit and marginal gain against R, with the threshold and the score.

    Parameters
    ----------
    profile : RankProfile
    blocks : bool
        Also draw each block's fit (when there is more than one block).
    """
    x_sc = bq.LinearScale(min=0.5, max=profile.max_rank + 0.5)
    y_sc = bq.LinearScale(min=0.0, max=1.0)
    gains = np.maximum(profile.gain, 1e-6)
    # each curve is named by its axis, in its colour: a legend inside the plot covers curves
    g_sc, g_axis = _log_axis(np.append(gains, profile.threshold), side="right",
                             label="marginal gain",
                             label_color=GAIN_COLOR, color=GAIN_COLOR)
    r = profile.ranks.astype(float)
    marks = [
        bq.Lines(x=r, y=profile.fit, scales={"x": x_sc, "y": y_sc}, colors=[INK],
                 stroke_width=3, marker="circle", labels=["joint fit"]),
        bq.Lines(x=r, y=gains, scales={"x": x_sc, "y": g_sc},
                 colors=[GAIN_COLOR], line_style="dashed", marker="square",
                 labels=["marginal gain"]),
        bq.Lines(x=[0.5, profile.max_rank + 0.5], y=[profile.threshold] * 2,
                 scales={"x": x_sc, "y": g_sc}, colors=[GAIN_COLOR], opacities=[0.4]),
        bq.Lines(x=[profile.score] * 2, y=[0.0, 1.0], scales={"x": x_sc, "y": y_sc},
                 colors=["gray"], line_style="dotted"),
    ]
    if blocks and len(profile.block_names) > 1:
        marks.append(bq.Lines(x=r, y=profile.block_fit, scales={"x": x_sc, "y": y_sc},
                              labels=list(profile.block_names), display_legend=True,
                              opacities=[0.6] * len(profile.block_names), stroke_width=1))
    axes = [
        bq.Axis(scale=x_sc, label="rank R", tick_format="d"),
        bq.Axis(scale=y_sc, side="left", label="joint fit (explained variance)",
                label_color=INK, color=INK),
        g_axis,
    ]
    title = (f"estimated rank {profile.estimated_rank}{'+' if profile.saturated else ''} "
             f"(score {profile.score:.2f})")
    return bq.Figure(marks=marks, axes=axes, title=title, legend_location="bottom-right",
                     fig_margin={"top": 50, "bottom": 50, "left": 60, "right": 60})


def checkpoint_gains_figure(comparison) -> bq.Figure:
    """The marginal-gain curve of every checkpoint (log scale), coloured by checkpoint order,
    with the threshold; the lines are named by :func:`legend_html`.

    Parameters
    ----------
    comparison : CheckpointComparison
    """
    profiles = comparison.profiles
    max_rank = max(p.max_rank for p in profiles)
    gains = np.full((len(profiles), max_rank), np.nan)
    for i, p in enumerate(profiles):
        gains[i, : p.max_rank] = np.maximum(p.gain, 1e-6)
    x_sc = bq.LinearScale(min=0.5, max=max_rank + 0.5)
    threshold = profiles[0].threshold
    y_sc, y_axis = _log_axis(np.append(gains[np.isfinite(gains)], threshold),
                             side="left", label="marginal gain in joint fit")
    labels = [f"{n} (score {p.score:.1f})" for n, p in zip(comparison.names, profiles)]
    marks = [
        bq.Lines(x=np.arange(1, max_rank + 1), y=gains, scales={"x": x_sc, "y": y_sc},
                 colors=checkpoint_colors(len(profiles)), labels=labels, marker="circle",
                 marker_size=16),
        bq.Lines(x=[0.5, max_rank + 0.5], y=[threshold] * 2, scales={"x": x_sc, "y": y_sc},
                 colors=["gray"], line_style="dashed", labels=[f"threshold {threshold:g}"]),
    ]
    axes = [bq.Axis(scale=x_sc, label="component R", tick_format="d"), y_axis]
    return bq.Figure(marks=marks, axes=axes, title="rank profiles by checkpoint",
                     fig_margin={"top": 50, "bottom": 50, "left": 70, "right": 20})


def checkpoint_scores_figure(comparison) -> bq.Figure:
    """Every label-free criterion of every checkpoint, side by side, each scaled to its range
    over the checkpoints (:func:`legend_html` gives the range; a point's tooltip its value),
    and accuracy on a second axis when labels were given. Long checkpoint names are slanted.

    Parameters
    ----------
    comparison : CheckpointComparison
    """
    names = list(comparison.names)
    x_sc, c_sc = bq.OrdinalScale(), bq.LinearScale(min=-0.05, max=1.05)
    lines, points = [], []
    for key, label, scaled, values in checkpoint_criteria(comparison):
        lines.append(bq.Lines(x=names, y=scaled, scales={"x": x_sc, "y": c_sc},
                              colors=[CRITERION_COLORS[key]], labels=[label]))
        points.append(_valued(names, scaled, values, CRITERION_COLORS[key], x_sc, c_sc,
                              CRITERIA[key]))
    axes = [bq.Axis(scale=c_sc, side="left", label="criterion, scaled to its range",
                    tick_values=[0.0, 0.5, 1.0])]
    if comparison.accuracy is not None:
        a_sc = bq.LinearScale(min=0.0, max=1.0)
        lines.append(bq.Lines(x=names, y=comparison.accuracy, scales={"x": x_sc, "y": a_sc},
                              colors=[CRITERION_COLORS["accuracy"]], line_style="dashed",
                              labels=["accuracy (validation only)"]))
        points.append(_valued(names, comparison.accuracy, comparison.accuracy,
                              CRITERION_COLORS["accuracy"], x_sc, a_sc, "accuracy",
                              marker="square"))
        axes.append(bq.Axis(scale=a_sc, side="right", label="accuracy"))
    slant = crowded(names)
    longest = min(max(map(len, names)), 24)
    axes.insert(0, bq.Axis(scale=x_sc, label="" if slant else "checkpoint",
                           tick_rotate=-30 if slant else 0))
    bottom = 40 + int(3.5 * longest) if slant else 50
    return bq.Figure(marks=lines + points, axes=axes, title="label-free criteria by checkpoint",
                     fig_margin={"top": 50, "bottom": bottom, "left": 60, "right": 60})


def _valued(names, y, values, color, x_sc, y_sc, what, marker="circle") -> bq.Scatter:
    """The points of a line, each with a tooltip of its checkpoint and unscaled value."""
    text = ["n/a" if not np.isfinite(v) else f"{v:.4g}" for v in values]
    return bq.Scatter(x=names, y=y, names=text, display_names=False, colors=[color],
                      marker=marker, default_size=40, scales={"x": x_sc, "y": y_sc},
                      tooltip=bq.Tooltip(fields=["x", "name"], labels=["checkpoint", what]),
                      tooltip_style=TOOLTIP_STYLE)


def legend_html(figure: bq.Figure) -> str:
    """An HTML legend of the labelled lines of ``figure``: a swatch in each line's colour
    (dashed for a dashed line) and its label; wraps to any width."""
    items = []
    for mark in figure.marks:
        if not isinstance(mark, bq.Lines) or not mark.labels:
            continue
        dash = "dashed" if mark.line_style == "dashed" else "solid"
        for color, label in zip(mark.colors, mark.labels):
            items.append(
                f"<span style='display:inline-flex;align-items:center;gap:4px;"
                f"margin-right:12px'><span style='width:18px;border-top:3px {dash} {color}'>"
                f"</span>{html.escape(label)}</span>")
    return (f"<div class='peek-legend' style=\"{FONT}font-size:12px;color:{MUTED_TEXT};"
            f"margin:0 4px;display:flex;flex-wrap:wrap;row-gap:2px\">{''.join(items)}</div>")


def with_legend(figure: bq.Figure) -> w.VBox:
    """``figure`` above its :func:`legend_html`, for display
    (``display(with_legend(checkpoint_scores_figure(comparison)))``)."""
    return w.VBox([figure, w.HTML(legend_html(figure))])
