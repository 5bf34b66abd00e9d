"""Process groups for the distributed tests: gloo processes on 127.0.0.1, a tiny model.

``run_group(fn, *args)`` runs ``fn(*args)`` in each of ``world`` spawned processes under an
initialized gloo group and returns their results in rank order. ``fn`` must be importable
(a module-level function of a test module or of this one). The model factories here also
serve ``peekwidgets analyze --model dist_helpers:tiny_model`` in the CLI tests.
"""

from __future__ import annotations

import os
import pickle
import socket
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

#: Seconds a collective of the test groups waits before it fails.
TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, fn, args, out: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world,
                            timeout=timedelta(seconds=TIMEOUT_S))
    try:
        result = fn(*args)
        Path(out, f"{rank}.pkl").write_bytes(pickle.dumps(result))
    finally:
        dist.destroy_process_group()


def run_group(fn, *args, world: int = 2) -> list:
    """``[fn(*args) on rank 0, on rank 1, ...]``, each run under a gloo group of ``world``."""
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_entry, args=(world, free_port(), fn, args, out), nprocs=world, join=True)
        return [pickle.loads(Path(out, f"{r}.pkl").read_bytes()) for r in range(world)]


class TinyNet(nn.Module):
    """3 x 12 x 12 images -> a 4-channel conv map (``relu``) -> 5 logits (``fc``)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def tiny_model() -> nn.Module:
    """The same :class:`TinyNet` on every call (seeded)."""
    torch.manual_seed(0)
    return TinyNet()


def tiny_inputs(n: int = 101) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (n, 3, 12, 12), labels (n,))``, seeded."""
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, 12, 12, generator=g), torch.randint(0, 5, (n,), generator=g)


def flat_model() -> nn.Module:
    """A linear classifier of 3 x 12 x 12 images, which takes no other size."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 5))


def failing_on_rank_1() -> nn.Module:
    """A model factory that fails on the process of rank 1 (``RANK``), as a broken node."""
    if os.environ.get("RANK") == "1":
        raise RuntimeError("the model factory failed on rank 1 on purpose")
    return tiny_model()


class SlowNet(TinyNet):
    """:class:`TinyNet` that takes half a second a batch."""

    def forward(self, x):
        time.sleep(0.5)
        return super().forward(x)


def slow_model() -> nn.Module:
    """A slow :class:`TinyNet` that writes this process's pid into ``$PEEK_TEST_PIDS`` (a
    folder) as ``<RANK>.pid`` when it is built."""
    Path(os.environ["PEEK_TEST_PIDS"], f"{os.environ.get('RANK', 0)}.pid").write_text(
        str(os.getpid()))
    torch.manual_seed(0)
    return SlowNet()


def differing_by_rank() -> nn.Module:
    """A factory whose weights differ on every process (seeded by ``RANK``)."""
    torch.manual_seed(int(os.environ.get("RANK", 0)))
    return TinyNet()
