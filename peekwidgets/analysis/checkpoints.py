"""Checkpoint comparison: rank profiles and label-free baselines of several checkpoints of one
model, on the same inputs.

:func:`compare_checkpoints` loads every checkpoint into one working copy of the model (the
user's model is never changed), captures it on the same inputs with the same layers and
settings, profiles it with :func:`~peekwidgets.analysis.rank_profile`, and reads the
baselines of :mod:`~peekwidgets.analysis.baselines` from the same capture (``CRITERIA``).
Labels, where given, only add an accuracy column, for validation: the model's predictions
are read from the same batches as the capture (:class:`peekwidgets.capture.source.Source`).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torch.utils.data import DataLoader, RandomSampler, SubsetRandomSampler, WeightedRandomSampler
from tqdm.auto import tqdm

from peekwidgets.analysis.baselines import ENERGY_SHARE, energy_rank, rankme
from peekwidgets.analysis.profile import RankProfile, check_max_rank, rank_profile
from peekwidgets.capture import capture
from peekwidgets.capture.borrow import copied, float_dtype, inputs_to_device, module_device
from peekwidgets.capture.source import Source, run_model

__all__ = ["CRITERIA", "STATE_KEYS", "CheckpointComparison", "compare_checkpoints",
           "state_dict_of"]


#: The label-free criteria of a comparison, by their key in records() and spearman().
CRITERIA = {
    "score": "rank score (the paper's indicator)",
    "logits_energy_rank": f"components holding {ENERGY_SHARE:.0%} of the logits' energy",
    "rankme": "RankMe of the penultimate block",
    "first_share": "first component's share of the joint energy (fit at R = 1)",
}
#: Short column names of table().
_COLUMNS = {"score": "score", "logits_energy_rank": "logits95", "rankme": "RankMe",
            "first_share": "share1"}


@dataclass(eq=False, repr=False)
class CheckpointComparison:
    """Rank profiles and label-free baselines of several checkpoints of one architecture, on
    the same inputs.

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
    logits_energy_rank : (n_checkpoints,)
        Baseline: components holding 95% of the uncentered energy of ``logits_block``
        (NaN when there is no such block).
    rankme : (n_checkpoints,)
        Baseline: RankMe of ``penultimate_block`` (NaN when there is no such block).
    logits_block, penultimate_block : str or None
        The blocks the baselines read.
    interrupted : bool
        True when a KeyboardInterrupt stopped the comparison; the finished checkpoints are kept.

    Notes
    -----
    The first component's share (:attr:`first_shares`) falls as a network trains (its
    activations move away from a common mean), so its Spearman correlation with accuracy is
    negative where the others are positive. Figures: :mod:`peekwidgets.widgets.rank_figures`.
    """

    names: list
    profiles: list
    accuracy: np.ndarray | None
    layers: list
    logits_energy_rank: np.ndarray
    rankme: np.ndarray
    logits_block: str | None = None
    penultimate_block: str | None = None
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
    def first_shares(self) -> np.ndarray:
        """``(n_checkpoints,)`` joint fit of the first component: its share of the energy."""
        return np.array([p.fit[0] for p in self.profiles])

    @property
    def fits(self) -> np.ndarray:
        """``(n_checkpoints, max_rank)`` joint fit curves."""
        return np.stack([p.fit for p in self.profiles])

    def criteria(self) -> dict[str, np.ndarray]:
        """``{key: (n_checkpoints,)}`` of every label-free criterion (keys of ``CRITERIA``)."""
        return {"score": self.scores, "logits_energy_rank": self.logits_energy_rank,
                "rankme": self.rankme, "first_share": self.first_shares}

    def records(self) -> list[dict]:
        """One dict per checkpoint, of plain Python values (``json.dumps`` takes them):
        checkpoint, estimated_rank, the criteria (score, logits_energy_rank, rankme,
        first_share; None where not available), [accuracy], and the profile's fit and gain
        (lists, one value per rank)."""
        criteria = self.criteria()
        rows = []
        for i, (name, p) in enumerate(zip(self.names, self.profiles)):
            row = {"checkpoint": name, "estimated_rank": int(p.estimated_rank)}
            for key, values in criteria.items():
                row[key] = None if np.isnan(values[i]) else float(values[i])
            if row["logits_energy_rank"] is not None:
                row["logits_energy_rank"] = int(row["logits_energy_rank"])
            if self.accuracy is not None:
                row["accuracy"] = float(self.accuracy[i])
            rows.append({**row, "fit": p.fit.tolist(), "gain": p.gain.tolist()})
        return rows

    def spearman(self) -> dict[str, float] | None:
        """``{criterion key: Spearman correlation with accuracy}``; None without labels or
        with fewer than two checkpoints. NaN where a column is constant or unavailable."""
        if self.accuracy is None or len(self.profiles) < 2:
            return None
        return {key: _spearman(values, self.accuracy) for key, values in self.criteria().items()}

    def table(self) -> str:
        """A text table: checkpoint, estimated rank, the criteria, accuracy (when labels were
        given), and the Spearman correlation of each criterion with accuracy."""
        width = max([len("checkpoint"), *map(len, self.names)])
        head = f"{'checkpoint':<{width}}  {'rank':>4}" + "".join(
            f"  {c:>8}" for c in _COLUMNS.values())
        if self.accuracy is not None:
            head += f"  {'accuracy':>8}"
        lines = [head]
        for p, row in zip(self.profiles, self.records()):
            line = f"{row['checkpoint']:<{width}}  {row['estimated_rank']:>3}" \
                   f"{'+' if p.saturated else ' '}"
            line += "".join(f"  {_cell(row[key]):>8}" for key in _COLUMNS)
            if "accuracy" in row:
                line += f"  {row['accuracy']:8.4f}"
            lines.append(line)
        rho = self.spearman()
        if rho is not None:
            lines.append("Spearman with accuracy: " + ", ".join(
                f"{_COLUMNS[k]} {v:+.3f}" for k, v in rho.items()))
        lines.append(
            f"score: the rank indicator the paper proposed (components above the threshold of "
            f"the joint energy; it mostly follows how much energy has left the mean-like first "
            f"component, share1); logits95: {CRITERIA['logits_energy_rank']} "
            f"({self.logits_block!r}); RankMe: of the penultimate block "
            f"({self.penultimate_block!r}); share1: {CRITERIA['first_share']}.\n"
            "To rank checkpoints without labels use logits95: on checkpoint zoos it was not "
            "tuned on (the project's rank_quality benchmark) it ordered trained checkpoints at "
            "+0.62, the score at +0.26."
        )
        return "\n".join(lines)

    __str__ = table

    def __repr__(self) -> str:
        return f"CheckpointComparison({len(self.profiles)} checkpoints)\n{self.table()}"


def _cell(value) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def _spearman(values: np.ndarray, accuracy: np.ndarray) -> float:
    if np.isnan(values).any() or np.ptp(values) == 0 or np.ptp(accuracy) == 0:
        return float("nan")  # a constant or missing column has no rank correlation
    return float(spearmanr(values, accuracy)[0])


#: The ranks :func:`compare_checkpoints` profiles by default (1 to this).
COMPARED_RANKS = 20

#: Keys under which a training script's checkpoint dict holds the weights.
STATE_KEYS = ("state_dict", "model_state_dict", "model")


def state_dict_of(checkpoint, what: str = "checkpoint") -> Mapping:
    """The state dict of ``checkpoint``: a module, a state dict, a training checkpoint dict
    holding one under ``STATE_KEYS``, a :class:`peekwidgets.demo.models.Checkpoint`, or the
    path of a file holding any of these dicts (read by ``torch.load`` with
    ``weights_only=True``: a pickled model is refused, since loading it would run its code).
    ``what`` names the checkpoint in errors. The ``module.`` prefix of a state dict saved
    from a ``DataParallel`` or ``DistributedDataParallel`` model is taken off."""
    if isinstance(checkpoint, (str, os.PathLike)):
        if not Path(checkpoint).is_file():
            raise ValueError(f"{what}: no such file; pass the path of a state_dict saved with "
                             "torch.save(model.state_dict(), path)")
        try:
            checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as error:  # torch.load raises errors of many kinds
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()  # no terminal colours
            first = ("it holds pickled Python objects, not only tensors"
                     if "Weights only load failed" in text else
                     "it is not a file that torch.save wrote, or it is damaged"
                     if isinstance(error, (pickle.UnpicklingError, KeyError, EOFError)) else
                     text.splitlines()[0] if text else type(error).__name__)
            raise ValueError(
                f"{what} is not a state_dict torch can read ({first}); save the weights with "
                "torch.save(model.state_dict(), path): a whole pickled model is not loaded, "
                "since loading it would run arbitrary code") from None
    if isinstance(checkpoint, torch.nn.Module):
        return checkpoint.state_dict()
    state = getattr(checkpoint, "state_dict", checkpoint)
    if isinstance(state, Mapping) and not _tensors_only(state):
        state = next((state[k] for k in STATE_KEYS if isinstance(state.get(k), Mapping)), state)
    if isinstance(state, Mapping) and _tensors_only(state):
        if all(k.startswith("module.") for k in state):  # saved from DataParallel or DDP
            return {k[len("module."):]: v for k, v in state.items()}
        return state
    keys = f" with the keys {list(state)[:8]}" if isinstance(state, Mapping) else ""
    raise TypeError(
        f"{what} must be an nn.Module, a state dict (or a checkpoint dict holding one under "
        f"{' or '.join(map(repr, STATE_KEYS))}), the path of a file of one, or a "
        f"peekwidgets.demo.models.Checkpoint; got a {type(checkpoint).__name__}{keys}"
    )


def _tensors_only(state: Mapping) -> bool:
    return bool(state) and all(isinstance(v, torch.Tensor) for v in state.values())


def _named_checkpoints(checkpoints, names) -> tuple[list[str], list]:
    """``(names, checkpoints)``: ``names`` as given, else the dict keys, a file's stem (its
    path from the files' common folder where stems repeat), ``Checkpoint.name`` (numbered
    where it repeats) or ``"checkpoint i"``. Names must differ: they label the results."""
    if isinstance(checkpoints, Mapping):
        if _tensors_only(checkpoints):
            raise TypeError("checkpoints is a single state dict; pass a list of checkpoints "
                            "(or a {name: checkpoint} dict) to compare")
        items = [(str(n), c) for n, c in checkpoints.items()]
    elif isinstance(checkpoints, Sequence) and not isinstance(checkpoints, str):
        items = [(_path_name(c, checkpoints) if isinstance(c, (str, os.PathLike)) else
                  getattr(c, "name", None) or f"checkpoint {i}", c)
                 for i, c in enumerate(checkpoints)]
        items = [(n if [m for m, _ in items].count(n) == 1 else f"{n} ({i})", c)
                 for i, (n, c) in enumerate(items)]
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
        twice = sorted({n for n, _ in items if [m for m, _ in items].count(n) > 1})
        if twice:
            raise ValueError(f"names gives {twice} to more than one checkpoint; name each "
                             "checkpoint differently (the names label the results)")
    return [n for n, _ in items], [c for _, c in items]


def _path_name(path, checkpoints) -> str:
    """A file's stem, or its path from the common folder of the files when another file of
    ``checkpoints`` has the same stem (``runA/best`` and ``runB/best``)."""
    path = Path(path)
    files = [Path(c) for c in checkpoints if isinstance(c, (str, os.PathLike))]
    if [f.stem for f in files].count(path.stem) == 1:
        return path.stem
    same = [f.resolve() for f in files if f.stem == path.stem]
    common = Path(os.path.commonpath([f.parent for f in same]))
    return path.resolve().relative_to(common).with_suffix("").as_posix()


def _check_finite(name: str, state: Mapping):
    """Raise when a floating tensor of ``state`` holds NaN or Inf (a diverged run)."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(
            f"checkpoint {name!r} has NaN or Inf weights ({', '.join(bad[:3])}"
            f"{', ...' if len(bad) > 3 else ''}): its training diverged; leave it out")


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


