"""The peekwidgets factors file: estimator parameters and fitted values in one ``.npz`` archive.

This module is the file format only: it reads and writes a parameters dict and the fitted
attributes (:data:`FITTED`) of an estimator, and validates what it reads. The estimator
(:class:`~peekwidgets.engine.CoupledCP`) builds itself from them.

File format (version 2), a NumPy ``.npz`` archive read with ``allow_pickle=False``:

- ``meta``: a uint8 array holding UTF-8 JSON with ``format`` (``"peekwidgets.CoupledCP"``),
  ``version`` (an integer), ``params`` (the estimator parameters: ``dtype`` as a string such as
  ``"float32"``, ``device`` as a string or null, and ``init`` either ``"svd"`` / ``"random"`` or
  ``{"blocks": [names], "n_factors": [1 or 2 per block]}`` when initial factors were given),
  ``block_names``, ``block_kinds``, ``block_shapes``, ``block_scales``, ``fit``, ``loss``,
  ``loss_history``, ``n_iter``, ``converged``, ``interrupted``.
- float64 arrays ``weights`` ``(rank,)``, ``A`` ``(n_samples, rank)``, ``explained_variance``
  ``(n_blocks, rank)``, ``factor/<block index>/<k>`` for the k-th factor of each block (``[B]``
  or ``[U, V]``) and ``init/<init block index>/<k>`` for the initial factors.

Version 1 differs in ``init`` only: initial factors were not kept (``"custom"``). Such a file
reads back with the fitted factors as ``init`` (a warm start), so that ``fit`` works again.

Python floats are written by ``json`` with their shortest round-trip repr, and arrays as raw
binary, so a save/load round trip is exact.
"""

from __future__ import annotations

import json
import numbers
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

__all__ = ["FITTED", "FORMAT", "VERSION", "npz_path", "read", "write"]

FORMAT = "peekwidgets.CoupledCP"
VERSION = 2

#: Fitted attributes kept in the file, as the estimator names them.
FITTED = ("weights_", "A_", "factors_", "explained_variance_", "block_names_", "block_kinds_",
          "block_shapes_", "block_scales_", "fit_", "loss_", "loss_history_", "n_iter_",
          "converged_", "interrupted_", "negative_share_")

#: Fitted attributes held in ``meta`` (the others are arrays): their JSON key and type.
_META = {"block_names": list, "block_kinds": list, "block_shapes": list, "block_scales": list,
         "fit": list, "loss": numbers.Real, "loss_history": list, "n_iter": numbers.Integral,
         "converged": bool, "interrupted": bool}

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_HINT = "CoupledCP.load reads the .npz files that CoupledCP.save writes"


def npz_path(path) -> Path:
    """``path`` with ``.npz`` appended unless it ends with it (as ``numpy.savez`` does)."""
    path = Path(path)
    return path if str(path).endswith(".npz") else path.with_name(path.name + ".npz")


# ------------------------------------------------------------------------------------- write
def _json_value(name, value):
    """A parameter value as JSON (numpy scalars as Python numbers)."""
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, numbers.Real, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_value(name, v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray, torch.Tensor)):
        return [_json_value(name, v) for v in np.asarray(value, dtype=np.float64).tolist()]
    raise TypeError(
        f"cannot save parameter {name}={value!r}: expected None, a number, a string, a list "
        "or a dict of them"
    )


def _encode_params(params: dict) -> tuple[dict, dict]:
    """JSON parameters and the arrays of the initial factors."""
    out, arrays = {}, {}
    for name, value in params.items():
        if name == "dtype":
            out[name] = str(value).removeprefix("torch.")
        elif name == "device":
            out[name] = None if value is None else str(value)
        elif name == "random_state" and isinstance(value, (np.random.RandomState,
                                                           np.random.Generator)):
            out[name] = None  # its state is not kept: a refit of the loaded model draws anew
        elif name == "init" and isinstance(value, Mapping):
            names = list(value)
            out[name] = {"blocks": [str(n) for n in names],
                         "n_factors": [len(value[n]) for n in names]}
            for i, n in enumerate(names):
                for k, f in enumerate(value[n]):
                    arrays[f"init/{i}/{k}"] = np.asarray(f, dtype=np.float64)
        else:
            out[name] = _json_value(name, value)
    return out, arrays


