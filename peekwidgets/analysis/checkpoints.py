"""Checkpoint comparison: rank profiles of several checkpoints of one model, on the same inputs.

:func:`compare_checkpoints` loads every checkpoint into one working copy of the model (the
user's model is never changed), captures it on the same inputs with the same layers and
settings, and profiles it with :func:`~peekwidgets.analysis.rank_profile`. Labels, where
given, only add an accuracy column; the model reads them from the same batches that capture
reads (:class:`peekwidgets.capture.source.Source`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr
from tqdm.auto import tqdm

from peekwidgets.analysis.profile import RankProfile, check_max_rank, rank_profile
from peekwidgets.capture import capture
from peekwidgets.capture.source import Source

__all__ = ["CheckpointComparison", "compare_checkpoints"]


@dataclass(eq=False, repr=False)
class CheckpointComparison:
    """Rank profiles of several checkpoints of one architecture on the same inputs.

    Attributes
    ----------
    names : list of str
        Checkpoint names, in the order given.
    profiles : list of RankProfile
        One profile per checkpoint, all with the same capture and settings.
    accuracy : (n_checkpoints,) or None
        Accuracy on ``labels`` when labels were passed; validation only, never part of a score.
    layers : list of str
        The captured blocks.
    interrupted : bool
        True when a KeyboardInterrupt stopped the comparison; the finished checkpoints are kept.
    """

    names: list
    profiles: list
    accuracy: np.ndarray | None
    layers: list
    interrupted: bool = False

    @property
    def estimated_ranks(self) -> np.ndarray:
        """``(n_checkpoints,)`` estimated rank of each checkpoint."""
        return np.array([p.estimated_rank for p in self.profiles])

    @property
    def scores(self) -> np.ndarray:
        """``(n_checkpoints,)`` indicator score of each checkpoint (higher: more components)."""
        return np.array([p.score for p in self.profiles])

    @property
    def fits(self) -> np.ndarray:
        """``(n_checkpoints, max_rank)`` joint fit curves."""
        return np.stack([p.fit for p in self.profiles])

    def records(self) -> list[dict]:
        """One dict per checkpoint: checkpoint, estimated_rank, score, [accuracy], fit, gain."""
        rows = []
        for i, (name, p) in enumerate(zip(self.names, self.profiles)):
            row = {"checkpoint": name, "estimated_rank": p.estimated_rank, "score": p.score}
            if self.accuracy is not None:
                row["accuracy"] = float(self.accuracy[i])
            rows.append({**row, "fit": p.fit, "gain": p.gain})
        return rows

    def spearman(self) -> float | None:
        """Spearman correlation of the score with accuracy (None without labels)."""
        if self.accuracy is None or len(self.profiles) < 2:
            return None
        accuracy = self.accuracy[: len(self.profiles)]
        if np.ptp(self.scores) == 0 or np.ptp(accuracy) == 0:
            return float("nan")  # a constant column has no rank correlation
        return float(spearmanr(self.scores, accuracy)[0])

    def table(self) -> str:
        """A text table: checkpoint, estimated rank, score, accuracy (when labels were given)."""
        width = max([len("checkpoint"), *map(len, self.names)])
        head = f"{'checkpoint':<{width}}  {'rank':>4}  {'score':>6}"
        if self.accuracy is not None:
            head += f"  {'accuracy':>8}"
        lines = [head]
        for row in self.records():
            sat = "+" if self.profiles[len(lines) - 1].saturated else " "
            line = f"{row['checkpoint']:<{width}}  {row['estimated_rank']:>3}{sat}  " \
                   f"{row['score']:6.2f}"
            if "accuracy" in row:
                line += f"  {row['accuracy']:8.4f}"
            lines.append(line)
        rho = self.spearman()
        if rho is not None:
            lines.append(f"Spearman(score, accuracy) = {rho:+.3f}")
        return "\n".join(lines)

    __str__ = table

    def __repr__(self) -> str:
        return f"CheckpointComparison({len(self.profiles)} checkpoints)\n{self.table()}"


def _state_of(checkpoint):
    """The state dict of a checkpoint given as a module, a state dict or a models.Checkpoint."""
    if isinstance(checkpoint, torch.nn.Module):
        return checkpoint.state_dict()
    state = getattr(checkpoint, "state_dict", checkpoint)
    if isinstance(state, Mapping) and all(isinstance(v, torch.Tensor) for v in state.values()):
        return state
    raise TypeError(
        f"a checkpoint must be an nn.Module, a state dict or a peekwidgets.demo.models.Checkpoint, "
        f"got {type(checkpoint).__name__}"
    )


def _named_checkpoints(checkpoints, names) -> tuple[list[str], list]:
    if isinstance(checkpoints, Mapping):
        if checkpoints and all(isinstance(v, torch.Tensor) for v in checkpoints.values()):
            raise TypeError("checkpoints is a single state dict; pass a list of checkpoints "
                            "(or a {name: checkpoint} dict) to compare")
        items = list(checkpoints.items())
    elif isinstance(checkpoints, Sequence) and not isinstance(checkpoints, str):
        items = [(getattr(c, "name", None) or f"checkpoint {i}", c)
                 for i, c in enumerate(checkpoints)]
    else:
        raise TypeError(f"checkpoints must be a list or a {{name: checkpoint}} dict, got "
                        f"{type(checkpoints).__name__}")
    if not items:
        raise ValueError("no checkpoints to compare; pass at least one")
    if names is not None:
        if len(names) != len(items):
            raise ValueError(f"names has {len(names)} entries for {len(items)} checkpoints; "
                             "pass one name per checkpoint")
        items = [(str(n), c) for n, (_, c) in zip(names, items)]
    return [str(n) for n, _ in items], [c for _, c in items]


def _same_state(state: Mapping, reference: Mapping) -> bool:
    """True when two state dicts hold the same names and exactly equal tensors."""
    return state.keys() == reference.keys() and all(
        torch.equal(state[k].to(reference[k].device), reference[k]) for k in reference
    )


def _check_architecture(name: str, checkpoint, state, template: torch.nn.Module):
    """Raise a clear error when ``checkpoint`` does not fit ``template``'s architecture."""
    if isinstance(checkpoint, torch.nn.Module) and type(checkpoint) is not type(template):
        raise ValueError(
            f"checkpoint {name!r} is a {type(checkpoint).__name__}, the model is a "
            f"{type(template).__name__}; compare checkpoints of one architecture only"
        )
    ref = template.state_dict()
    missing, extra = sorted(set(ref) - set(state)), sorted(set(state) - set(ref))
    shapes = {k: (tuple(state[k].shape), tuple(ref[k].shape)) for k in set(ref) & set(state)
              if tuple(state[k].shape) != tuple(ref[k].shape)}
    if missing or extra or shapes:
        parts = [f"missing {missing[:5]}" if missing else "",
                 f"unexpected {extra[:5]}" if extra else "",
                 f"shapes (checkpoint, model) {dict(sorted(shapes.items())[:5])}" if shapes else ""]
        raise ValueError(
            f"checkpoint {name!r} does not fit the architecture of the model "
            f"({type(template).__name__}): {'; '.join(p for p in parts if p)}; compare "
            "checkpoints of one architecture only, with a model (or factory) of that architecture"
        )


