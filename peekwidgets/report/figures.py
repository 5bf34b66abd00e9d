"""Matplotlib figures of a fitted analysis, one function per figure.

Each ``plot_*`` function takes data (fitted attributes, blocks, result objects) and returns a
:class:`~matplotlib.figure.Figure` without touching pyplot, so it works on a server and in a
notebook alike.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

__all__ = [
    "plot_component_map",
    "plot_layer_response",
    "plot_rank_profiles",
    "plot_top_inputs",
]

_DPI = 110


def plot_component_map(cp, block_names=None) -> Figure:
    """Heatmap ``(n_blocks, rank)`` of ``cp.explained_variance_``, blocks in forward order.

    Each cell is the share of a block's variance that one component explains (negative where a
    component cancels part of another); the row label carries the block's fit ``cp.fit_[name]``.
    """
    names = list(block_names or cp.block_names_)
    order = [list(cp.block_names_).index(n) for n in names]
    ev = np.asarray(cp.explained_variance_)[order]
    n_blocks, rank = ev.shape
    fig = Figure(figsize=(1.2 + 0.62 * rank + 1.6, 0.9 + 0.42 * n_blocks), dpi=_DPI)
    ax = fig.add_subplot()
    low, high = min(float(ev.min()), 0.0), max(float(ev.max()), 1e-12)
    image = ax.imshow(ev, cmap="viridis", vmin=low, vmax=high, aspect="auto")
    for i in range(n_blocks):
        for r in range(rank):
            dark = ev[i, r] < low + 0.6 * (high - low)
            ax.text(r, i, f"{ev[i, r]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    ax.set_xticks(range(rank), [f"c{r}" for r in range(rank)])
    ax.set_yticks(range(n_blocks), [f"{n}  (fit {cp.fit_[n]:.2f})" for n in names])
    ax.set_xlabel("component (strongest first)")
    ax.set_title("Component map: share of each block's variance")
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02, label="explained variance")
    fig.tight_layout()
    return fig


def _as_images(inputs: torch.Tensor) -> np.ndarray | None:
    """``(N, H, W)`` or ``(N, H, W, 3)`` in [0, 1] for image inputs, None for other inputs.

    Each image is stretched to its own range, which undoes any normalization for display.
    """
    x = inputs.detach().cpu().float()
    if x.ndim == 3:  # (N, H, W)
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        return None
    low = x.amin(dim=(1, 2, 3), keepdim=True)
    span = (x.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(1e-12)
    x = ((x - low) / span).numpy()
    return x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)


def _draw_sample(ax, image, sample) -> None:
    if image is None:
        flat = np.asarray(sample, dtype=float).ravel()
        ax.bar(range(len(flat)), flat, width=1.0, color="0.3")
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
        ax.axis("off")


def _top_samples(a: np.ndarray, top_k: int) -> np.ndarray:
    """``(rank, min(top_k, N))`` indices of the samples with the largest loadings, per column
    of ``a : (N, rank)``, largest first (ties in sample order)."""
    return np.argsort(-np.asarray(a), axis=0, kind="stable")[:top_k].T


def plot_top_inputs(cp, inputs, top_k: int = 8, labels=None) -> Figure:
    """The ``top_k`` inputs with the largest loading ``A[:, r]``, one row per component.

    ``inputs : (N, ...)`` the analysed samples, images ``(N, C, H, W)`` with C in {1, 3}
    drawn as images, anything else as bar plots. ``labels``, when given, only annotate.
    """
    a = np.asarray(cp.A_)
    top = _top_samples(a, top_k)
    rank, top_k = top.shape
    x = torch.as_tensor(inputs)
    images = _as_images(x)
    fig = Figure(figsize=(0.9 + 1.0 * top_k, 0.3 + 1.1 * rank), dpi=_DPI)
    grid = fig.add_gridspec(rank, top_k, hspace=0.45, wspace=0.1)
    for r in range(rank):
        for j, i in enumerate(top[r]):
            ax = fig.add_subplot(grid[r, j])
            _draw_sample(ax, None if images is None else images[i], x[i].numpy())
            tag = f"{a[i, r]:.3f}" + ("" if labels is None else f" [{int(labels[i])}]")
            ax.set_title(tag, fontsize=6, pad=2)
            if j == 0:
                ax.text(-0.15, 0.5, f"c{r}", transform=ax.transAxes, ha="right", va="center",
                        fontsize=9, fontweight="bold")
    fig.suptitle("Top inputs of each component (loading in A" +
                 ("" if labels is None else ", [label]") + ")", fontsize=10)
    fig.subplots_adjust(left=0.06, right=0.99, top=1 - 0.5 / (0.3 + 1.1 * rank), bottom=0.02)
    return fig


def _bars(ax, values, title, n_labels: int = 3) -> None:
    """Loadings as bars, the ``n_labels`` strongest units labelled by index."""
    values = np.asarray(values, dtype=float)
    colors = np.where(values >= 0, "#3b75af", "#c8553d")
    ax.bar(range(len(values)), values, width=0.9 if len(values) < 40 else 1.0, color=colors)
    ax.axhline(0, color="0.5", lw=0.5)
    for i in np.argsort(-np.abs(values))[:n_labels]:
        ax.annotate(str(i), (i, values[i]), fontsize=6, ha="center",
                    va="bottom" if values[i] >= 0 else "top")
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=6)


def _map(ax, values, shape, title) -> None:
    """A spatial loading map ``(H*W,) -> (H, W)``, diverging colours centred at 0."""
    m = np.asarray(values, dtype=float).reshape(shape)
    lim = max(float(np.abs(m).max()), 1e-12)
    ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_layer_response(cp, blocks, component: int) -> Figure:
    """Every block's response to one component, one column per block (forward order).

    Input block: the component's pattern in input space as an image. Matrix block: unit
    loadings ``B[:, r]`` as bars. Tensor block: the spatial map ``V[:, r]`` over ``(H, W)``
    above the channel loadings ``U[:, r]``.
    """
    rank = len(cp.weights_)
    if not 0 <= component < rank:
        raise ValueError(f"component must be in 0..{rank - 1}, got {component}")
    names = list(cp.block_names_)
    fig = Figure(figsize=(0.4 + 2.0 * len(names), 4.2), dpi=_DPI)
    grid = fig.add_gridspec(2, len(names), hspace=0.45, wspace=0.35)
    for col, name in enumerate(names):
        block, factors = blocks[name], cp.factors_[name]
        top = fig.add_subplot(grid[0, col])
        shape = block.spatial_shape
        if len(factors) == 1:
            b = factors[0][:, component]
            if shape is not None and int(np.prod(shape)) == len(b):
                _map(top, b, shape, f"{name}\npattern {'x'.join(map(str, shape))}")
            else:
                _bars(top, b, f"{name}\nunits ({len(b)})")
            fig.add_subplot(grid[1, col]).axis("off")
        else:
            u, v = factors[0][:, component], factors[1][:, component]
            if shape is not None:
                _map(top, v, shape, f"{name}\nmap {'x'.join(map(str, shape))}")
            else:
                _bars(top, v, f"{name}\npositions ({len(v)})")
            _bars(fig.add_subplot(grid[1, col]), u, f"channels ({len(u)})")
    fig.suptitle(f"Layer responses to component c{component} "
                 f"(weight {float(cp.weights_[component]):.3g})", fontsize=10)
    fig.subplots_adjust(left=0.04, right=0.99, top=0.8, bottom=0.08)
    return fig


def plot_rank_profiles(profiles: dict, accuracies: dict | None = None) -> Figure:
    """Joint fit over the rank R for several models, one line each.

    ``profiles : {name: RankProfile}`` in order (for example checkpoints along a run); the
    estimated rank of each is marked. ``accuracies``, when given, only annotate the legend.
    """
    fig = Figure(figsize=(7.5, 4.2), dpi=_DPI)
    ax = fig.add_subplot()
    colors = _viridis(len(profiles))
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
    ax.set_xlabel("rank R")
    ax.set_ylabel("joint fit (explained variance)")
    ax.set_title("Rank profiles (square: estimated rank R*)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _viridis(n: int):
    from matplotlib import colormaps

    return [colormaps["viridis"](x) for x in np.linspace(0.0, 0.9, max(n, 1))]
