"""The headless report: the dashboard's views as PNG files plus a JSON summary.

:func:`write_report` takes an :class:`~peekwidgets.session.Analysis` (captured and fitted),
has it compute the rank profile and, when checkpoints are given, compare them; it then writes

- ``component_map.png``: blocks x components, each component's signed share of each block's
  variance (the numbers of the dashboard's component map);
- ``top_inputs.png``: the top-k inputs of every component (largest loading in ``A``), drawn
  with the dashboard's image scaling;
- ``layer_responses/component_<r>.png``: the response of every block to component ``r``
  (input pattern as an image, unit loadings as bars, conv maps and channel loadings);
- ``rank_profiles.png``: joint fit over the rank, for the model and each checkpoint;
- ``checkpoint_criteria.png`` (with checkpoints): every label-free criterion by checkpoint,
  each scaled to its range, and accuracy when labels were given;
- ``factors.npz`` (the fitted model, :meth:`CoupledCP.save`) and ``summary.json``, which lists
  every file written and, under ``"problems"``, what the dashboard warns of (a fit stopped early,
  dead, near-duplicate or cancelling components), each with its fix; ``"unfitted_blocks"``
  names the blocks captured but left out of the fit (an all-zero block).
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
    plot_checkpoint_criteria,
    plot_component_map,
    plot_layer_response,
    plot_rank_profiles,
    plot_top_inputs,
)
from peekwidgets.session import Analysis
from peekwidgets.viewmodel import class_name

__all__ = ["write_demo_report", "write_report"]


class _Stages:
    """Prints each stage of the report with its duration (the long stages show their own bars)."""

    def __init__(self, enabled: bool):
        self.enabled, self.times = enabled, {}

    def __call__(self, label: str):
        self.label, self.start = label, time.perf_counter()
        if self.enabled:
            print(f"- {label} ...", flush=True)
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.times[self.label] = round(time.perf_counter() - self.start, 3)
        if self.enabled and exc[0] is None:
            print(f"      {self.label}: {self.times[self.label]:.1f} s", flush=True)


def _save(fig: Figure, path: Path, out: Path, files: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", pad_inches=0.1)  # no title or tick label cut off
    files.append(path.relative_to(out).as_posix())


def write_report(
    out_dir, analysis, *, checkpoints=None, labels=None, max_rank: int | None = None,
    top_k: int = 8, progress: bool = True, extra: dict | None = None, class_names=None,
) -> dict:
    """Write the report folder of an :class:`~peekwidgets.session.Analysis` to ``out_dir``.

    The analysis runs what the report needs and is not run yet (its rank profile up to
    ``max_rank``, the checkpoint comparison); capture and fit were done when it was built.

    Parameters
    ----------
    out_dir : path
        Created when missing; files of an earlier report there are overwritten.
    analysis : Analysis
        The fitted analysis of a model on its inputs.
    checkpoints : list or dict, optional
        Checkpoints of the analysed model's architecture (modules, state dicts or
        :class:`~peekwidgets.demo.models.Checkpoint`), compared on the same inputs by
        :meth:`Analysis.compare_checkpoints`.
    labels : (N,) array-like, optional
        Only annotate the top inputs and add an accuracy column to the checkpoint table
        (default: the labels found in the inputs, ``analysis.labels``); never used by a
        computation.
    max_rank : int, optional
        Largest rank of the profiles: by default that of the analysis' own rank profile, or
        10 when it has none. An analysis loaded with :meth:`Analysis.load` (the fit without
        the blocks' values) is reported with the profile it holds, or without one.
    top_k : int
        Inputs per component.
    extra : dict, optional
        Merged into ``summary.json`` (for example the provenance of the model).
    class_names : sequence of str, optional
        The name of each class: integer labels ``i`` are annotated as ``class_names[i]``.

    Returns
    -------
    dict: the content of ``summary.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    given, labels = labels, analysis.labels if labels is None else np.asarray(labels)
    files: list[str] = []
    stage = _Stages(progress)
    profile = analysis.profile
    if max_rank is None:
        max_rank = 10 if profile is None else profile.max_rank
    if not analysis.holds_values and (profile is not None and profile.max_rank != max_rank
                                      or checkpoints):
        raise ValueError(
            "this analysis was loaded without its blocks' values: it can report the rank "
            f"profile it holds ({'none' if profile is None else f'R = 1..{profile.max_rank}'}"
            "), but neither compute another nor compare checkpoints; leave max_rank and "
            "checkpoints out, or run the analysis again from the model and its inputs")
    if analysis.holds_values and (profile is None or profile.max_rank != max_rank):
        with stage(f"rank profile (R = 1..{max_rank})"):
            profile = analysis.rank_profile(
                max_rank, random_state=analysis.estimator.random_state, progress=progress)
    comparison = None
    if checkpoints:
        with stage(f"compare {len(checkpoints)} checkpoints"):
            comparison = analysis.compare_checkpoints(checkpoints, labels=given,
                                                      max_rank=max_rank, progress=progress)
    view, images = analysis.view, analysis.images
    with stage("write figures"):
        _save(plot_component_map(view), out / "component_map.png", out, files)
        if view.input is not None:
            named = labels if labels is None or class_names is None else [
                class_name(v, class_names) for v in labels]
            _save(plot_top_inputs(view, images, top_k, named),
                  out / "top_inputs.png", out,
                  files)
        for old in (out / "layer_responses").glob("component_*.png"):
            old.unlink()  # of an earlier report here, perhaps of a higher rank
        for r in range(view.rank):
            _save(plot_layer_response(view, images, r),
                  out / "layer_responses" / f"component_{r}.png", out, files)
        profiles, accuracies = {"model": profile}, None
        if comparison is not None:
            profiles = dict(zip(comparison.names, comparison.profiles))
            if comparison.accuracy is not None:
                accuracies = dict(zip(comparison.names, comparison.accuracy.tolist()))
        if profile is not None:
            _save(plot_rank_profiles(profiles, accuracies, view.rank), out / "rank_profiles.png",
                  out, files)
        if comparison is not None:
            _save(plot_checkpoint_criteria(comparison), out / "checkpoint_criteria.png", out,
                  files)
        files.append(analysis.save(out / "factors.npz").relative_to(out).as_posix())
    files.append("summary.json")
    cp, index = view.estimator, analysis.sample_index
    summary = {
        "files": files,
        "n_samples": analysis.n_samples,
        "blocks": [
            {"name": b.name, "kind": b.kind, "shape": [analysis.n_samples, *b.mode_shape],
             "spatial_shape": list(b.spatial_shape) if b.spatial_shape else None}
            for b in view.blocks
        ],
        "rank": view.rank,
        "weights": _floats(view.weights),
        "fit": {name: float(v) for name, v in zip(view.names, view.block_fit)},
        "unfitted_blocks": view.unfitted,
        "shares": {name: _floats(row) for name, row in zip(view.names, view.shares)},
        "converged": bool(cp.converged_),
        "n_iter": int(cp.n_iter_),
        "problems": view.health.problems(view.rank),
        "top_inputs": {f"c{r}": (view.top(r, top_k) if index is None
                                 else index[view.top(r, top_k)]).tolist()
                       for r in range(view.rank)},
        "rank_profile": None if profile is None else _profile_summary(profile),
        "checkpoints": None if comparison is None else comparison.records(),
        "checkpoint_spearman": None if comparison is None else comparison.spearman(),
        "timings_s": {**analysis.timings, "write figures": stage.times["write figures"]},
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
    stage = _Stages(progress)
    with stage("capture inputs and layer outputs, fit the joint factorization "
               f"(rank {rank})"):
        analysis = Analysis(run.model, run.dataset(n_samples), rank=rank, progress=progress)
    return write_report(
        out_dir, analysis, checkpoints=run.checkpoints, max_rank=max_rank, top_k=top_k,
        progress=progress,
        extra={"model": "DigitsCNN", "data": "scikit-learn bundled digits (held-out split)",
               "checkpoint_accuracy": run.accuracies},
    )