@torch.no_grad()
def _predictions(model: torch.nn.Module, batches: Source) -> np.ndarray:
    """``(n_samples,)`` argmax of the model's output over ``batches`` (for validation only)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    out = [model(x.to(device=device, dtype=dtype if x.is_floating_point() else x.dtype))
           .argmax(-1).cpu() for x, _ in batches]
    return torch.cat(out).numpy()


def compare_checkpoints(
    model_or_factory,
    checkpoints,
    inputs,
    layers="auto",
    labels=None,
    *,
    names=None,
    max_rank: int = 20,
    capture_kwargs: dict | None = None,
    progress: bool = True,
    model_profile: RankProfile | None = None,
    **profile_kwargs,
) -> CheckpointComparison:
    """Rank profiles of several checkpoints of one architecture, on the same inputs.

    Every checkpoint is loaded into one working copy of the model (the user's model is never
    changed), captured with the same layers and settings, and profiled with the same settings.

    Parameters
    ----------
    model_or_factory : nn.Module or callable
        A model of the architecture (deep-copied, never modified) or a function returning one.
    checkpoints : list or {name: checkpoint}
        Modules, state dicts or :class:`peekwidgets.demo.models.Checkpoint` objects, all of the
        architecture of ``model_or_factory``.
    inputs
        Whatever :func:`peekwidgets.capture.capture` takes (tensor, Dataset, DataLoader, ...).
    layers : "auto", str, type, or list
        As in :func:`peekwidgets.capture.capture`.
    labels : array-like of shape (n_samples,), optional
        Only adds an accuracy column, for validation; it never enters the indicator.
    names : list of str, optional
        Checkpoint names (default: the dict keys, ``Checkpoint.name`` or ``"checkpoint i"``).
    max_rank : int
        Largest rank profiled.
    capture_kwargs : dict, optional
        Extra arguments of ``capture`` (``input_fn``, ``batch_size``, ``device``, ...).
    progress : bool
        Show a progress bar over checkpoints.
    model_profile : RankProfile, optional
        The profile of ``model_or_factory`` itself on these inputs, computed with the same
        layers and settings; a checkpoint whose weights equal the model's reuses it instead of
        being captured and profiled again (for example the final checkpoint of a training run).
    **profile_kwargs
        Extra arguments of :func:`rank_profile` (``center``, ``threshold``, ``model``, ...).

    Returns
    -------
    CheckpointComparison
        Stops cleanly on KeyboardInterrupt and keeps the checkpoints already profiled.
    """
    max_rank = check_max_rank(max_rank)
    if isinstance(model_or_factory, torch.nn.Module):
        work = copy.deepcopy(model_or_factory)
    elif callable(model_or_factory):
        work = model_or_factory()
        if not isinstance(work, torch.nn.Module):
            raise TypeError(f"the model factory returned a {type(work).__name__}, "
                            "expected an nn.Module")
    else:
        raise TypeError(f"model_or_factory must be an nn.Module or a function returning one, "
                        f"got {type(model_or_factory).__name__}")
    names, checkpoints = _named_checkpoints(checkpoints, names)
    states = [_state_of(c) for c in checkpoints]
    model_state = None
    if model_profile is not None:
        if not isinstance(model_or_factory, torch.nn.Module):
            raise ValueError("model_profile is the profile of the model itself; pass that "
                             "model (not a factory) as model_or_factory, or leave it out")
        if model_profile.max_rank != max_rank:
            raise ValueError(f"model_profile has max_rank {model_profile.max_rank}, the "
                             f"comparison max_rank {max_rank}; profile with the same settings")
        model_state = model_or_factory.state_dict()
    for name, c, state in zip(names, checkpoints, states):
        _check_architecture(name, c, state, work)
    capture_kwargs = dict(capture_kwargs or {})
    for key in ("label_fn", "progress"):
        if key in capture_kwargs:
            raise ValueError(f"capture_kwargs may not set {key!r}; compare_checkpoints sets "
                             "it, leave it out")
    if isinstance(inputs, Iterator):
        raise TypeError(
            f"inputs is an iterator ({type(inputs).__name__}), which can be read only once; "
            "compare_checkpoints reads the inputs once per checkpoint: pass a tensor, Dataset, "
            "DataLoader or a list of batches"
        )
    labels = None if labels is None else np.asarray(labels)
    source = dict(batch_size=capture_kwargs.get("batch_size"),
                  input_fn=capture_kwargs.get("input_fn"))

    profiles, accuracy, captured, interrupted = [], [], [], False
    try:
        for state in tqdm(states, desc="checkpoints", disable=not progress):
            work.load_state_dict(state)
            work.eval()
            if model_state is not None and _same_state(state, model_state):
                profile = model_profile
            else:
                blocks = capture(work, inputs, layers, progress=False, **capture_kwargs)
                profile = rank_profile(blocks, max_rank, progress=False, **profile_kwargs)
                del blocks
            profiles.append(profile)
            captured = profile.block_names
            if labels is not None:
                pred = _predictions(work, Source(inputs, **source))  # capture's batches
                if len(pred) != len(labels):
                    raise ValueError(f"labels has {len(labels)} entries for {len(pred)} "
                                     "inputs; pass one label per input")
                accuracy.append(float(np.mean(pred == labels)))
    except KeyboardInterrupt:
        interrupted = True
        warnings.warn(f"comparison interrupted after {len(profiles)} of {len(names)} "
                      "checkpoints; keeping those", RuntimeWarning, stacklevel=2)
    if not profiles:
        raise KeyboardInterrupt("comparison interrupted before the first checkpoint finished")
    return CheckpointComparison(names[: len(profiles)], profiles,
                                None if labels is None else np.array(accuracy), captured,
                                interrupted)
