"""Matplotlib figures of an analysis, one function per figure.

The figures draw from the same :class:`~peekwidgets.viewmodel.ViewModel` and
:class:`~peekwidgets.images.InputImages` as the dashboard, in the colours of
:mod:`peekwidgets.palette`, so both show the same numbers, inputs and images. Each ``plot_*``
function returns a :class:`~matplotlib.figure.Figure` without touching pyplot, so it works on a
server and in a notebook alike.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from peekwidgets.images import map_2d
from peekwidgets.palette import CHECKPOINT_VIRIDIS, CRITERION_COLORS, DIVERGING_HEX, INK, NEGATIVE
from peekwidgets.viewmodel import checkpoint_criteria, crowded

__all__ = [
    "plot_checkpoint_criteria",
    "plot_component_map",
    "plot_layer_response",
    "plot_rank_profiles",
    "plot_top_inputs",
]

_DPI = 110

#: Blocks side by side in a layer-response figure; more wrap onto further rows.
MAX_COLUMNS = 8
#: Loadings of more units than this are drawn as 1-pixel stems: narrower bars vanish.
MAX_BARS = 80
_DIVERGING = LinearSegmentedColormap.from_list("peekwidgets_diverging", DIVERGING_HEX)


def _symmetric_limit(values) -> float:
    return max(float(np.nanmax(np.abs(values))), 1e-12)


def plot_component_map(view) -> Figure:
    """Heatmap ``(n_blocks, rank)`` of ``view.shares``, blocks in forward order.

    Each cell is the signed share of a block's variance that one component explains (negative
    where a component cancels part of another, as in the dashboard's component map); the row
    label carries the block's fit.
    """
    shares = view.shares
    n_blocks, rank = shares.shape
    fig = Figure(figsize=(1.2 + 0.62 * rank + 1.6, 0.9 + 0.42 * n_blocks), dpi=_DPI)
    ax = fig.add_subplot()
    lim = _symmetric_limit(shares)
    image = ax.imshow(shares, cmap=_DIVERGING, vmin=-lim, vmax=lim, aspect="auto")
    for i in range(n_blocks):
        for r in range(rank):
            ax.text(r, i, f"{shares[i, r]:.0%}", ha="center", va="center", fontsize=7,
                    color="white" if abs(shares[i, r]) > 0.6 * lim else "black")
    ax.set_xticks(range(rank), [str(r) for r in range(rank)])
    ax.set_yticks(range(n_blocks),
                  [f"{n} · {fit:.0%}" for n, fit in zip(view.names, view.block_fit)])
    ax.set_xlabel("component (strongest first)")
    ax.set_title("Component map: share of each block's variance")
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02, label="signed share",
                 format=PercentFormatter(1.0, decimals=0))
    problems = view.health.problems(view.rank)
    if problems:  # shares beyond 100% come from such a fit: say so on the figure
        fig.text(0.01, 0.0, "\n".join(f"! {p}" for p in problems), fontsize=7, va="top",
                 color=NEGATIVE, wrap=True)
    if view.unfitted:
        fig.text(0.99, 0.0, f"captured but not in this fit: {', '.join(view.unfitted)}",
                 fontsize=7, va="top", ha="right")
    fig.tight_layout()
    return fig


def _draw_sample(ax, pixels, sample) -> None:
    """One input: ``pixels`` (H, W) or (H, W, 3) uint8 when it is an image, else bars."""
    if pixels is None:
        _signed(ax, np.asarray(sample, dtype=float).ravel())
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        ax.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None, vmin=0, vmax=255,
                  interpolation="nearest")
        ax.axis("off")


def plot_top_inputs(view, images, top_k: int = 8, labels=None) -> Figure:
    """The ``top_k`` inputs with the largest loading ``A[:, r]``, one row per component.

    ``view`` gives the order (:meth:`ViewModel.top`, the gallery's), ``images`` the pixels
    (:class:`~peekwidgets.images.InputImages`, the dashboard's scaling); inputs that are not
    images are drawn as bar plots. ``labels``, when given, only annotate.
    """
    if view.input is None:
        raise ValueError("the analysis has no input block to draw; capture with "
                         "include_input=True")
    rank = view.rank
    top_k = min(top_k, view.n_samples)
    fig = Figure(figsize=(0.9 + 1.0 * top_k, 0.3 + 1.1 * rank), dpi=_DPI)
    grid = fig.add_gridspec(rank, top_k, hspace=0.45, wspace=0.1)
    for r in range(rank):
        top = view.top(r, top_k)
        rows = view.input_rows(top)
        for j, i in enumerate(top):
            ax = fig.add_subplot(grid[r, j])
            _draw_sample(ax, images.to_uint8(rows[j]) if images.is_image else None, rows[j])
            tag = f"#{i} {view.A[i, r]:+.3f}" + ("" if labels is None else f" [{labels[i]}]")
            ax.set_title(tag, fontsize=6, pad=2)
            if j == 0:
                ax.text(-0.15, 0.5, f"c{r}", transform=ax.transAxes, ha="right", va="center",
                        fontsize=9, fontweight="bold")
    fig.suptitle("Top inputs of each component (#index, loading in A" +
                 ("" if labels is None else ", [label]") + ")", fontsize=10)
    fig.subplots_adjust(left=0.06, right=0.99, top=1 - 0.5 / (0.3 + 1.1 * rank), bottom=0.02)
    return fig


def _signed(ax, values: np.ndarray) -> None:
    """``values`` against their index, positive in ``INK``, negative in ``NEGATIVE``, with
    the zero line: bars, or stems (:data:`MAX_BARS`) that stay visible however many."""
    colors = np.where(values >= 0, INK, NEGATIVE)
    if len(values) > MAX_BARS:
        ax.vlines(np.arange(len(values)), 0, values, colors=colors, lw=0.8)
    else:
        ax.bar(range(len(values)), values, width=0.9 if len(values) < 40 else 1.0,
               color=colors)
    ax.axhline(0, color="0.5", lw=0.5)


def _bars(ax, values, title, n_labels: int = 3) -> None:
    """Loadings against the unit index, the ``n_labels`` strongest units labelled by index
    (apart enough that their labels do not meet)."""
    values = np.asarray(values, dtype=float)
    _signed(ax, values)
    gap, labelled = max(len(values) / 20, 1.0), []
    for i in np.argsort(-np.abs(values), kind="stable"):
        if len(labelled) == n_labels:
            break
        if all(abs(i - j) >= gap for j in labelled):
            labelled.append(i)
            ax.annotate(str(i), (i, values[i]), fontsize=6, ha="center",
                        va="bottom" if values[i] >= 0 else "top")
    ax.margins(x=0.02, y=0.18)  # room for the labels inside the frame
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=6)


def _map(ax, values, shape, title) -> None:
    """A spatial loading map ``(H*W,) -> (H, W)`` (a 3-D map's frames side by side,
    :func:`~peekwidgets.images.map_2d`), diverging colours centred at 0."""
    m = map_2d(np.asarray(values, dtype=float), shape)
    lim = _symmetric_limit(m)
    ax.imshow(m, cmap=_DIVERGING, vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_layer_response(view, images, component: int) -> Figure:
    """Every block's response to one component, one column per block (forward order, at most
    :data:`MAX_COLUMNS` to a row).

    Input block: the component's pattern in input space as an image
    (:meth:`InputImages.pattern_uint8`, as in the dashboard). Matrix block: unit loadings
    ``B[:, r]`` as bars. Tensor block: the spatial map ``V[:, r]`` over ``(H, W)`` above the
    channel loadings ``U[:, r]``; of a sequence ``(N, T, D)``, the feature loadings ``V[:, r]``
    above the position loadings ``U[:, r]`` (a row of blocks without either takes no such
    row).
    """
    if not 0 <= component < view.rank:
        raise ValueError(f"component must be in 0..{view.rank - 1}, got {component}")
    names = view.names
    columns = min(len(names), MAX_COLUMNS)
    chunks = [names[i:i + columns] for i in range(0, len(names), columns)]

    def channels(name):  # a tensor block drawn as its map above its channels
        return len(view.factors[name]) == 2 and not (name == "input" and images.is_image)

    # a row of blocks, and under it a row of channel loadings where one of them has channels
    n_rows = sum(1 + any(map(channels, chunk)) for chunk in chunks)
    height = 0.6 + 1.8 * n_rows
    fig = Figure(figsize=(0.4 + 2.0 * columns, height), dpi=_DPI)
    grid = fig.add_gridspec(n_rows, columns, hspace=0.55, wspace=0.35)
    row = 0
    for chunk in chunks:
        for at, name in enumerate(chunk):
            col = names.index(name)
            block, factors = view.blocks[name], view.factors[name]
            top = fig.add_subplot(grid[row, at])
            shape = block.spatial_shape
            share = f"{view.shares[col, component]:.0%} of its variance"
            if name == "input" and images.is_image:
                pattern = (factors[0][:, component] if len(factors) == 1
                           else np.outer(factors[0][:, component], factors[1][:, component]))
                top.imshow(images.pattern_uint8(pattern), interpolation="nearest")
                top.set_title(f"{name}\npattern · {share}", fontsize=8)
                top.axis("off")
            elif len(factors) == 1:
                b = factors[0][:, component]
                _bars(top, b, f"{name}\nunits ({len(b)}) · {share}")
            else:
                u, v = factors[0][:, component], factors[1][:, component]
                below = fig.add_subplot(grid[row + 1, at])
                if shape is not None:
                    _map(top, v, shape, f"{name}\nmap {'x'.join(map(str, shape))} · {share}")
                    _bars(below, u, f"channels ({len(u)})")
                else:  # a sequence (N, T, D): positions (tokens, steps) and features
                    _bars(top, v, f"{name}\nfeatures ({len(v)}) · {share}")
                    _bars(below, u, f"positions ({len(u)})")
        row += 2 if any(map(channels, chunk)) else 1
    fig.suptitle(f"Layer responses to component c{component} "
                 f"(weight {float(view.weights[component]):.3g})", fontsize=10)
    fig.subplots_adjust(left=0.04, right=0.99, top=1 - 0.6 / height, bottom=0.3 / height)
    return fig


def plot_rank_profiles(profiles: dict, accuracies: dict | None = None,
                       fitted_rank: int | None = None) -> Figure:
    """Joint fit over the rank R for several models, one line each.

    ``profiles : {name: RankProfile}`` in order (for example checkpoints along a run); the
    estimated rank of each is marked. ``accuracies``, when given, only annotate the legend;
    ``fitted_rank``, when given, is marked by a dotted line (the rank of the fit on show).
    """
    fig = Figure(figsize=(7.5, 4.2), dpi=_DPI)
    ax = fig.add_subplot()
    colors = colormaps["viridis"](np.linspace(0.0, CHECKPOINT_VIRIDIS, max(len(profiles), 1)))
    for color, (name, prof) in zip(colors, profiles.items()):
        ranks = np.asarray(prof.ranks)
        fit = np.asarray(prof.fit)
        label = name if not accuracies or name not in accuracies else (
            f"{name} (acc {accuracies[name]:.0%})")
        plus = "+" if prof.saturated else ""
        ax.plot(ranks, fit, "-o", ms=3, color=color,
                label=f"{label}: R*={prof.estimated_rank}{plus}")
        hit = np.flatnonzero(ranks == prof.estimated_rank)
        if hit.size:
            ax.plot(ranks[hit], fit[hit], "s", ms=8, mfc="none", color=color)
    title = "Rank profiles (square: estimated rank R*"
    if fitted_rank is not None:
        ax.axvline(fitted_rank, ls=":", lw=1.2, color="0.35")
        title += f"; dotted: the fitted rank, {fitted_rank}"
    ax.set_xlabel("rank R")
    ax.set_ylabel("joint fit (explained variance)")
    ax.set_title(title + ")")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_checkpoint_criteria(comparison) -> Figure:
    """Every label-free criterion of a :class:`~peekwidgets.analysis.CheckpointComparison`
    by checkpoint, each scaled to its range over the checkpoints (the legend gives the range),
    and accuracy (dashed, its own axis) when labels were given: the dashboard's figure."""
    names = list(comparison.names)
    slant = crowded(names)
    fig = Figure(figsize=(7.5, 4.8), dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(names))
    for key, label, scaled, _ in checkpoint_criteria(comparison):
        ax.plot(x, scaled, "-o", ms=4, color=CRITERION_COLORS[key], label=label)
    handles, labels = ax.get_legend_handles_labels()
    if comparison.accuracy is not None:
        acc = ax.twinx()
        acc.plot(x, comparison.accuracy, "--s", ms=4, color=CRITERION_COLORS["accuracy"],
                 label="accuracy (validation only)")
        acc.set_ylim(0, 1)
        acc.set_ylabel("accuracy")
        more = acc.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.set_xticks(x, names, rotation=30 if slant else 0, ha="right" if slant else "center",
                  fontsize=8)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([0.0, 0.5, 1.0])
    ax.set_ylabel("criterion, scaled to its range")
    ax.set_title("Label-free criteria by checkpoint")
    ax.grid(alpha=0.3)
    fig.legend(handles, labels, loc="outside lower center", fontsize=7, ncol=2, frameon=False)
    return fig
