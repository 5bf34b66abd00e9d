"""Save and load a fitted :class:`~peekwidgets.engine.coupled.CoupledCP` as one ``.npz`` file.

File format (version 1), a NumPy ``.npz`` archive read with ``allow_pickle=False``:

- ``meta``: a uint8 array holding UTF-8 JSON with ``format`` (``"peekwidgets.CoupledCP"``),
  ``version`` (1), ``params`` (the estimator parameters; ``dtype`` as a string),
  ``block_names``, ``block_kinds``, ``block_shapes``, ``block_scales``, ``fit``, ``loss``,
  ``loss_history``, ``n_iter``, ``converged``, ``interrupted``.
- ``weights`` ``(rank,)``, ``A`` ``(n_samples, rank)``, ``explained_variance``
  ``(n_blocks, rank)``, and ``factor/<block index>/<k>`` for the k-th factor of each block
  (``[B]`` or ``[U, V]``), all float64.

Python floats are written by ``json`` with their shortest round-trip repr, and arrays as raw
binary, so a save/load round trip is exact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import torch

FORMAT = "peekwidgets.CoupledCP"
VERSION = 1

_PARAMS = ("rank", "nonnegative", "init", "n_init", "max_iter", "tol", "block_weights",
           "normalize", "batch_size", "device", "dtype", "random_state", "progress",
           "extrapolate")


def _param(model, name):
    value = getattr(model, name)
    if name == "dtype":
        return str(value).removeprefix("torch.")
    if name == "device":
        return None if value is None else str(value)
    if name == "init" and isinstance(value, Mapping):
        return "custom"  # initial factors are not kept; the fitted factors are
    if name == "block_weights" and value is not None and not isinstance(value, Mapping):
        return [float(v) for v in value]
    return value


def save(model, path) -> None:
    """Write a fitted model to ``path`` (a ``.npz`` file; the suffix is added if missing)."""
    model._check_fitted()
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "params": {name: _param(model, name) for name in _PARAMS},
        "block_names": model.block_names_,
        "block_kinds": model.block_kinds_,
        "block_shapes": [list(model.block_shapes_[n]) for n in model.block_names_],
        "block_scales": [model.block_scales_[n] for n in model.block_names_],
        "fit": [model.fit_[n] for n in model.block_names_],
        "loss": model.loss_,
        "loss_history": model.loss_history_,
        "n_iter": model.n_iter_,
        "converged": model.converged_,
        "interrupted": model.interrupted_,
    }
    arrays = {
        "meta": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
        "weights": model.weights_,
        "A": model.A_,
        "explained_variance": model.explained_variance_,
    }
    for i, name in enumerate(model.block_names_):
        for k, f in enumerate(model.factors_[name]):
            arrays[f"factor/{i}/{k}"] = f
    np.savez(path, **arrays)


def load(path):
    """Read a model written by :func:`save`; returns a fitted ``CoupledCP``."""
    from peekwidgets.engine.coupled import CoupledCP

    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["meta"].tobytes().decode("utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not a saved CoupledCP (format {meta.get('format')!r})")
        if meta["version"] > VERSION:
            raise ValueError(
                f"{path}: file version {meta['version']} is newer than this peekwidgets "
                f"reads ({VERSION}); upgrade peekwidgets"
            )
        params = dict(meta["params"])
        params["dtype"] = getattr(torch, params["dtype"])
        model = CoupledCP(**params)
        names = meta["block_names"]
        model.weights_ = z["weights"]
        model.A_ = z["A"]
        model.explained_variance_ = z["explained_variance"]
        model.factors_ = {
            name: [z[f"factor/{i}/{k}"] for k in range(1 if kind == "matrix" else 2)]
            for i, (name, kind) in enumerate(zip(names, meta["block_kinds"]))
        }
    model.block_names_ = names
    model.block_kinds_ = meta["block_kinds"]
    model.block_shapes_ = {n: tuple(s) for n, s in zip(names, meta["block_shapes"])}
    model.block_scales_ = dict(zip(names, meta["block_scales"]))
    model.fit_ = dict(zip(names, meta["fit"]))
    model.loss_ = meta["loss"]
    model.loss_history_ = meta["loss_history"]
    model.n_iter_ = meta["n_iter"]
    model.converged_ = meta["converged"]
    model.interrupted_ = meta["interrupted"]
    return model
