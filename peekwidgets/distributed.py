"""What the stages need of ``torch.distributed``: the sample mode split over processes.

Under an initialized process group of more than one process (``torchrun``, or
``torch.distributed.init_process_group`` by hand), every process holds its own rows of the
samples (its shard of the inputs, of every block and of ``A``); everything else (block
factors, Gram matrices, losses, layouts) is the same on every process, kept so by the
collectives below. Without a group, or with a group of one, every function here is the
identity, so one code path serves one process and several.

Collectives run on the backend's device (CUDA for NCCL, the CPU for gloo) and hand results
back where the argument lives. :func:`comm_bytes` counts what this process handed to them.

A process that raises ends its part; its peers' next collective then fails (gloo: the
connection closes when the process exits) or times out: pass a ``timeout`` to
``init_process_group`` (for example ``datetime.timedelta(minutes=5)``) so that a peer that
raised but stays alive cannot hold the others for the default 30 minutes. Ctrl-C is the
exception: under a group, :func:`deferred_interrupts` turns it into a request that the stages
act on together (a second Ctrl-C raises at once).
"""

from __future__ import annotations

import pickle
import signal
import threading
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["StopRequest", "agree", "all_gather_object", "all_reduce", "all_reduce_",
           "block_norms", "broadcast_object", "comm_bytes", "comm_device", "deferred_interrupts",
           "gather_object", "gather_rows", "is_active", "rank", "row_offset", "total",
           "world_size"]

_sent = 0  # bytes this process handed to collectives


def comm_bytes() -> int:
    """Bytes this process has handed to collectives so far (tensor payloads, and pickled
    objects); take differences around a piece of work. 0 without a group."""
    return _sent


def _count(n: int) -> None:
    global _sent
    _sent += int(n)


def is_active() -> bool:
    """True under an initialized process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a group)."""
    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    """Processes in the group (1 without one)."""
    return dist.get_world_size() if is_active() else 1


def comm_device() -> torch.device:
    """Where the backend's collectives take their tensors: this process's CUDA device for
    NCCL, else the CPU."""
    if is_active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN"}


def all_reduce(value, op: str = "sum"):
    """``value`` reduced over all processes (``op`` in ``sum``, ``max``, ``min``).

    ``value`` is a tensor (reduced in its dtype, returned on its device, the argument left
    unchanged) or a numpy array (reduced in float64, returned as a new float64 array).
    """
    if isinstance(value, np.ndarray):
        return all_reduce(torch.from_numpy(np.asarray(value, dtype=np.float64)), op).numpy()
    if not is_active():
        return value
    return all_reduce_(value.detach().to(comm_device(), copy=True), op).to(value.device)