@contextlib.contextmanager
def _naming(name: str):
    """Errors raised inside name the checkpoint they came from."""
    try:
        yield
    except (ValueError, TypeError, RuntimeError) as error:
        if type(error) not in (ValueError, TypeError, RuntimeError):
            raise
        raise type(error)(f"checkpoint {name!r}: {error}") from error


@torch.no_grad()
def _predictions(model: torch.nn.Module, batches: Source) -> tuple[np.ndarray, np.ndarray | None]:
    """``(n_samples,)`` argmax of the model's output over ``batches`` (for validation only),
    and the labels the same batches carry (None when they carry none)."""
    device, dtype = module_device(model), float_dtype(model)
    out, carried = [], []
    for x, label in batches:
        out.append(run_model(model, inputs_to_device(x, device, dtype)).argmax(-1).cpu())
        carried.append(label)
    labels = None if any(c is None for c in carried) else np.concatenate(carried)
    return torch.cat(out).numpy(), labels


def _shuffles(inputs) -> bool:
    """Whether ``inputs`` is a DataLoader that draws its samples in a random order."""
    if not isinstance(inputs, DataLoader):
        return False
    sampler = getattr(inputs.batch_sampler, "sampler", inputs.sampler)
    return isinstance(sampler, (RandomSampler, SubsetRandomSampler, WeightedRandomSampler))


