"""CoupledCP on one process and on two (torch.distributed): seconds per sweep and bytes sent.

The LeNet-shaped problem of ``engine_scale.py`` (blocks as captured from LeNet-5 on 28x28
MNIST: input 784, conv1 6 x 576 (24x24) and conv2 16 x 64 (8x8) tensors, fc1 120, fc2 84,
fc3 10 matrices; planted nonnegative rank-10 factors plus 1% noise, clipped at 0) at
N = 20,000 samples (438 MiB float32), fitted at R = 10 (least squares, plain sweeps:
``extrapolate=False``, random start) by one process with one thread, and by two processes
with one thread each (gloo on 127.0.0.1), each holding its half of the rows in memory.

Seconds per sweep: ``(median T(25) - median T(5)) / 20`` from fits of fixed sweep counts (a
negative tol), after a warm-up of each, the two counts in turns and the one-process and
two-process fits interleaved (the worker processes wait on a queue while the parent fits, so
the two never run at once); the two-process time is rank 0's wall time of ``fit`` (the ranks
finish together: every sweep ends in an all-reduce). The same from CPU times (of the busier
worker), which other jobs on a shared machine do not inflate, estimates the speedup on free
cores (gloo waits without spinning). Bytes per sweep:
``comm_bytes_per_sweep_`` of rank 0 (what it hands to the all-reduce), at N and at N / 2,
and the time of one all-reduce of that size (median of 20).

The machine's own parallel headroom, measured in turns with the fits: the two products of a
sweep (``X W`` and ``W^T X`` of every block, whole rows, one thread) over all rows in the parent
against the same over each half in the two workers at once, ``T(all rows) / T(half, the slower
worker)``; on an idle two-core machine about 2, on a shared one less. A speedup near this
headroom means the communication costs little.

Usage: python benchmarks/distributed_scale.py [--repeats 3] [--n 20000]
       [--device cuda --backend nccl]   (two GPUs: one process per GPU, and one GPU alone)
Last line: ``distributed_speedup=<1-process s/sweep / 2-process s/sweep> bytes_per_sweep=<n>``
(goal: speedup >= 1.6).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import socket
import statistics
import tempfile
import time
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from engine_scale import R, lenet_blocks  # the benchmark next to this one

from peekwidgets import distributed
from peekwidgets.blocks import Block, Blocks
from peekwidgets.engine import CoupledCP

N = 20_000
SHORT, LONG = 5, 25  # sweeps of the two fixed-count fits
WORLD = 2
PARAMS = dict(rank=R, init="random", extrapolate=False, tol=-1, random_state=0)


def timed_fit(blocks: Blocks, sweeps: int, device) -> tuple[float, float, CoupledCP]:
    """Wall and CPU seconds of a fit of ``sweeps`` sweeps, and the model."""
    start, cpu = time.perf_counter(), time.process_time()
    model = CoupledCP(max_iter=sweeps, device=device, **PARAMS).fit(blocks)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu, model


def products(blocks: Blocks) -> float:
    """Seconds for the data-sized products of a sweep: ``X W`` and ``W^T X`` of every block."""
    ws = [torch.ones(math.prod(b.mode_shape), R, dtype=b.data.dtype, device=b.device)
          for b in blocks]
    start = time.perf_counter()
    for b, w in zip(blocks, ws):
        x = b.data.reshape(b.n_samples, -1)
        (x @ w).T @ x
    if blocks[0].device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def load(folder: Path, names, rows: slice, device) -> Blocks:
    """The rows of the blocks saved in ``folder``, in memory on ``device``, norms computed."""
    blocks = Blocks([Block(n, torch.from_numpy(np.array(np.load(folder / f"{n}.npy",
                                                                mmap_mode="r")[rows])).to(device))
                     for n in names])
    for b in blocks:
        b.norm()
    return blocks


def worker(rank: int, port: int, folder: str, names, n: int, backend: str, device: str,
           commands, results) -> None:
    """One process of the group: fits its half of the rows on command, reports the time."""
    warnings.simplefilter("ignore")  # fixed sweep counts warn of non-convergence
    torch.set_num_threads(1)
    if device == "cuda":  # one GPU a process, chosen before NCCL starts
        torch.cuda.set_device(rank)
        device = f"cuda:{rank}"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD, timeout=timedelta(minutes=5))
    half = n // WORLD
    mine = load(Path(folder), names, slice(rank * half, (rank + 1) * half), device)
    while (command := commands.get()) is not None:
        sweeps, rows = command
        blocks = mine if rows == half else Blocks([Block(b.name, b.data[:rows]) for b in mine])
        dist.barrier()
        if sweeps == 0:  # the products alone, at once in both workers
            results.put((rank, products(blocks), 0.0, 0.0))
            continue
        if sweeps < 0:  # an all-reduce of -sweeps bytes, median of 20
            buf = torch.zeros(-sweeps // 8, dtype=torch.float64, device=device)
            took = []
            for _ in range(20):
                start = time.perf_counter()
                distributed.all_reduce_(buf)
                took.append(time.perf_counter() - start)
            results.put((rank, statistics.median(took), 0.0, 0.0))
            continue
        seconds, cpu, model = timed_fit(blocks, sweeps, device)
        results.put((rank, (seconds, cpu), model.comm_bytes_per_sweep_, model.loss_))
    dist.destroy_process_group()


class Group:
    """Two worker processes, each with its half of the rows, fitting on command."""

    def __init__(self, folder: Path, names, n: int, backend: str, device: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ctx = multiprocessing.get_context("spawn")
        self.half = n // WORLD
        self.commands = [ctx.Queue() for _ in range(WORLD)]
        self.results = ctx.Queue()
        self.procs = [ctx.Process(target=worker, args=(r, port, str(folder), names, n, backend,
                                                       device, self.commands[r], self.results))
                      for r in range(WORLD)]
        for p in self.procs:
            p.start()

    def fit(self, sweeps: int, rows: int | None = None):
        """``((rank 0's wall seconds, the larger CPU seconds), rank 0's bytes per sweep, the
        loss)`` of a fit of ``rows`` rows a process (all of its half by default);
        ``sweeps=0``: the slower worker's seconds of :func:`products` instead; ``sweeps=-b``:
        of an all-reduce of ``b`` bytes."""
        for q in self.commands:
            q.put((sweeps, rows or self.half))
        got = sorted((self.results.get(timeout=600) for _ in range(WORLD)), key=lambda r: r[0])
        if sweeps <= 0:
            return max(g[1] for g in got), 0.0, 0.0
        return (got[0][1][0], max(g[1][1] for g in got)), got[0][2], got[0][3]

    def close(self) -> None:
        for q in self.commands:
            q.put(None)
        for p in self.procs:
            p.join(60)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=N)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    device = "cuda:0" if args.device == "cuda" else "cpu"
    arrays = lenet_blocks(n=args.n)
    names = list(arrays)
    data_mb = sum(x.nbytes for x in arrays.values()) / 2**20
    load_avg = os.getloadavg()
    print(f"LeNet-shaped blocks {dict((k, v.shape[1:]) for k, v in arrays.items())}, "
          f"N={args.n}, R={R}, {data_mb:.0f} MiB float32, device {args.device}, backend "
          f"{args.backend}; 1 thread a process; load average {load_avg[0]:.2f} / "
          f"{load_avg[1]:.2f} / {load_avg[2]:.2f} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, x in arrays.items():
            np.save(Path(tmp) / f"{name}.npy", x)
        del arrays
        one = load(Path(tmp), names, slice(None), device)
        group = Group(Path(tmp), names, args.n, args.backend, args.device)
        try:
            times = {(k, w): [] for k in (0, SHORT, LONG) for w in (1, WORLD)}
            cpu = {(k, w): [] for k in (SHORT, LONG) for w in (1, WORLD)}
            losses = {}
            timed_fit(one, SHORT, device)  # warm-ups
            group.fit(SHORT)
            for rep in range(args.repeats):
                times[0, 1].append(products(one))
                times[0, WORLD].append(group.fit(0)[0])
                for k in (SHORT, LONG) if rep % 2 == 0 else (LONG, SHORT):
                    seconds, cpu_seconds, model = timed_fit(one, k, device)
                    times[k, 1].append(seconds)
                    cpu[k, 1].append(cpu_seconds)
                    (seconds, cpu_seconds), sent, loss = group.fit(k)
                    times[k, WORLD].append(seconds)
                    cpu[k, WORLD].append(cpu_seconds)
                    losses[k] = (model.loss_, loss)
            _, sent_half, _ = group.fit(SHORT, rows=args.n // (2 * WORLD))
            reduce_seconds = group.fit(-int(sent))[0]
        finally:
            group.close()
    per_sweep, cpu_sweep = ({w: (statistics.median(t[LONG, w]) - statistics.median(t[SHORT, w]))
                             / (LONG - SHORT) for w in (1, WORLD)} for t in (times, cpu))
    for w in (1, WORLD):
        print(f"{w} process(es): T({SHORT}) {statistics.median(times[SHORT, w]):.2f} s, "
              f"T({LONG}) {statistics.median(times[LONG, w]):.2f} s (medians of "
              f"{args.repeats}), {per_sweep[w]:.4f} s a sweep; CPU {cpu_sweep[w]:.4f} s a "
              f"sweep{' (the busier process)' if w > 1 else ''}")
    loss_one, loss_two = losses[LONG]
    print(f"loss after {LONG} sweeps: 1 process {loss_one:.8g}, {WORLD} processes "
          f"{loss_two:.8g} (relative difference {abs(loss_one - loss_two) / loss_one:.1e})")
    print(f"bytes sent a sweep by rank 0: {sent:.0f} at N={args.n}, {sent_half:.0f} at "
          f"N={args.n // 2} (R * sum of block features + R^2 + 5 float64)")
    print(f"one all-reduce of those bytes: {reduce_seconds * 1e3:.2f} ms (median of 20, the "
          f"slower worker), {reduce_seconds / per_sweep[WORLD] * 100:.1f}% of a "
          f"{WORLD}-process sweep")
    headroom = statistics.median(times[0, 1]) / statistics.median(times[0, WORLD])
    print(f"machine's parallel headroom now (a sweep's products, all rows in one process / "
          f"each half in {WORLD} at once): {headroom:.2f}")
    print(f"speedup in CPU time (what free cores would give): "
          f"{cpu_sweep[1] / cpu_sweep[WORLD]:.2f}")
    print(f"distributed_speedup={per_sweep[1] / per_sweep[WORLD]:.2f} "
          f"bytes_per_sweep={sent:.0f}")


if __name__ == "__main__":
    main()
