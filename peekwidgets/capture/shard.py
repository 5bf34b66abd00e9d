"""Sharded capture: which of the inputs this process reads under a process group.

Under a ``torch.distributed`` group of more than one process (:mod:`peekwidgets.distributed`)
every process captures its own shard of the samples, and the processes in rank order make up
the whole data set:

* a tensor, numpy array or map-style Dataset is cut into contiguous ranges by rank, as
  :func:`numpy.array_split` cuts it (the first ``N % world_size`` processes hold one sample
  more): no padding and no duplicates, so the shards concatenated in rank order are the inputs
  in their own order and the analysis equals one process's;
* a DataLoader over a map-style Dataset read in order (its default sequential sampler), or
  through a :class:`~torch.utils.data.distributed.DistributedSampler`, is read again over this
  process's contiguous range of its Dataset, in order, with the same batch size, workers and
  collate function. A DistributedSampler would deal the samples out in turn (rank r reads
  samples r, r + W, ...), shuffled by default, and pad or drop some to share them evenly:
  rows in another order than the data set's, which the analysis would take for its own
  (``row_offset_``, the sample indices of top inputs), and repeats. The rows capture reads
  are the same set, without repeats or gaps, in the data set's order;
* inputs passed with ``sharded=True`` are taken as this process's shard as they are;
* a shuffling DataLoader, an IterableDataset or another iterable (a generator) cannot be split
  without reading all of it on every process: an error names the fix (a Dataset or tensor, a
  DataLoader that reads it in order, or ``sharded=True`` when each process's iterable
  already yields its own samples).

Without a group every function here hands the inputs back unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    IterableDataset,
    SequentialSampler,
    Subset,
    TensorDataset,
)
from torch.utils.data.distributed import DistributedSampler

from peekwidgets import distributed

__all__ = ["local_shard", "shard_range"]


def shard_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(start, stop)`` of process ``rank``'s contiguous share of ``n`` samples, as
    :func:`numpy.array_split` cuts them."""
    size, extra = divmod(n, world_size)
    start = rank * size + min(rank, extra)
    return start, start + size + (rank < extra)


def _sampler(loader: DataLoader):
    batch_sampler = getattr(loader, "batch_sampler", None)
    return getattr(batch_sampler, "sampler", None) or loader.sampler


def local_shard(inputs, sharded: bool | None = None):
    """``(shard, start)``: this process's shard of ``inputs`` (see the module docstring) and
    the index of its first sample in ``inputs``; ``(inputs, 0)`` without a group, and
    ``(inputs, None)`` with ``sharded=True`` (where the shard starts is not known).

    Nothing the user passed is modified: a tensor shard is a view, a Dataset shard a
    :class:`~torch.utils.data.Subset`, a DataLoader shard a new DataLoader.
    """
    if not distributed.is_active():
        return inputs, 0
    if sharded:
        return inputs, None
    rank, world = distributed.rank(), distributed.world_size()
    fix = ("pass a tensor or a map-style Dataset (split in contiguous ranges by rank), a "
           "DataLoader that reads one in order (or through a DistributedSampler), or "
           "sharded=True when each process's inputs already hold only its own samples")
    if isinstance(inputs, np.ndarray):
        inputs = torch.from_numpy(inputs)
    if isinstance(inputs, DataLoader):
        if isinstance(inputs.dataset, IterableDataset) or not isinstance(
                _sampler(inputs), (SequentialSampler, DistributedSampler)):
            raise ValueError(
                f"under a process group of {world} processes, capture cannot split a "
                "DataLoader that shuffles or reads an IterableDataset without reading all of "
                f"it on every process; {fix}")
        if inputs.drop_last:
            raise ValueError(
                "a DataLoader with drop_last=True would drop other samples on each process "
                f"than on one; pass drop_last=False, or {fix}")
        start, stop = _checked_range(len(inputs.dataset), rank, world)
        shard = DataLoader(
            Subset(inputs.dataset, range(start, stop)), batch_size=inputs.batch_size,
            num_workers=inputs.num_workers, collate_fn=inputs.collate_fn,
            pin_memory=inputs.pin_memory, timeout=inputs.timeout,
            worker_init_fn=inputs.worker_init_fn, multiprocessing_context=(
                inputs.multiprocessing_context), generator=inputs.generator,
            prefetch_factor=inputs.prefetch_factor,
            persistent_workers=inputs.persistent_workers)
        return shard, start
    if isinstance(inputs, torch.Tensor):
        if inputs.ndim == 0:
            return inputs, 0  # capture's own check names the problem
        start, stop = _checked_range(len(inputs), rank, world)
        return inputs[start:stop], start
    if isinstance(inputs, TensorDataset):
        start, stop = _checked_range(len(inputs), rank, world)
        return TensorDataset(*(t[start:stop] for t in inputs.tensors)), start
    if isinstance(inputs, Dataset) and not isinstance(inputs, IterableDataset):
        start, stop = _checked_range(len(inputs), rank, world)
        return Subset(inputs, range(start, stop)), start
    raise ValueError(
        f"under a process group of {world} processes, capture cannot split inputs of type "
        f"{type(inputs).__name__} (an iterable of unknown length) into shards; {fix}")


def _checked_range(n: int, rank: int, world: int) -> tuple[int, int]:
    if n < world:
        raise ValueError(
            f"{n} samples cannot be shared by {world} processes (each needs at least one); "
            f"analyse at least {world} samples or run fewer processes")
    return shard_range(n, rank, world)
