"""How the engine reads blocks: batch sizes, threads, work buffers and accumulators.

A sweep makes two products with every sample batch: ``X_b F_b`` (the batch's rows of A) and,
once those rows are solved, ``A^T X_b`` (accumulated over batches). On CPU a batch is sized to
stay in the core's cache between the two (``CACHE_BYTES``), unless the accumulators themselves
leave the cache (wide blocks): then a batch holds at least ``MIN_ROWS_PER_COLUMN`` rows per
product column, so each batch's read-modify-write of the ``(width, features)`` accumulator
costs a small share of reading the batch.

Measured on the 2-core dev VM (float32, rank 8, one thread, a tensor 2000 x 64 x 100 and a
matrix 2000 x 300, both products of a sweep): 8-10 ms at batches of 0.4-1.6 MiB, 16-20 ms at
3-51 MiB (the second product then reads the batch from memory again).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from threadpoolctl import threadpool_limits

from peekwidgets.blocks import Blocks, batch_rows, full_device

__all__ = ["Accumulator", "BatchedData", "accumulators", "sweep_rows"]

#: Bytes of one CPU batch of all blocks together, per thread: half of a 2 MiB per-core L2.
CACHE_BYTES = 1 << 20
#: Least rows per product column of a batch whose accumulators do not fit ``CACHE_BYTES``.
MIN_ROWS_PER_COLUMN = 16
#: Fits with at least this much block data (in the compute dtype) use all of torch's threads;
#: smaller ones run on one thread (a second thread's wake-ups cost more than they bring on
#: small products, and up to 10x on a busy machine). On an idle 2-core AMD EPYC, two threads
#: ran a plain sweep 0.92x as fast at 7 MB, 1.2x at 44 MB and 1.5x at 219 MB.
LARGE_FIT_BYTES = 32 << 20
#: float32 accumulators are folded into float64 after at most this many rows, or after one
#: batch of more (a GPU's batch of all rows is summed in float32 inside its GEMM).
FLUSH_ROWS = 1024


def fit_threads(blocks: Blocks, device, dtype: torch.dtype,
                n_samples: int | None = None) -> int:
    """Threads of a fit: all of torch's threads for large CPU fits, else 1 (see
    ``LARGE_FIT_BYTES``); on other devices, torch's setting. ``n_samples`` (the blocks' rows
    by default) sizes the fit: the rows of all processes, so they decide alike."""
    n_threads = torch.get_num_threads()
    if torch.device(device).type != "cpu":
        return n_threads
    n_samples = blocks.n_samples if n_samples is None else n_samples
    size = n_samples * sum(math.prod(b.mode_shape) for b in blocks) * dtype.itemsize
    return n_threads if size >= LARGE_FIT_BYTES else 1


def sweep_rows(blocks: Blocks, width: int, batch_size: int | None = None, *, device=None,
               dtype: torch.dtype = torch.float32, n_threads: int = 1,
               bytes_per_thread: int = CACHE_BYTES) -> int:
    """Sample rows read at once for products of ``width`` columns with all ``blocks``.

    ``batch_size`` when given (validated). On CPU, as many rows as fit ``bytes_per_thread``
    (``CACHE_BYTES`` by default) per thread, or at least ``MIN_ROWS_PER_COLUMN * width``
    rows when a ``(width, features)`` accumulator of all blocks exceeds that. On other devices
    all rows when every block already lives there in ``dtype`` (``device`` as
    :func:`~peekwidgets.blocks.full_device` names it): its batches are views, which cost no
    memory, and each batch costs kernel launches; else ``BATCH_BYTES`` of the device type (at
    least 16 rows), the size of the copies. Never more than the number of samples.
    """
    device = blocks[0].device if device is None else torch.device(device)
    kind = device.type
    if batch_size is None and kind != "cpu" and all(
            b.device == device and b.data.dtype == dtype
            and (b.data.is_contiguous() or b.data.ndim == 2) for b in blocks):
        return blocks[0].n_samples
    if batch_size is not None or kind != "cpu":
        return batch_rows(blocks, batch_size, device=device, dtype=dtype, min_rows=16)
    row_bytes = sum(math.prod(b.mode_shape) for b in blocks) * dtype.itemsize
    budget = bytes_per_thread * n_threads
    min_rows = MIN_ROWS_PER_COLUMN * width if width * row_bytes > budget else 1
    return batch_rows(blocks, device=device, dtype=dtype, bytes_per_batch=budget,
                      min_rows=min_rows)


class Accumulator:
    """``sum over batches of a^T x``, ``(width, size)`` in float64.

    Products in float32 are summed into a float32 part by the GEMM itself (``beta = 1``, no
    temporary; the first product of a part overwrites it, so nothing is zeroed), which is folded
    into the float64 total after at most ``FLUSH_ROWS`` rows; in float64 the products go to the
    total directly. ``out`` (float64, ``(width, size)``, contiguous) holds the total when given.
    """

    def __init__(self, width: int, size: int, device, dtype: torch.dtype, out=None):
        self.total = torch.empty(width, size, dtype=torch.float64, device=device) \
            if out is None else out
        self.part = self.total if dtype == torch.float64 else torch.empty(
            width, size, dtype=dtype, device=device)
        self.reset()

    def reset(self) -> None:
        """Start a new sum."""
        self.rows = 0  # rows in the part
        self.folded = False  # the total holds rows

    def add(self, a: torch.Tensor, x: torch.Tensor) -> None:
        """Add ``a^T x`` for ``a : (n, width)`` and ``x : (n, size)`` in the data dtype."""
        if self.rows:
            torch.addmm(self.part, a.T, x, out=self.part)
        else:
            torch.mm(a.T, x, out=self.part)
        self.rows += a.shape[0]
        if self.part is not self.total and self.rows >= FLUSH_ROWS:
            self._fold()

    def _fold(self) -> None:
        if self.part is self.total:
            self.folded = self.folded or self.rows > 0
        elif self.rows:
            if self.folded:  # not total += part: in place, mixed dtypes run 5x slower on CPU
                torch.add(self.total, self.part, out=self.total)
            else:
                self.total.copy_(self.part)
            self.folded = True
        self.rows = 0

    def result(self) -> torch.Tensor:
        """The float64 sum so far (the accumulator's own storage: read it before reusing)."""
        self._fold()
        if not self.folded:
            self.total.zero_()
            self.folded = True
        return self.total


def accumulators(width: int, sizes, device, dtype: torch.dtype,
                 extra: int = 0) -> tuple[torch.Tensor, list[Accumulator], torch.Tensor]:
    """One :class:`Accumulator` of ``(width, size)`` per size whose totals are consecutive
    views of one flat float64 buffer, followed by ``extra`` float64 slots (the tail), so one
    all-reduce of the buffer sums everything over processes. Returns ``(buffer, accumulators,
    tail)``."""
    buf = torch.empty(width * sum(sizes) + extra, dtype=torch.float64, device=device)
    accs, at = [], 0
    for d in sizes:
        total = buf[at:at + width * d].view(width, d)
        accs.append(Accumulator(width, d, device, dtype, out=total))
        at += width * d
    return buf, accs, buf[at:]


class BatchedData:
    """Blocks read in sample batches on the compute device, with their scales.

    ``home`` is where ``A (n_samples, rank)`` lives: the device of the block data (the host for
    host or memory-mapped blocks), so the compute device holds only one batch at a time.
    Batches are views of the blocks where no move or cast is needed, else copies into work
    buffers allocated once (see :meth:`buffer`). ``width`` is the number of columns of the
    products (the rank), for :func:`sweep_rows`. ``n`` is this process's rows, ``n_total`` the
    rows of all processes (``n`` without a process group).
    """

    def __init__(self, blocks: Blocks, scales, device, dtype, batch_size, width: int, *,
                 bytes_per_thread: int = CACHE_BYTES, n_total: int | None = None):
        self.blocks = blocks
        self.scales = [float(s) for s in scales]
        self.device = full_device(device)
        self.dtype = dtype
        self.n = blocks.n_samples
        self.n_total = self.n if n_total is None else n_total
        homes = {b.device for b in self.blocks}
        self.home = homes.pop() if len(homes) == 1 else torch.device("cpu")
        self.n_threads = fit_threads(blocks, self.device, dtype, self.n_total)
        self.user_batch_size = batch_size
        self.batch_size = sweep_rows(blocks, width, batch_size, device=self.device, dtype=dtype,
                                     n_threads=self.n_threads, bytes_per_thread=bytes_per_thread)
        self.cache = {}  # work buffers and other objects that live as long as the fit

    @property
    def mode_shapes(self) -> list[tuple[int, ...]]:
        return [b.mode_shape for b in self.blocks]

    @property
    def sizes(self) -> list[int]:
        """Features of each block's unfolding, ``prod(mode_shape)``."""
        return [math.prod(s) for s in self.mode_shapes]

    @contextmanager
    def threads(self):
        """Run with ``n_threads`` threads in torch and in the BLAS of numpy (factor updates)."""
        before = torch.get_num_threads()
        torch.set_num_threads(self.n_threads)
        try:
            with threadpool_limits(self.n_threads, user_api="blas"):
                yield
        finally:
            torch.set_num_threads(before)

    def buffer(self, key, shape, dtype=None) -> torch.Tensor:
        """A work tensor on the compute device, allocated on first use and reused after
        (uninitialized)."""
        dtype = self.dtype if dtype is None else dtype
        buf = self.cache.get(("buffer", key))
        if buf is None or tuple(buf.shape) != tuple(shape) or buf.dtype != dtype:
            buf = self.cache[("buffer", key)] = torch.empty(shape, dtype=dtype,
                                                            device=self.device)
        return buf

    def split(self, buf: torch.Tensor) -> list[torch.Tensor]:
        """Views of ``buf`` by batch (``buf[start:stop]`` when it holds a row per sample, else
        ``buf[:stop - start]``, a batch-sized buffer), listed once per buffer: slicing costs as
        much as a small kernel. (The views keep ``buf``'s memory alive, so no later buffer can
        take its address.)"""
        key = ("split", buf.data_ptr(), tuple(buf.shape), buf.dtype)
        views = self.cache.get(key)
        if views is None:
            whole = buf.shape[0] == self.n
            views = self.cache[key] = [
                buf[start:min(start + self.batch_size, self.n)] if whole
                else buf[: min(start + self.batch_size, self.n) - start]
                for start in range(0, self.n, self.batch_size)]
        return views

    def columns(self, key, width: int, dtype=None) -> list[torch.Tensor]:
        """Contiguous ``(width, rows of the batch)`` work tensors, one per batch: views of one
        buffer (:meth:`buffer`), listed once per buffer. The layout of the transposed rows of
        ``A`` and of ``F^T X^T`` in the sweep's products."""
        buf = self.buffer(key, (width * self.batch_size,), dtype)
        views = self.cache.get(("columns", key))
        if views is None or views[0].untyped_storage().data_ptr() != buf.data_ptr() \
                or views[0].shape[0] != width:
            views = self.cache[("columns", key)] = [
                buf[: width * k].view(width, k)
                for k in (min(self.batch_size, self.n - start)
                          for start in range(0, self.n, self.batch_size))]
        return views

    def chunks(self):
        """``(start, stop, [rows of each block as (n, features)])`` on the compute device in the
        data dtype: views of the blocks (listed once per fit), or copies into work buffers
        (another device or dtype, or a block that is not contiguous)."""
        views = self.cache.get("views")
        if views is None:
            flat = [b.data.view(self.n, -1) if b.data.is_contiguous() else b.data
                    for b in self.blocks]
            copies = [x.ndim > 2 or x.device != self.device or x.dtype != self.dtype
                      for x in flat]
            views = self.cache["views"] = [
                (start, min(start + self.batch_size, self.n),
                 [x[start:start + self.batch_size] for x in flat])
                for start in range(0, self.n, self.batch_size)]
            self.cache["copies"] = copies if any(copies) else None
        copies = self.cache["copies"]
        return views if copies is None else self._copied(views, copies)

    def _copied(self, views, copies):
        for start, stop, parts in views:
            rows = []
            for i, (part, copy) in enumerate(zip(parts, copies)):
                if copy:
                    buf = self.buffer(("rows", i), (self.batch_size, math.prod(part.shape[1:])))
                    part = buf[: stop - start]
                    part.view(parts[i].shape).copy_(parts[i], non_blocking=parts[i].is_pinned())
                rows.append(part)
            yield start, stop, rows
