"""What the stages need of ``torch.distributed``: the sample mode split over processes.

Under an initialized process group of more than one process (``torchrun``, or
``torch.distributed.init_process_group`` by hand), every process holds its own rows of the
samples (its shard of the inputs, of every block and of ``A``); everything else (block
factors, Gram matrices, losses, layouts) is the same on every process, kept so by the
collectives below. Without a group, or with a group of one, every function here is the
identity, so one code path serves one process and several.

Collectives run on the backend's device (CUDA for NCCL, the CPU for gloo) and hand results
back where the argument lives.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["all_gather_object", "all_reduce", "broadcast_object", "comm_device", "gather_object",
           "is_active", "rank", "row_offset", "total", "world_size"]


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
    out = value.detach().to(comm_device(), copy=True)
    dist.all_reduce(out, op=getattr(dist.ReduceOp, _OPS[op]))
    return out.to(value.device)


def total(x: float, op: str = "sum") -> float:
    """A float reduced over all processes, in float64."""
    if not is_active():
        return float(x)
    return float(all_reduce(torch.tensor([float(x)], dtype=torch.float64), op)[0])


def broadcast_object(obj, src: int = 0):
    """``obj`` of process ``src`` on every process (picklable objects)."""
    if not is_active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj) -> list:
    """``[obj of process 0, obj of process 1, ...]`` on every process."""
    if not is_active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def row_offset(n_local: int) -> tuple[int, int]:
    """``(offset, n_total)``: the global index of this process's first row, when the
    processes hold their rows in rank order, and the rows of all processes together."""
    counts = all_gather_object(int(n_local))
    return sum(counts[:rank()]), sum(counts)


def gather_object(obj, dst: int = 0) -> list | None:
    """``[obj of process 0, obj of process 1, ...]`` on process ``dst``, None elsewhere."""
    if not is_active():
        return [obj]
    out = [None] * dist.get_world_size() if dist.get_rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out
