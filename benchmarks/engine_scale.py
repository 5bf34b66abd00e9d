"""CoupledCP on a LeNet-shaped problem: seconds per sweep and peak memory, in memory and streamed.

Blocks (N = 10,000 samples, as captured from LeNet-5 on MNIST): input 784, conv1 6 x 576 and
conv2 16 x 64 tensors, fc1 120, fc2 84, fc3 10 matrices; planted nonnegative rank-10 factors
plus 1% noise, clipped at 0 (ReLU-like). Fitted at R = 10, least squares and nonnegative, with
the blocks (a) in memory on the compute device and (b) in memory-mapped ``.npy`` files on the
host, streamed in batches of ``--batch-size`` samples.

Seconds per sweep: ``(median T(13) - median T(3)) / 10`` from fits of fixed sweep counts (a
negative tol), after a warm-up, the counts in turns, so the initialization cancels. Peak memory
(of a 13-sweep fit): on CPU, the peak anonymous resident memory (``RssAnon``, which excludes
the memory-mapped file pages) above its level before the fit (after ``malloc_trim``), sampled
every 5 ms; on CUDA, ``torch.cuda.max_memory_allocated`` above the level before the fit. The
data in memory is listed separately. Block norms are computed before the measured fits
(``Block.norm`` reads 4096-row float64 batches on first use).

Scaling (in memory, least squares, plain sweeps: ``extrapolate=False``): seconds per sweep at
N = 2,500-20,000 (R = 10) and R = 5-40 (N = 10,000), with a least-squares line through each and
its largest relative miss: time per sweep is linear in N and in R where the line fits. Threads:
a large fit (N = 20,000, 438 MiB, above ``LARGE_FIT_BYTES``) with torch at 1 thread and at all
cores; fits below that size run on one thread whatever torch's setting. Times are medians of
``--repeats`` interleaved runs, wall time.

Usage: python benchmarks/engine_scale.py [--device cpu|cuda] [--threads 1] [--batch-size 1000]
       [--repeats 3] [--no-scaling]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from peekwidgets.blocks import Block, Blocks
from peekwidgets.engine import CoupledCP

N, R = 10_000, 10
SHORT, LONG = 3, 13  # sweeps of the two fixed-count fits
_LIBC = ctypes.CDLL("libc.so.6")
SHAPES = {"input": (784,), "conv1": (6, 576), "conv2": (16, 64), "fc1": (120,), "fc2": (84,),
          "fc3": (10,)}


def lenet_blocks(seed: int = 0, n: int = N) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random((n, R), dtype=np.float32)
    out = {}
    for name, shape in SHAPES.items():
        fs = [rng.random((d, R), dtype=np.float32) * (rng.random((d, R)) < 0.5) for d in shape]
        x = a @ fs[0].T if len(fs) == 1 else np.einsum("nr,cr,sr->ncs", a, *fs)
        x += 0.01 * np.sqrt(np.mean(x * x)) * rng.standard_normal(x.shape, dtype=np.float32)
        out[name] = np.maximum(x, 0, out=x)
    return out


def rss_anon() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """Peak memory above the level at entry (CPU: sampled RssAnon; CUDA: allocator peak)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            _LIBC.malloc_trim(0)  # give freed heap back, so the baseline is what is in use
            self.base = rss_anon()
            self.stop = threading.Event()
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_anon() - self.base)
            time.sleep(0.005)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self.stop.set()
            self.thread.join()
            self.peak = max(self.peak, rss_anon() - self.base)


def timed_fit(blocks, sweeps, device, **params):
    start = time.perf_counter()
    model = CoupledCP(tol=-1, max_iter=sweeps, random_state=0, device=device, **params).fit(blocks)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, model


def per_sweep(blocks, device, repeats, short=SHORT, long=LONG, **params):
    """Seconds per sweep, ``(median T(long) - median T(short)) / (long - short)``, after a
    warm-up, the two counts in turns."""
    times = {short: [], long: []}
    timed_fit(blocks, short, device, **params)
    for rep in range(repeats):
        for k in (short, long) if rep % 2 == 0 else (long, short):
            times[k].append(timed_fit(blocks, k, device, **params)[0])
    return (statistics.median(times[long]) - statistics.median(times[short])) / (long - short)