def write(path, params: dict, fitted: dict) -> Path:
    """Write parameters and fitted attributes to ``path`` (``.npz`` appended if missing).

    Parameters
    ----------
    path : str or Path
    params : dict
        The estimator's ``get_params()``.
    fitted : dict
        Fitted attribute name -> value, for every name in :data:`FITTED`.

    Returns
    -------
    Path
        The file written.
    """
    names = fitted["block_names_"]
    json_params, arrays = _encode_params(params)
    meta = {"format": FORMAT, "version": VERSION, "params": json_params,
            "block_names": list(names), "block_kinds": list(fitted["block_kinds_"]),
            "block_shapes": [list(fitted["block_shapes_"][n]) for n in names],
            "block_scales": [fitted["block_scales_"][n] for n in names],
            "fit": [fitted["fit_"][n] for n in names],
            "loss": fitted["loss_"], "loss_history": list(fitted["loss_history_"]),
            "n_iter": fitted["n_iter_"], "converged": fitted["converged_"],
            "interrupted": fitted["interrupted_"],
            "negative_share": dict(fitted["negative_share_"])}
    arrays.update(meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
                  weights=fitted["weights_"], A=fitted["A_"],
                  explained_variance=fitted["explained_variance_"])
    for i, name in enumerate(names):
        for k, f in enumerate(fitted["factors_"][name]):
            arrays[f"factor/{i}/{k}"] = f
    path = npz_path(path)
    np.savez(path, **arrays)
    return path


# -------------------------------------------------------------------------------------- read
class _NotFactors(Exception):
    """What was found instead of a factors file (turned into the user's ValueError)."""


def _existing(path) -> Path:
    """The file to read: ``path``, else ``path.npz`` (what :func:`write` wrote for ``path``)."""
    given, npz = Path(path), npz_path(path)
    for candidate in dict.fromkeys((given, npz)):
        if candidate.is_file():
            return candidate
    tried = f"{given}" if npz == given else f"{given} (nor {npz})"
    raise FileNotFoundError(f"no peekwidgets factors file {tried}; check the path")


def _describe(head: bytes, size: int) -> str:
    """What a file that is not a zip archive holds, from its first bytes."""
    if not head:
        return "the file is empty"
    if head.startswith(b"\x93NUMPY"):
        return "found a single NumPy array (.npy), not an .npz archive"
    if head[0] == 0x80 and 2 <= head[1] <= 5:
        return "found pickled Python data (pickle or an old torch.save)"
    text = head.decode("utf-8", errors="ignore")
    if len(text) >= 0.9 * len(head) and all(c.isprintable() or c.isspace() for c in text):
        return f"found text starting {text[:40]!r}"
    return f"found {size} bytes of unrecognized data starting {head[:8]!r}"


def _entries(z) -> dict:
    """The arrays of an open ``.npz`` archive, checked to be numbers."""
    arrays = {}
    for name in z.files:
        try:
            arrays[name] = z[name]
        except ValueError:  # numpy refuses object arrays without allow_pickle
            raise _NotFactors(f"array {name!r} holds Python objects") from None
        if arrays[name].dtype.kind not in "biuf":
            raise _NotFactors(f"array {name!r} has dtype {arrays[name].dtype}")
    return arrays


