"""CoupledCP on a LeNet-shaped problem: seconds per sweep and peak memory, in memory and streamed.

Blocks (N = 10,000 samples, as captured from LeNet-5 on MNIST): input 784, conv1 6 x 576 and
conv2 16 x 64 tensors, fc1 120, fc2 84, fc3 10 matrices; planted nonnegative rank-10 factors
plus 1% noise, clipped at 0 (ReLU-like). Fitted at R = 10, least squares and nonnegative, with
the blocks (a) in memory on the compute device and (b) in memory-mapped ``.npy`` files on the
host, streamed in batches of ``--batch-size`` samples.

Seconds per sweep: ``(T(long) - T(short)) / (sweeps(long) - sweeps(short))`` with tol=0, so the
initialization cancels. Peak memory: on CPU, the peak anonymous resident memory (``RssAnon``,
which excludes the memory-mapped file pages) above its level before the fit (after
``malloc_trim``), sampled every 5 ms; on CUDA, ``torch.cuda.max_memory_allocated`` above the
level before the fit. The data in memory is listed separately. Block norms are computed
before the measured fits (``Block.norm`` reads 4096-row float64 batches on first use).

Usage: python benchmarks/engine_scale.py [--device cpu|cuda] [--threads 1] [--batch-size 1000]
"""

from __future__ import annotations

import argparse
import ctypes
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from peekwidgets.blocks import Block, Blocks
from peekwidgets.engine import CoupledCP

N, R = 10_000, 10
_LIBC = ctypes.CDLL("libc.so.6")
SHAPES = {"input": (784,), "conv1": (6, 576), "conv2": (16, 64), "fc1": (120,), "fc2": (84,),
          "fc3": (10,)}


def lenet_blocks(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random((N, R), dtype=np.float32)
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


def run(blocks: Blocks, nonnegative: bool, device, batch_size, short=2, long=6):
    times, sweeps, peak = [], [], 0
    for k in (short, long):
        model = CoupledCP(R, nonnegative=nonnegative, tol=0, max_iter=k, random_state=0,
                          device=device, batch_size=batch_size)
        with PeakMemory(torch.device(device)) as mem:
            start = time.perf_counter()
            model.fit(blocks)
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        sweeps.append(model.n_iter_)
        peak = max(peak, mem.peak)
    return (times[1] - times[0]) / (sweeps[1] - sweeps[0]), peak, model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    arrays = lenet_blocks()
    data_mb = sum(x.nbytes for x in arrays.values()) / 2**20
    print(f"LeNet-shaped blocks, N={N}, R={R}, {data_mb:.0f} MiB float32, device {device}, "
          f"{args.threads} thread(s)")
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
                sec, peak, model = run(blocks, nonnegative, device, batch)
                resident = data_mb if blocks is in_memory else 0.0
                fits = " ".join(f"{n}={f:.3f}" for n, f in model.fit_.items())
                method = "nonnegative" if nonnegative else "least squares"
                print(f"{method:<14} {label:<22} {sec:8.3f} {peak / 2**20:9.1f} "
                      f"{resident:20.0f}  {fits}")


if __name__ == "__main__":
    main()