def run(blocks: Blocks, nonnegative: bool, device, batch_size, repeats):
    """Seconds per sweep, and the peak memory and fit of a ``LONG``-sweep fit."""
    params = dict(rank=R, nonnegative=nonnegative, batch_size=batch_size)
    sec = per_sweep(blocks, device, repeats, **params)
    with PeakMemory(torch.device(device)) as mem:
        _, model = timed_fit(blocks, LONG, device, **params)
    return sec, mem.peak, model


def line(xs, ys) -> str:
    """The least-squares line ``y = a + b x`` and its largest relative miss."""
    b, a = np.polyfit(xs, ys, 1)
    miss = max(abs(a + b * x - y) / y for x, y in zip(xs, ys))
    return f"{a * 1e3:+.1f} ms + {b * 1e6:.3f} us x, largest miss {100 * miss:.1f}%"


def scaling(device, repeats):
    """Seconds per sweep against N and against R (in memory, plain least-squares sweeps)."""
    print("\nscaling (in memory, least squares, plain sweeps)")
    arrays = lenet_blocks(n=20_000)
    ns, rs = (2_500, 5_000, 10_000, 20_000), (5, 10, 20, 40)
    by_n = []
    for n in ns:
        blocks = Blocks.from_arrays({k: torch.from_numpy(v[:n]).to(device)
                                     for k, v in arrays.items()})
        by_n.append(per_sweep(blocks, device, repeats, rank=R, extrapolate=False))
        print(f"  N={n:6d} R={R:3d}: {by_n[-1]:.4f} s a sweep, {by_n[-1] / n * 1e6:.2f} us a "
              "sample")
    print(f"  against N: {line(ns, by_n)}")
    blocks = Blocks.from_arrays({k: torch.from_numpy(v[:N]).to(device)
                                 for k, v in arrays.items()})
    by_r = []
    for r in rs:
        by_r.append(per_sweep(blocks, device, repeats, rank=r, extrapolate=False))
        print(f"  N={N:6d} R={r:3d}: {by_r[-1]:.4f} s a sweep, {by_r[-1] / r * 1e3:.2f} ms a "
              "component")
    print(f"  against R: {line(rs, by_r)}")
    if torch.device(device).type == "cpu":
        blocks = Blocks.from_arrays({k: torch.from_numpy(v) for k, v in arrays.items()})
        before = torch.get_num_threads()
        cores = os.cpu_count() or 1
        for threads in sorted({1, cores}):
            torch.set_num_threads(threads)
            sec = per_sweep(blocks, device, repeats, rank=R, extrapolate=False)
            print(f"  N=20000 ({sum(v.nbytes for v in arrays.values()) / 2**20:.0f} MiB), "
                  f"torch threads {threads}: {sec:.4f} s a sweep")
        torch.set_num_threads(before)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-scaling", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # fixed sweep counts warn of non-convergence
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    arrays = lenet_blocks()
    data_mb = sum(x.nbytes for x in arrays.values()) / 2**20
    load = os.getloadavg()
    print(f"LeNet-shaped blocks, N={N}, R={R}, {data_mb:.0f} MiB float32, device {device}, "
          f"{args.threads} thread(s); load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        mapped = []
        for name, x in arrays.items():
            mm = np.lib.format.open_memmap(Path(tmp) / f"{name}.npy", mode="w+",
                                           dtype=np.float32, shape=x.shape)
            mm[:] = x
            mm.flush()
            mapped.append(Block(name, torch.from_numpy(mm), meta={"storage": "memmap"}))
        in_memory = Blocks([Block(n, torch.from_numpy(x).to(device)) for n, x in arrays.items()])
        del arrays
        for b in (*in_memory, *mapped):  # norms once, outside the measured fits
            b.norm()
        setups = [("in memory", in_memory, None), (f"memmap, batch {args.batch_size}",
                                                   Blocks(mapped), args.batch_size)]
        print(f"{'method':<14} {'storage':<22} {'s/sweep':>8} {'peak MiB':>9} "
              f"{'data in RAM/dev MiB':>20}  fit")
        for nonnegative in (False, True):
            for label, blocks, batch in setups:
                sec, peak, model = run(blocks, nonnegative, device, batch, args.repeats)
                resident = data_mb if blocks is in_memory else 0.0
                fits = " ".join(f"{n}={f:.3f}" for n, f in model.fit_.items())
                method = "nonnegative" if nonnegative else "least squares"
                print(f"{method:<14} {label:<22} {sec:8.3f} {peak / 2**20:9.1f} "
                      f"{resident:20.0f}  {fits}")
    if not args.no_scaling:
        scaling(device, args.repeats)


if __name__ == "__main__":
    main()
