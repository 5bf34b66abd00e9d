"""Where captured blocks live: on the model's device, in host memory, or in a memory-mapped file.

A :class:`Budget` hands out room in the two in-memory tiers (the device tier
exists only for CUDA models; a CPU model's blocks are "host"); a :class:`Store`
is one preallocated block (float32, or float16 for display thumbnails) in the
tier it was given, filled a batch of rows at a time, in place. The pageable
host stores of one capture over inputs of known length are views into one
allocation (:meth:`Budget.hand_out`), freed with the last of its blocks: the C
allocator can then hand the same memory to the next capture (glibc's malloc keeps
a freed chunk of up to 32 MB for reuse), where blocks allocated one by one came
as fresh pages from the kernel every time (several us per 4 KB page). Memory-mapped
files go to a fresh folder under :func:`tempfile.gettempdir` (``$TMPDIR``);
rows written there are unmapped from the process at once (on Linux), so that
they count against the disk, not the process' resident memory; each file is
deleted when the last tensor that views it is garbage-collected (or at
interpreter exit).
"""

from __future__ import annotations

import itertools
import math
import mmap
import numbers
import os
import re
import shutil
import sys
import tempfile
import weakref

import numpy as np
import torch

DEVICE, HOST, MEMMAP = "device", "host", "memmap"

#: Share of the free memory that an automatic budget may fill.
AUTO_SHARE = 0.5

#: Whether rows written to a memory-mapped store are unmapped at once (``MADV_DONTNEED`` keeps
#: a shared file mapping's data only on Linux).
_RELEASE = sys.platform.startswith("linux") and hasattr(mmap, "MADV_DONTNEED")

