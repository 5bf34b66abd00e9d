"""What the views and the report draw of a sharded analysis, gathered on one process.

Under a process group every process holds its own rows of the blocks and of ``A``
(:mod:`peekwidgets.distributed`). The views read ``A``, the inputs as drawn (the input block's
rows, or the thumbnails of a pooled input), the labels, the prediction block's rows (its argmax
colours the sample map) and every block's layout and norm. :func:`gather_shown` collects these
on rank 0 (or on every process) as :class:`Shown`: blocks of the gathered samples that hold the
values of the input (or thumbnails) and prediction blocks, and zero-stride placeholders with
the global norm and the layout of every other block (``meta["values"] == "not gathered"``),
plus an estimator whose ``A_`` holds the gathered rows. The dashboard and the report read them
unchanged.

Which samples: all ``N`` when what each sample brings (a row of ``A`` in float64, its drawn
input, its prediction row and label) takes at most :data:`MAX_GATHER_BYTES` for all of them
(256 MiB: with ``R = 10`` and 28 x 28 inputs about 60,000 samples), in their global order;
otherwise the :data:`TOP_K` samples that load most on each component (the same top inputs
as a whole gather gives) and :data:`N_RANDOM` samples drawn at random (seeded, the same on
every process) for the sample map, in ascending global order (``Shown.index``). Statistics of
the sample loadings that the views compute (the mean-like flag, a selection's z-scores, the
sample map) are then those of the gathered samples.

Without a group :func:`gather_shown` hands the blocks and the estimator back as they are.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from peekwidgets import distributed
from peekwidgets.blocks import Block, Blocks
from peekwidgets.viewmodel import prediction_block

__all__ = ["MAX_GATHER_BYTES", "N_RANDOM", "TOP_K", "Shown", "display_meta", "drawn",
           "gather_shown", "placeholder"]

#: Bytes that gathering all samples may take (A, drawn inputs, prediction rows, labels).
MAX_GATHER_BYTES = 256 * 2**20
#: Samples per component gathered as its top inputs when not every sample is gathered.
TOP_K = 64
#: Samples gathered at random for the sample map when not every sample is gathered.
N_RANDOM = 3000

#: ``meta["values"]`` of a block whose rows were not gathered (a placeholder).
NOT_GATHERED = "not gathered"


@dataclass
class Shown:
    """What the views draw: ``blocks`` of ``M`` samples and an estimator whose ``A_`` is
    ``(M, R)``.

    Attributes
    ----------
    blocks : Blocks or None
        The analysed blocks, or (gathered) blocks of the gathered samples; None on a process
        that does not receive them.
    estimator : CoupledCP or None
        The fitted estimator, or a shallow copy with the gathered ``A_``; None with
        ``blocks``.
    index : (M,) int array or None
        Global indices of the gathered samples; None when they are all ``N`` in order.
    n_samples : int
        ``N``, the samples of all processes together.
    """

    blocks: Blocks | None
    estimator: object
    index: np.ndarray | None
    n_samples: int


def placeholder(name: str, n: int, mode_shape, spatial_shape=None, meta=None,
                sq_norm: float | None = None) -> Block:
    """A block of ``n`` samples whose values were not kept (zeros, no memory): its layout and
    norm only (``meta["values"] == "not gathered"``)."""
    data = torch.zeros((), dtype=torch.float32).expand(n, *mode_shape)
    return Block(name, data, spatial_shape, {**(meta or {}), "values": NOT_GATHERED}, sq_norm)


def display_meta(meta: dict) -> dict:
    """A block's ``meta`` without where its rows were stored (``storage``, ``memmap_path``),
    for a copy of some of its rows held elsewhere."""
    return {k: v for k, v in meta.items() if k not in ("storage", "memmap_path")}


def drawn(blocks: Blocks) -> list[str]:
    """Names of the blocks whose rows the views draw, so whose rows are gathered and saved:
    the input when it is drawn as it is (no thumbnails), and the predictions."""
    kept = [] if "input" not in blocks.names or blocks.thumbnails is not None else ["input"]
    prediction = prediction_block(blocks)
    return kept + ([prediction] if prediction is not None else [])


def _row_bytes(blocks: Blocks, rank: int) -> int:
    rows = [blocks[n] for n in drawn(blocks)] + (
        [blocks.thumbnails] if blocks.thumbnails is not None else [])
    return 8 * rank + 16 + sum(b.data.element_size() * int(np.prod(b.mode_shape))
                               for b in rows)


def _chosen(A: np.ndarray, offset: int, n: int, top_k: int, n_random: int,
            seed: int) -> np.ndarray:
    """Global indices, ascending: the ``top_k`` largest loadings of each component (ties to
    the lower index, as a stable sort of all of ``A`` takes them) and ``n_random`` at random."""
    k = min(top_k, len(A))
    local = np.argsort(-A, axis=0, kind="stable")[:k]  # (k, R)
    every = distributed.all_gather_object(
        (local + offset, np.take_along_axis(A, local, axis=0)))
    index = np.concatenate([i for i, _ in every])
    value = np.concatenate([v for _, v in every])
    top = [index[np.lexsort((index[:, r], -value[:, r]))[:top_k], r]
           for r in range(A.shape[1])]
    drawn = np.random.default_rng(seed).choice(n, min(n_random, n), replace=False)
    return np.unique(np.concatenate([*top, drawn]))


def gather_shown(blocks: Blocks, estimator, *, everywhere: bool = False,
                 max_bytes: int = MAX_GATHER_BYTES, top_k: int = TOP_K,
                 n_random: int = N_RANDOM, seed: int = 0) -> Shown:
    """The :class:`Shown` of a fit; under a group, gathered on rank 0 (on every process with
    ``everywhere=True``; the others get ``n_samples`` only). A collective: every process calls
    it.

    Parameters
    ----------
    blocks : Blocks
        This process's shard of the blocks (all of them: the input block is drawn even when
        it was not fitted).
    estimator : CoupledCP
        Fitted on a selection of ``blocks``; ``A_ : (n_local, R)``.
    max_bytes : int
        The bound on gathering every sample.
    top_k, n_random, seed : int
        Top inputs per component, and random samples (seeded), gathered beyond the bound.
    """
    if not distributed.is_active():
        return Shown(blocks, estimator, None, blocks.n_samples)
    A = np.asarray(estimator.A_, dtype=np.float64)
    offset, n = distributed.row_offset(len(A))
    norms = distributed.block_norms(blocks)
    has_labels = distributed.total(blocks.labels is None, "max") == 0
    if n * _row_bytes(blocks, A.shape[1]) <= max_bytes:
        local = np.arange(len(A))
    else:
        index = _chosen(A, offset, n, top_k, n_random, seed)
        local = index[(index >= offset) & (index < offset + len(A))] - offset
    kept = {name: blocks[name].numpy(local) for name in drawn(blocks)}
    if blocks.thumbnails is not None:
        rows = blocks.thumbnails.rows(local, "cpu", blocks.thumbnails.data.dtype)
        kept["thumbnails"] = rows.numpy()
    part = {"index": local + offset, "A": A[local], "rows": kept,
            "labels": blocks.labels[local] if has_labels else None}
    parts = (distributed.all_gather_object(part) if everywhere
             else distributed.gather_object(part))
    if parts is None:
        return Shown(None, None, None, n)
    index = np.concatenate([p["index"] for p in parts])
    rows = {name: np.concatenate([p["rows"][name] for p in parts]) for name in kept}
    m = len(index)
    shown = []
    for b, norm in zip(blocks, norms):
        meta = display_meta(b.meta)
        shown.append(Block(b.name, rows[b.name], b.spatial_shape, meta, norm ** 2)
                     if b.name in rows else
                     placeholder(b.name, m, b.mode_shape, b.spatial_shape, meta, norm ** 2))
    thumbnails = None
    if blocks.thumbnails is not None:
        t = blocks.thumbnails
        thumbnails = Block(t.name, rows["thumbnails"], t.spatial_shape, display_meta(t.meta))
    labels = np.concatenate([p["labels"] for p in parts]) if has_labels else None
    gathered = copy.copy(estimator)
    gathered.A_ = np.concatenate([p["A"] for p in parts])
    if hasattr(estimator, "row_offset_"):  # its rows are all it holds, as a loaded model's
        gathered.row_offset_, gathered.n_samples_ = 0, len(gathered.A_)
    if hasattr(estimator, "block_shapes_"):
        gathered.block_shapes_ = {name: (m, *shape[1:])
                                  for name, shape in estimator.block_shapes_.items()}
    return Shown(Blocks(shown, labels, blocks.sample_shape, thumbnails), gathered,
                 None if m == n else index, n)