def _check_labels(labels: np.ndarray, n_inputs: int) -> None:
    if labels.ndim != 1 or len(labels) != n_inputs:
        raise ValueError(f"labels has shape {labels.shape} for {n_inputs} inputs; pass one "
                         f"label per input, shape ({n_inputs},)")
    if labels.dtype.kind not in "iub" and not (
            labels.dtype.kind == "f" and np.array_equal(labels, np.round(labels))):
        kind = {"U": "strings", "S": "bytes", "O": "Python objects", "f": "fractions"}.get(
            labels.dtype.kind, str(labels.dtype))
        raise ValueError(
            f"labels are {kind} ({labels[:3].tolist()}, ...), and accuracy compares them with "
            "the model's argmax, a class index; pass the class indices (integers)")


def _baseline_blocks(blocks, logits_block, penultimate_block) -> tuple[str | None, str | None]:
    """The names of the blocks the baselines read: the logits (by default the last matrix
    block of a layer) and the penultimate block (by default the layer block captured just
    before the logits); the input block is neither by default.
    A named block that was not captured raises an error; a default that does not exist is None,
    with a warning."""
    names = blocks.names
    for given, what in ((logits_block, "logits_block"), (penultimate_block, "penultimate_block")):
        if given is not None and given not in names:
            raise KeyError(
                f"{what}={given!r} is not a captured block; the blocks are {names}: name one "
                f"of them, or add {given!r} to layers="
            )
    layers = [b for b in blocks if "module_type" in b.meta]  # capture's blocks but the input
    logits = logits_block
    if logits is None:
        logits = next((b.name for b in reversed(layers) if b.kind == "matrix"), None)
    penultimate = penultimate_block
    if penultimate is None and logits is not None and names.index(logits) > 0:
        before = names[names.index(logits) - 1]
        penultimate = before if before in {b.name for b in layers} else None
    missing = [what for what, name in (("logits_block", logits),
                                       ("penultimate_block", penultimate)) if name is None]
    if missing:
        warnings.warn(
            f"no block for the {' and '.join(missing)} baseline (the captured blocks are "
            f"{names}; the logits default to the last matrix block of a layer, the penultimate "
            f"block to the layer before it), so it is NaN; capture the model's last layers "
            f"(layers='auto' does), or pass {missing[0]}='<block name>'",
            RuntimeWarning, stacklevel=3,
        )
    return logits, penultimate