def _open(path: Path) -> tuple[dict, dict]:
    """``(meta, arrays)`` of a factors archive, checked to be JSON of this format."""
    with open(path, "rb") as f:
        head = f.read(64)
    if not head.startswith(_ZIP_MAGIC):
        raise _NotFactors(_describe(head, path.stat().st_size))
    try:
        with np.load(path, allow_pickle=False) as z:
            if "meta" not in z.files:
                if any(n.endswith("data.pkl") for n in z.files):
                    raise _NotFactors("found a PyTorch file (torch.save)")
                raise _NotFactors(f"found a zip archive with entries {sorted(z.files)[:6]} "
                                  "and no 'meta'")
            arrays = _entries(z)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise _NotFactors(f"a truncated or damaged zip archive: {e}") from None
    raw = arrays.pop("meta")
    try:
        meta = json.loads(raw.astype(np.uint8).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _NotFactors("its 'meta' is not JSON text") from None
    if not isinstance(meta, dict):
        raise _NotFactors(f"its 'meta' is a JSON {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT:
        raise _NotFactors(f"format {meta.get('format')!r}, expected {FORMAT!r}")
    if "version" not in meta:
        raise _NotFactors("its 'meta' has no 'version'")
    version = meta["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _NotFactors(f"version {version!r}, expected an integer from 1 to {VERSION}")
    return meta, arrays


def _check(meta: dict, arrays: dict) -> None:
    """Every entry of the format present, with consistent types and shapes."""
    for key, kind in _META.items():
        if key not in meta:
            raise _NotFactors(f"its 'meta' has no {key!r}")
        if not isinstance(meta[key], kind):
            raise _NotFactors(f"{key!r} is {meta[key]!r}, expected a {kind.__name__}")
    if not isinstance(meta.get("params"), dict):
        raise _NotFactors("its 'meta' has no 'params' object")
    n_blocks = len(meta["block_names"])
    if not n_blocks:
        raise _NotFactors("no blocks")
    for key in ("block_kinds", "block_shapes", "block_scales", "fit"):
        if len(meta[key]) != n_blocks:
            raise _NotFactors(f"{len(meta[key])} {key} for {n_blocks} blocks")
    weights = arrays.get("weights")
    if weights is None or weights.ndim != 1:
        raise _NotFactors("no 1-D array 'weights'")
    rank = len(weights)
    want = {"explained_variance": (n_blocks, rank)}
    for i, (kind, shape) in enumerate(zip(meta["block_kinds"], meta["block_shapes"])):
        ndim = {"matrix": 2, "tensor": 3}.get(kind)
        if not (isinstance(shape, list) and len(shape) == ndim
                and all(isinstance(d, int) and d > 0 for d in shape)):
            raise _NotFactors(f"block {i} is a {kind!r} of shape {shape!r}")
        want.update({f"factor/{i}/{k}": (d, rank) for k, d in enumerate(shape[1:])})
    want["A"] = (meta["block_shapes"][0][0], rank)
    for name, shape in want.items():
        if name not in arrays:
            raise _NotFactors(f"no array {name!r}")
        if arrays[name].shape != shape:
            raise _NotFactors(f"array {name!r} has shape {arrays[name].shape}, expected {shape}")


def _decode_params(meta: dict, arrays: dict, factors: dict, weights: np.ndarray) -> dict:
    """Estimator parameters from their JSON form (``dtype`` a torch dtype, ``init`` usable)."""
    params = dict(meta["params"])
    dtype = getattr(torch, str(params.get("dtype")), None)
    if not isinstance(dtype, torch.dtype):
        raise _NotFactors(f"dtype {params.get('dtype')!r}, expected 'float32' or 'float64'")
    params["dtype"] = dtype
    init = params.get("init")
    if isinstance(init, dict):
        try:
            params["init"] = {name: [arrays[f"init/{i}/{k}"] for k in range(n)]
                              for i, (name, n) in enumerate(zip(init["blocks"],
                                                                init["n_factors"]))}
        except (KeyError, TypeError):
            raise _NotFactors(f"init {init!r} without its arrays init/<block>/<k>") from None
    elif init == "custom" and meta["version"] == 1:  # initial factors not kept: warm start
        params["init"] = {name: fs[:-1] + [fs[-1] * weights] for name, fs in factors.items()}
    return params


def read(path) -> tuple[Path, dict, dict]:
    """Read a factors file written by :func:`write`.

    Parameters
    ----------
    path : str or Path
        The file; ``path.npz`` when ``path`` itself does not exist.

    Returns
    -------
    path : Path
        The file read.
    params : dict
        Estimator parameters (``dtype`` a ``torch.dtype``; ``init`` a string or a dict of
        initial block factors).
    fitted : dict
        Fitted attribute name -> value, for every name in :data:`FITTED`.

    Raises
    ------
    FileNotFoundError
        When neither ``path`` nor ``path.npz`` exists.
    ValueError
        ``"PATH is not a peekwidgets factors file (what was found)"``, or a file of a newer
        version than this peekwidgets reads.
    """
    path = _existing(path)
    try:
        meta, arrays = _open(path)
        if meta["version"] > VERSION:
            raise ValueError(
                f"{path} is a peekwidgets factors file of version {meta['version']}, newer than "
                f"this peekwidgets reads ({VERSION}); upgrade peekwidgets"
            )
        _check(meta, arrays)
        names, kinds = meta["block_names"], meta["block_kinds"]
        factors = {name: [arrays[f"factor/{i}/{k}"] for k in range(1 if kind == "matrix" else 2)]
                   for i, (name, kind) in enumerate(zip(names, kinds))}
        params = _decode_params(meta, arrays, factors, arrays["weights"])
    except _NotFactors as e:
        raise ValueError(f"{path} is not a peekwidgets factors file ({e}); {_HINT}") from None
    fitted = {
        "weights_": arrays["weights"], "A_": arrays["A"], "factors_": factors,
        "explained_variance_": arrays["explained_variance"], "block_names_": names,
        "block_kinds_": kinds,
        "block_shapes_": {n: tuple(s) for n, s in zip(names, meta["block_shapes"])},
        "block_scales_": dict(zip(names, meta["block_scales"])),
        "fit_": dict(zip(names, meta["fit"])), "loss_": meta["loss"],
        "loss_history_": meta["loss_history"], "n_iter_": meta["n_iter"],
        "converged_": meta["converged"], "interrupted_": meta["interrupted"],
        "negative_share_": dict(meta.get("negative_share", {})),  # files before it: none
    }
    return path, params, fitted
