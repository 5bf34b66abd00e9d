"""The saved analysis folder: what the views draw of an :class:`~peekwidgets.session.Analysis`,
without the model or the blocks' values.

:meth:`Analysis.dump(folder) <peekwidgets.session.Analysis.dump>` writes, and
:meth:`Analysis.load(folder) <peekwidgets.session.Analysis.load>` reads back:

- ``factors.npz``: the fit (:meth:`CoupledCP.save`), with ``A`` of the samples the view holds;
- ``samples.npz``: the rows kept of those samples: ``block/<name>`` for the input block (when
  it is drawn as it is) and the prediction block (:func:`~peekwidgets.viewmodel.
  prediction_block`), ``thumbnails`` of a pooled input, ``labels``, and ``index`` (their
  global indices) when they are not all the samples in order;
- ``profile.npz``: the arrays of the rank profile, when there is one;
- ``analysis.json``: the format and version, ``n_samples``, ``sample_shape``, every block's
  name, mode shape, spatial shape, squared norm and meta, the thumbnails' layout, the inputs'
  ``mean``/``std``, the timings and the rank profile's other fields.

Every other block comes back as a placeholder (:func:`~peekwidgets.gather.placeholder`) with
its layout and norm, so the dashboard (``Peek(Analysis.load(folder))``) and the report show
the same view; :meth:`~peekwidgets.session.Analysis.refit` and ``rank_profile`` say that they
need the blocks' values. Inputs folded in with ``fold_in`` are not kept. Arrays are read
with ``allow_pickle=False``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from peekwidgets.analysis.profile import RankProfile
from peekwidgets.blocks import Block, Blocks
from peekwidgets.engine import CoupledCP
from peekwidgets.gather import display_meta, drawn, placeholder

__all__ = ["FORMAT", "VERSION", "dump", "load"]

FORMAT = "peekwidgets.Analysis"
VERSION = 1


def _json(value):
    """``value`` as JSON (tuples and arrays as lists, numpy scalars as numbers)."""
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def _tuples(value):
    """Lists read back from JSON as the tuples the blocks' meta held."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _layout(block: Block) -> dict:
    meta = display_meta(block.meta)
    return {"name": block.name, "mode_shape": list(block.mode_shape),
            "spatial_shape": block.spatial_shape, "sq_norm": block.norm() ** 2,
            "meta": _json(meta)}


def _labels(labels: np.ndarray) -> np.ndarray:
    return labels.astype(str) if labels.dtype == object else labels


def dump(analysis, folder) -> Path:
    """Write the view of ``analysis`` into ``folder`` (created when missing); returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    view = analysis.view
    blocks = view.blocks
    view.estimator.save(folder / "factors.npz")
    arrays = {f"block/{name}": blocks[name].numpy() for name in drawn(blocks)}
    if blocks.thumbnails is not None:
        arrays["thumbnails"] = blocks.thumbnails.rows(
            slice(None), "cpu", blocks.thumbnails.data.dtype).numpy()
    if blocks.labels is not None:
        arrays["labels"] = _labels(blocks.labels)
    if analysis.sample_index is not None:
        arrays["index"] = np.asarray(analysis.sample_index)
    np.savez(folder / "samples.npz", **arrays)
    profile = None
    if analysis.profile is not None:
        fields = dataclasses.asdict(analysis.profile)
        cc = fields.pop("core_consistency") or {}
        np.savez(folder / "profile.npz",
                 **{k: v for k, v in fields.items() if isinstance(v, np.ndarray)},
                 **{f"core_consistency/{k}": v for k, v in cc.items()})
        profile = {k: _json(v) for k, v in fields.items() if not isinstance(v, np.ndarray)}
        profile["core_consistency"] = sorted(cc) if analysis.profile.core_consistency else None
    mean, std = analysis.images.mean, analysis.images.std
    meta = {
        "format": FORMAT, "version": VERSION, "n_samples": analysis.n_samples,
        "sample_shape": blocks.sample_shape, "blocks": [_layout(b) for b in blocks],
        "thumbnails": None if blocks.thumbnails is None else _layout(blocks.thumbnails),
        "mean": None if mean is None else mean.tolist(),
        "std": None if std is None else std.tolist(),
        "timings": analysis.timings, "profile": profile,
    }
    (folder / "analysis.json").write_text(json.dumps(_json(meta), indent=1))
    return folder


def _read_meta(folder: Path) -> dict:
    path = folder / "analysis.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} holds no saved analysis (no analysis.json); pass a folder written by "
            "Analysis.dump or by peekwidgets analyze (its analysis/ subfolder)")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT or not isinstance(meta.get("version"), int) \
            or meta["version"] > VERSION:
        raise ValueError(
            f"{path} is not a saved analysis this version reads (format {meta.get('format')!r}, "
            f"version {meta.get('version')!r}; expected {FORMAT!r} up to version {VERSION}); "
            "save it again with this version of peekwidgets")
    return meta


def load(cls, folder):
    """The ``cls`` (:class:`~peekwidgets.session.Analysis`) saved in ``folder``."""
    folder = Path(folder)
    meta = _read_meta(folder)
    estimator = CoupledCP.load(folder / "factors.npz")
    m = len(estimator.A_)
    with np.load(folder / "samples.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}

    def block(layout):
        block_meta = {k: _tuples(v) for k, v in layout["meta"].items()}
        spatial = layout["spatial_shape"] and tuple(layout["spatial_shape"])
        rows = arrays.get(f"block/{layout['name']}")
        if rows is None:
            return placeholder(layout["name"], m, layout["mode_shape"], spatial, block_meta,
                               layout["sq_norm"])
        return Block(layout["name"], rows, spatial, block_meta, layout["sq_norm"])

    thumbnails = None
    if meta["thumbnails"] is not None:
        t = meta["thumbnails"]
        thumbnails = Block(t["name"], arrays["thumbnails"], tuple(t["spatial_shape"]),
                           {k: _tuples(v) for k, v in t["meta"].items()}, t["sq_norm"])
    blocks = Blocks([block(layout) for layout in meta["blocks"]], arrays.get("labels"),
                    meta["sample_shape"], thumbnails)
    analysis = cls.from_fitted(blocks, estimator, mean=meta["mean"], std=meta["std"])
    analysis.sample_index = arrays.get("index")
    analysis.n_samples = int(meta["n_samples"])
    analysis.timings = dict(meta["timings"])
    if meta["profile"] is not None:
        analysis.profile = _profile(folder, meta["profile"])
    return analysis


def _profile(folder: Path, fields: dict) -> RankProfile:
    with np.load(folder / "profile.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    names = fields.pop("core_consistency")
    cc = None if names is None else {n: arrays.pop(f"core_consistency/{n}") for n in names}
    return RankProfile(**fields, **arrays, core_consistency=cc)