def compare_checkpoints(
    model,
    checkpoints,
    inputs,
    *,
    labels=None,
    layers="auto",
    names=None,
    max_rank: int = COMPARED_RANKS,
    logits_block: str | None = None,
    penultimate_block: str | None = None,
    capture_kwargs: dict | None = None,
    progress: bool = True,
    model_profile: RankProfile | None = None,
    **profile_kwargs,
) -> CheckpointComparison:
    """Rank profiles and label-free baselines of several checkpoints of one architecture, on
    the same inputs.

    Every checkpoint is loaded into one working copy of the model (the user's model is never
    changed), captured with the same layers and settings, and profiled with the same settings.
    Next to the rank indicator, each checkpoint gets the label-free baselines of
    :mod:`peekwidgets.analysis.baselines` (see ``CRITERIA``).

    Parameters
    ----------
    model : nn.Module or callable
        A model of the architecture (deep-copied, never modified) or a function returning one.
    checkpoints : list or {name: checkpoint}
        Modules, state dicts, training checkpoint dicts, file paths or
        :class:`peekwidgets.demo.models.Checkpoint` objects (see :func:`state_dict_of`), all of
        the architecture of ``model``; a file is named by its stem.
    inputs
        Whatever :func:`peekwidgets.capture.capture` takes (tensor, Dataset, DataLoader, list
        of batches, ...), except a one-shot iterator: it is read once per checkpoint.
    labels : array-like of shape (n_samples,) or "inputs", optional
        Keyword only. Adds an accuracy column, for validation; it never enters a criterion.
        The model's predictions are read from the same batches as the capture. ``"inputs"``:
        the labels that the batches of each pass carry (the only choice for a DataLoader
        that shuffles, whose every pass has its own order).
    layers : "auto", str, type, or list
        As in :func:`peekwidgets.capture.capture`.
    names : list of str, optional
        Checkpoint names (default: the dict keys, ``Checkpoint.name`` or ``"checkpoint i"``).
    max_rank : int
        Largest rank profiled.
    logits_block : str, optional
        The block read as the logits (default: the last matrix block).
    penultimate_block : str, optional
        The block RankMe reads (default: the block captured just before the logits).
    capture_kwargs : dict, optional
        Extra arguments of ``capture`` (``input_fn``, ``batch_size``, ``device``, ...).
    progress : bool
        Show a progress bar over checkpoints.
    model_profile : RankProfile, optional
        The profile of ``model`` itself on these inputs, computed with the same layers and
        settings; a checkpoint whose weights equal the model's reuses it instead of being
        profiled again (for example the final checkpoint of a training run). It is still
        captured, for its baselines.
    **profile_kwargs
        Extra arguments of :func:`rank_profile` (``center``, ``threshold``, ``model``, ...).

    Returns
    -------
    CheckpointComparison
        Stops cleanly on KeyboardInterrupt and keeps the checkpoints already profiled.
    """
    max_rank = check_max_rank(max_rank)
    if isinstance(model, torch.nn.Module):
        work = copied(model, "pass a function that builds the model instead (model=MyNet)")
    elif callable(model):
        work = model()
        if not isinstance(work, torch.nn.Module):
            raise TypeError(f"the model factory returned a {type(work).__name__}, "
                            "expected an nn.Module")
    else:
        raise TypeError(f"model must be an nn.Module or a function returning one, "
                        f"got {type(model).__name__}")
    names, checkpoints = _named_checkpoints(checkpoints, names)
    states = [state_dict_of(c, f"checkpoint {n!r}") for n, c in zip(names, checkpoints)]
    model_state = None
    if model_profile is not None:
        if not isinstance(model, torch.nn.Module):
            raise ValueError("model_profile is the profile of the model itself; pass that "
                             "model (not a factory) as model, or leave it out")
        if model_profile.max_rank != max_rank:
            raise ValueError(f"model_profile has max_rank {model_profile.max_rank}, the "
                             f"comparison max_rank {max_rank}; profile with the same settings")
        model_state = model.state_dict()
    for name, c, state in zip(names, checkpoints, states):
        _check_architecture(name, c, state, work)
        _check_finite(name, state)
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
    source = dict(batch_size=capture_kwargs.get("batch_size"),
                  input_fn=capture_kwargs.get("input_fn"))
    from_inputs = isinstance(labels, str) and labels == "inputs"
    if labels is not None and not from_inputs:
        labels = np.asarray(labels)
        n_rows = Source(inputs, **source).n_rows  # None when the inputs do not say
        if n_rows is not None:
            _check_labels(labels, n_rows)
        if _shuffles(inputs):
            raise ValueError(
                "inputs is a DataLoader that shuffles: each pass sees the samples in another "
                "order, so labels cannot be matched with the predictions; pass "
                "labels='inputs' (the labels each pass carries) or a DataLoader with "
                "shuffle=False")
    scored = labels is not None

    profiles, accuracy, energy, effective, interrupted = [], [], [], [], False
    captured, logits, penultimate = [], None, None
    try:
        for name, state in tqdm(zip(names, states), total=len(states), desc="checkpoints",
                                disable=not progress):
            with _naming(name):
                work.load_state_dict(state)
                work.eval()
                blocks = capture(work, inputs, layers, progress=False, **capture_kwargs)
                if not captured:
                    captured = blocks.names
                    logits, penultimate = _baseline_blocks(blocks, logits_block, penultimate_block)
                if model_state is not None and _same_state(state, model_state):
                    profile = model_profile
                else:
                    profile = rank_profile(blocks, max_rank, progress=False, **profile_kwargs)
                row = [profile, np.nan if logits is None else energy_rank(blocks[logits]),
                       np.nan if penultimate is None else rankme(blocks[penultimate])]
                del blocks
                if scored:
                    # the batches capture read
                    pred, carried = _predictions(work, Source(inputs, **source))
                    truth = carried if from_inputs else labels
                    if truth is None:
                        raise ValueError("labels='inputs', but the inputs carry no labels; pass "
                                         "labels=... (one per sample) or leave labels out")
                    _check_labels(truth, len(pred))
                    row.append(float(np.mean(pred == truth)))
            for column, value in zip((profiles, energy, effective, accuracy), row):
                column.append(value)
    except KeyboardInterrupt:
        interrupted = True
        warnings.warn(f"comparison interrupted after {len(profiles)} of {len(names)} "
                      "checkpoints; keeping those", RuntimeWarning, stacklevel=2)
    if not profiles:
        raise KeyboardInterrupt("comparison interrupted before the first checkpoint finished")
    return CheckpointComparison(
        names[: len(profiles)], profiles, np.array(accuracy) if scored else None,
        captured, np.array(energy, dtype=float), np.array(effective, dtype=float),
        logits, penultimate, interrupted)
