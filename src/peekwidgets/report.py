"""Headless report: the dashboard's views as PNG files plus a JSON summary.

:func:`write_report` captures a model's inputs and layer outputs, fits one joint
factorization (:class:`~peekwidgets.engine.CoupledCP`), computes the rank profile of the
final model and, when checkpoints are given, compares them; it then writes

- ``component_map.png``: blocks x components, each component's share of each block's fit;
- ``top_inputs.png``: the top-k inputs of every component (largest loading in ``A``);
- ``layer_responses/component_<r>.png``: the response of every block to component ``r``
  (input pattern as an image, unit loadings as bars, conv maps and channel loadings);
- ``rank_profiles.png``: joint fit over the rank, for the model and each checkpoint;
- ``factors.npz`` (the fitted model, :meth:`CoupledCP.save`) and ``summary.json``, which lists
  every file written.

The figure functions (``plot_*``) take fitted attributes and return a matplotlib
:class:`~matplotlib.figure.Figure` without touching pyplot, so they work on a server and in a
notebook alike.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

__all__ = [
    "plot_component_map",
    "plot_layer_response",
    "plot_rank_profiles",
    "plot_top_inputs",
    "write_demo_report",
    "write_report",
]

_DPI = 110


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------
class _Stages:
    """Prints each stage of the report with its duration (the long stages show their own bars)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.done, self.times = total, enabled, 0, {}

    def __call__(self, label: str):
        self.done += 1
        self.label, self.start = label, time.perf_counter()
        if self.enabled:
            print(f"[{self.done}/{self.total}] {label} ...", flush=True)
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.times[self.label] = round(time.perf_counter() - self.start, 3)
        if self.enabled and exc[0] is None:
            print(f"      {self.label}: {self.times[self.label]:.1f} s", flush=True)


def _save(fig: Figure, path: Path, out: Path, files: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    files.append(path.relative_to(out).as_posix())


def write_report(
    out_dir, model: torch.nn.Module, inputs: torch.Tensor, *, checkpoints: dict | None = None,
    labels=None, rank: int = 6, max_rank: int = 10, top_k: int = 8, layers="auto",
    random_state: int = 0, progress: bool = True, extra: dict | None = None,
) -> dict:
    """Analyse ``model`` on ``inputs`` and write the report folder ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Created when missing; files of an earlier report there are overwritten.
    model : nn.Module
        The network to look into; it is given back unchanged.
    inputs : (N, ...) tensor
        The analysed samples (unlabelled for every computation).
    checkpoints : list or dict, optional
        Checkpoints of the architecture of ``model`` (modules, state dicts or
        :class:`~peekwidgets.models.Checkpoint`), compared by
        :func:`~peekwidgets.rank.compare_checkpoints` on the same inputs.
    labels : (N,) array-like, optional
        Only annotate the top inputs and add an accuracy column (and its Spearman correlation
        with the rank score) to the checkpoint table; never used by a computation.
    rank, max_rank, top_k : int
        Components of the factorization, largest rank of the profiles, inputs per component.
    layers : "auto" or list of str
        Passed to :func:`peekwidgets.capture.capture`.
    extra : dict, optional
        Merged into ``summary.json`` (for example the provenance of the model).

    Returns
    -------
    dict: the content of ``summary.json``.
    """
    from peekwidgets.capture import capture
    from peekwidgets.engine import CoupledCP
    from peekwidgets.rank import rank_profile

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    stage = _Stages(5 if checkpoints else 4, progress)
    with stage("capture inputs and layer outputs"):
        blocks = capture(model, inputs, layers=layers, progress=progress)
    with stage(f"fit the joint factorization (rank {rank})"):
        cp = CoupledCP(rank=rank, random_state=random_state, progress=progress).fit(blocks)
    with stage(f"rank profile (R = 1..{max_rank})"):
        profile = rank_profile(blocks, max_rank, random_state=random_state, progress=progress)
    comparison = None
    if checkpoints:
        from peekwidgets.rank import compare_checkpoints

        with stage(f"compare {len(checkpoints)} checkpoints"):
            comparison = compare_checkpoints(  # the final model's checkpoint reuses `profile`
                model, checkpoints, inputs, layers, labels, max_rank=max_rank,
                random_state=random_state, progress=progress, model_profile=profile,
            )
    with stage("write figures"):
        _save(plot_component_map(cp), out / "component_map.png", out, files)
        _save(plot_top_inputs(cp, inputs, top_k, labels), out / "top_inputs.png", out, files)
        for r in range(len(cp.weights_)):
            _save(plot_layer_response(cp, blocks, r),
                  out / "layer_responses" / f"component_{r}.png", out, files)
        profiles, accuracies = {"model": profile}, None
        if comparison is not None:
            profiles = dict(zip(comparison.names, comparison.profiles))
            if comparison.accuracy is not None:
                accuracies = dict(zip(comparison.names, comparison.accuracy.tolist()))
        _save(plot_rank_profiles(profiles, accuracies), out / "rank_profiles.png", out, files)
        cp.save(out / "factors.npz")
        files.append("factors.npz")
    files.append("summary.json")
    summary = {
        "files": files,
        "n_samples": blocks.n_samples,
        "blocks": [
            {"name": b.name, "kind": b.kind, "shape": list(b.shape),
             "spatial_shape": list(b.spatial_shape) if b.spatial_shape else None}
            for b in blocks
        ],
        "rank": int(len(cp.weights_)),
        "weights": _floats(cp.weights_),
        "fit": {name: float(v) for name, v in cp.fit_.items()},
        "explained_variance": {
            name: _floats(row) for name, row in zip(cp.block_names_, cp.explained_variance_)
        },
        "converged": bool(cp.converged_),
        "n_iter": int(cp.n_iter_),
        "top_inputs": {f"c{r}": row.tolist() for r, row in enumerate(_top_samples(cp.A_, top_k))},
        "rank_profile": _profile_summary(profile),
        "checkpoints": None if comparison is None else [
            {k: _floats(v) if isinstance(v, np.ndarray) else v for k, v in row.items()}
            for row in comparison.records()
        ],
        "checkpoint_spearman": None if comparison is None else comparison.spearman(),
        "timings_s": stage.times,
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "platform": platform.platform()},
        **(extra or {}),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _floats(values) -> list:
    return [float(v) for v in np.asarray(values).ravel()]


def _profile_summary(profile) -> dict:
    return {
        "ranks": [int(r) for r in profile.ranks],
        "fit": _floats(profile.fit),
        "gain": _floats(profile.gain),
        "estimated_rank": int(profile.estimated_rank),
        "score": float(profile.score),
        "saturated": bool(profile.saturated),
        "center": bool(profile.center),
        "threshold": float(profile.threshold),
    }


def write_demo_report(run, out_dir, *, rank: int = 6, n_samples: int = 500, max_rank: int = 10,
                      top_k: int = 8, progress: bool = True) -> dict:
    """:func:`write_report` for a :class:`~peekwidgets.demo.DemoRun`: its final model on
    ``n_samples`` held-out digits, with its checkpoints compared."""
    labels = run.labels(n_samples).numpy()
    return write_report(
        out_dir, run.model, run.inputs(n_samples), checkpoints=run.checkpoints,
        labels=labels, rank=rank, max_rank=max_rank, top_k=top_k, progress=progress,
        extra={"model": "DigitsCNN", "data": "scikit-learn bundled digits (held-out split)",
               "checkpoint_accuracy": run.accuracies},
    )