#: Byte alignment of each store inside a shared host allocation (torch's own for CPU tensors).
_ALIGNMENT = 64
#: Largest shared host allocation: glibc's malloc keeps freed chunks up to its largest mmap
#: threshold (32 MiB on 64-bit) for reuse; a larger one comes from the kernel every time,
#: so sharing it would gain nothing and keep the blocks a user drops alive with the rest.
SHARED_BYTES = 32 << 20

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(value, what: str = "memory_budget") -> int:
    """Bytes from an int, a float or a string such as ``"512MB"`` or ``"2 GiB"``."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) \
            and math.isfinite(value):
        if value < 0:
            raise ValueError(f"{what} must be >= 0 bytes, got {value}")
        return int(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]+\.?[0-9]*|\.[0-9]+)\s*([a-zA-Z]*)\s*", value)
        if match and match.group(2).lower() in _UNITS:
            return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    raise ValueError(
        f"{what} must be a number of bytes or a string like '512MB' or '2GiB', got {value!r}"
    )


def available_host_bytes() -> int:
    """Host memory that can be allocated without swapping (``MemAvailable`` on Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**31


class Budget:
    """Room left for blocks on the device, in host memory, and in both together.

    Parameters
    ----------
    memory_budget : None, int, str or dict
        None: half of the free device memory (CUDA) and half of the available
        host memory. A number of bytes (or ``"2GB"``): the most that all
        in-memory blocks may take together, device and host. A dict
        ``{"device": ..., "host": ...}`` sets each tier (a missing or None
        entry is automatic).
    device : torch.device
        The device the model runs on.
    """

    def __init__(self, memory_budget, device: torch.device):
        self.device = device
        total = None
        if isinstance(memory_budget, dict):
            unknown = set(memory_budget) - {DEVICE, HOST}
            if unknown:
                raise ValueError(
                    f"memory_budget keys must be 'device' and/or 'host', got {sorted(unknown)}"
                )
            tiers = {k: memory_budget.get(k) for k in (DEVICE, HOST)}
        else:
            if memory_budget is not None:
                total = parse_bytes(memory_budget)
            tiers = {DEVICE: total, HOST: total}
        self.room = {
            tier: self._auto(tier) if value is None else parse_bytes(value, f"budget {tier!r}")
            for tier, value in tiers.items()
        }
        if device.type == "cpu":
            self.room[DEVICE] = 0
        self.total = total
        self._waiting = []  # (store, shape, dtype) of pageable host stores until hand_out

    def _auto(self, tier: str) -> int:
        if tier == HOST:
            return int(AUTO_SHARE * available_host_bytes())
        if self.device.type == "cuda":
            return int(AUTO_SHARE * torch.cuda.mem_get_info(self.device)[0])
        return 0

    def take(self, nbytes: int) -> str:
        """Reserve ``nbytes`` in the first tier with room; ``"memmap"`` when none has."""
        for tier in (DEVICE, HOST):
            if nbytes <= self.room[tier] and (self.total is None or nbytes <= self.total):
                self.room[tier] -= nbytes
                if self.total is not None:
                    self.total -= nbytes
                return tier
        return MEMMAP

    def fits(self, nbytes: int) -> bool:
        """Whether ``nbytes`` would fit in memory (device or host) right now."""
        room = max(self.room.values())
        return nbytes <= room and (self.total is None or nbytes <= self.total)

    def host(self, store: Store, shape, dtype: torch.dtype) -> torch.Tensor | None:
        """Pageable host memory ``shape`` for ``store``: None until :meth:`hand_out` sets
        ``store.data`` (a view into one allocation for all waiting stores); after it, a tensor
        of its own (a store that grows)."""
        if self._waiting is None:
            return torch.empty(shape, dtype=dtype)
        self._waiting.append((store, shape, dtype))
        return None

    def hand_out(self, shared: bool = True):
        """Give every store waiting for host memory its data: views into one allocation when
        ``shared`` and together at most :data:`SHARED_BYTES`, else a tensor each (also for
        stores that may be trimmed at the end, so that their unused rows are not kept)."""
        waiting, self._waiting = self._waiting, None
        nbytes = [math.prod(shape) * dtype.itemsize for _, shape, dtype in waiting]
        room = [-(-n // _ALIGNMENT) * _ALIGNMENT for n in nbytes]
        if not shared or sum(room) > SHARED_BYTES:
            for store, shape, dtype in waiting:
                store.data = torch.empty(shape, dtype=dtype)
            return
        memory = torch.empty(sum(room), dtype=torch.uint8)
        for (store, shape, dtype), start, n in zip(waiting, itertools.accumulate([0, *room]),
                                                   nbytes):
            store.data = memory[start:start + n].view(dtype).view(shape)

    def give_back(self, tier: str, nbytes: int):
        if tier != MEMMAP:
            self.room[tier] += nbytes
            if self.total is not None:
                self.total += nbytes


def _delete_file(path: str):
    try:
        os.remove(path)
        os.rmdir(os.path.dirname(path))  # the folder goes with its last file
    except OSError:
        pass


class Store:
    """One block's rows, preallocated as ``(capacity, *sample_shape)`` in a tier.

    Parameters
    ----------
    sample_shape : tuple of int
        Shape of one sample as it arrives, for example ``(C, H, W)``;
        :meth:`finish` reshapes the rows to the block's layout.
    capacity : int
        Rows to allocate; :meth:`reserve` grows the store by doubling.
    budget : Budget
        Gives the tier, and pageable host memory (``data`` is None until
        :meth:`Budget.hand_out`); room is returned when the store grows or is dropped.
    folder : callable
        Returns the folder for memory-mapped files (created on first use).
    dtype : torch.dtype
        float32 (blocks) or float16 (thumbnails).
    """

    def __init__(self, sample_shape, capacity: int, budget: Budget, folder,
                 dtype: torch.dtype = torch.float32):
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.budget = budget
        self.folder = folder
        self.dtype = dtype
        self.path = self._delete = self._map = None
        self._allocate(capacity)

    @property
    def row_bytes(self) -> int:
        return self.dtype.itemsize * int(np.prod(self.sample_shape))

    def _allocate(self, capacity: int):
        shape = (capacity, *self.sample_shape)
        nbytes = capacity * self.row_bytes
        self.tier = self.budget.take(nbytes)
        self.pinned = False
        if self.tier == DEVICE:
            try:
                self.data = torch.empty(shape, dtype=self.dtype, device=self.budget.device)
            except torch.cuda.OutOfMemoryError:  # the device is fuller than it said
                self.budget.give_back(DEVICE, nbytes)
                self.budget.room[DEVICE] = 0
                self.tier = self.budget.take(nbytes)
        if self.tier == HOST and self.budget.device.type == "cuda":
            try:
                self.data = torch.empty(shape, dtype=self.dtype, pin_memory=True)
                self.pinned = True
            except RuntimeError:  # pinning can fail for large blocks: use pageable memory
                self.data = torch.empty(shape, dtype=self.dtype)
        elif self.tier == HOST:
            self.data = self.budget.host(self, shape, self.dtype)
        if self.tier == MEMMAP:
            self.data = self._memmap(shape)

    def _memmap(self, shape) -> torch.Tensor:
        folder = self.folder()
        nbytes = shape[0] * self.row_bytes
        free = shutil.disk_usage(folder).free
        if nbytes > free:
            raise MemoryError(
                f"a block of {nbytes / 1e9:.2f} GB does not fit in memory nor on the disk of "
                f"{folder} ({free / 1e9:.2f} GB free); capture fewer samples or layers, lower "
                "max_positions, or point TMPDIR at a larger disk"
            )
        dtype = np.dtype(str(self.dtype).removeprefix("torch."))
        fd, path = tempfile.mkstemp(suffix=f".f{8 * dtype.itemsize}", dir=folder)
        try:
            os.ftruncate(fd, nbytes)
            self._map = mmap.mmap(fd, nbytes)
        finally:
            os.close(fd)
        self._delete = weakref.finalize(self._map, _delete_file, path)
        self.path = path
        return torch.from_numpy(np.frombuffer(self._map, dtype=dtype).reshape(shape))

    def _release(self, start: int, stop: int):
        """Unmap rows ``start:stop`` of a memory-mapped store from this process (Linux).

        Their values stay in the file (the page cache writes them back); a later read maps
        them again. So rows written to disk do not count in the process' resident memory.
        """
        if self.tier != MEMMAP or not _RELEASE:
            return
        begin = start * self.row_bytes // mmap.PAGESIZE * mmap.PAGESIZE
        self._map.madvise(mmap.MADV_DONTNEED, begin, stop * self.row_bytes - begin)

    @property
    def device(self) -> torch.device:
        return self.data.device

    def discard(self):
        """Drop the data now; a memory-mapped file is deleted at once."""
        self.data = self._map = None
        if self._delete is not None:
            self._delete()

    @property
    def capacity(self) -> int:
        return self.data.shape[0]

    def reserve(self, stop: int, filled: int):
        """Make room for rows up to ``stop``, keeping the first ``filled`` rows."""
        if stop <= self.capacity:
            return
        old, old_tier = self.data, self.tier
        self.budget.give_back(old_tier, old.shape[0] * self.row_bytes)
        self._allocate(max(stop, 2 * old.shape[0]))
        self.data[:filled].copy_(old[:filled])
        self._release(0, filled)

    def write(self, start: int, rows: torch.Tensor):
        """Copy ``rows : (n, *sample_shape)`` into rows ``start:start + n``."""
        self.data[start:start + rows.shape[0]].copy_(rows, non_blocking=self.pinned)
        self._release(start, start + rows.shape[0])

    def finish(self, n_rows: int, row_shape) -> torch.Tensor:
        """The filled rows as ``(n_rows, *row_shape)``; in memory, compacted if a quarter empty."""
        data = self.data[:n_rows].view(n_rows, *row_shape)
        if self.tier != MEMMAP and n_rows < 0.75 * self.capacity:
            data = data.clone()
        return data