def all_reduce_(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``tensor`` reduced over all processes in place (through a copy on the backend's device
    when it lives elsewhere); returns it. Nothing is done without a group."""
    if not is_active():
        return tensor
    _count(tensor.numel() * tensor.element_size())
    work = tensor if tensor.device == comm_device() else tensor.to(comm_device())
    dist.all_reduce(work, op=getattr(dist.ReduceOp, _OPS[op]))
    if work is not tensor:
        tensor.copy_(work)
    return tensor


def total(x: float, op: str = "sum") -> float:
    """A float reduced over all processes, in float64."""
    if not is_active():
        return float(x)
    return float(all_reduce(torch.tensor([float(x)], dtype=torch.float64), op)[0])


def broadcast_object(obj, src: int = 0):
    """``obj`` of process ``src`` on every process (picklable objects)."""
    if not is_active():
        return obj
    if rank() == src:
        _count(len(pickle.dumps(obj)))
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj) -> list:
    """``[obj of process 0, obj of process 1, ...]`` on every process."""
    if not is_active():
        return [obj]
    _count(len(pickle.dumps(obj)))
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_rows(x):
    """The rows of all processes, in rank order, on every process: ``x`` (this process's rows,
    a numpy array or a tensor) concatenated along its first axis (``x`` itself without a
    group). For per-sample results (``CoupledCP.A_``, ``transform``) of a size to pickle."""
    if not is_active():
        return x
    parts = all_gather_object(x)
    return torch.cat(parts) if isinstance(x, torch.Tensor) else np.concatenate(parts)


def agree(n_local: int, setup: dict) -> list[int]:
    """The rows of every process (``[n_local]`` without a group), after checking that every
    process passes the same ``setup`` (``{name: value}``, compared by ``repr``): else every
    process raises ValueError naming what differs, before any collective of the work."""
    if not is_active():
        return [int(n_local)]
    mine = {k: repr(v) for k, v in setup.items()}
    seen = all_gather_object((int(n_local), mine))
    for r, (_, other) in enumerate(seen):
        if other != mine:
            diff = sorted(k for k in mine if other.get(k) != mine[k])
            raise ValueError(
                f"process {r} passes other {diff} than process {rank()} "
                f"({ {k: other.get(k) for k in diff} } against { {k: mine[k] for k in diff} }); "
                "every process of the group must pass the same blocks and settings, each "
                "with its own rows"
            )
    counts = [n for n, _ in seen]
    if min(counts) < 1:
        raise ValueError(f"process {counts.index(min(counts))} holds no samples (rows per "
                         f"process: {counts}); give every process at least one row")
    return counts


def row_offset(n_local: int) -> tuple[int, int]:
    """``(offset, n_total)``: the global index of this process's first row, when the
    processes hold their rows in rank order, and the rows of all processes together."""
    counts = all_gather_object(int(n_local))
    return sum(counts[:rank()]), sum(counts)


def block_norms(blocks) -> list[float]:
    """Each block's Frobenius norm over the rows of all processes (the local squared norms,
    ``Block.sq_norm``, summed in float64).

    Raises ``ValueError`` on every process when a block holds NaN or Inf values (or is too
    large to square) anywhere: :func:`peekwidgets.blocks.check_finite`'s error, naming the
    sample, on the process that holds them, and an error that points there on the others, so
    no process is left waiting in a collective.
    """
    from peekwidgets.blocks import check_finite

    for b in blocks:
        b.norm()  # computes and caches this process's b.sq_norm
    sq = all_reduce(np.array([b.sq_norm for b in blocks], dtype=np.float64))
    if not np.all(np.isfinite(sq)):
        offset, _ = row_offset(blocks[0].n_samples)  # every process is here
        check_finite(blocks, offset, f" of process {rank()}" if is_active() else "")
        bad = [b.name for b, v in zip(blocks, sq) if not np.isfinite(v)]
        raise ValueError(
            f"blocks {bad} hold NaN or Inf values (or values too large to square) in the rows "
            "of another process; see that process's error, clean those samples and pass the "
            "cleaned blocks"
        )
    return [float(np.sqrt(v)) for v in sq]


class StopRequest:
    """A request to stop, set by Ctrl-C or by the caller and honoured at the next collective
    (``raised``: whether it is pending)."""

    def __init__(self):
        self.raised = False

    def set(self) -> None:
        self.raised = True

    def clear(self) -> None:
        self.raised = False


@contextmanager
def deferred_interrupts():
    """Under a group, yield a :class:`StopRequest` that Ctrl-C sets instead of raising
    (in the main thread; a second Ctrl-C raises KeyboardInterrupt as usual); None without one.

    A KeyboardInterrupt in the middle of a pass would leave the other processes waiting in a
    collective; the request rides instead on the next reduction the work makes, so all
    processes stop at the same point.
    """
    if not is_active():
        yield None
        return
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum, frame):
        if request.raised:  # asked twice: stop now
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        request.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)


def gather_object(obj, dst: int = 0) -> list | None:
    """``[obj of process 0, obj of process 1, ...]`` on process ``dst``, None elsewhere."""
    if not is_active():
        return [obj]
    out = [None] * dist.get_world_size() if dist.get_rank() == dst else None
    _count(len(pickle.dumps(obj)))
    dist.gather_object(obj, out, dst=dst)
    return out
