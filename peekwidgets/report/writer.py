"""The headless report: the dashboard's views as PNG files plus a JSON summary.

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

from peekwidgets.report.figures import (
    _top_samples,
    plot_component_map,
    plot_layer_response,
    plot_rank_profiles,
    plot_top_inputs,
)

__all__ = ["write_demo_report", "write_report"]

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
        :class:`~peekwidgets.demo.models.Checkpoint`), compared by
        :func:`~peekwidgets.analysis.compare_checkpoints` on the same inputs.
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
    from peekwidgets.analysis import rank_profile
    from peekwidgets.capture import capture
    from peekwidgets.engine import CoupledCP

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
        from peekwidgets.analysis import compare_checkpoints

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
