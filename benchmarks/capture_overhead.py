"""Time capture against a plain ``torch.no_grad()`` forward pass over the same loader.

Two models: DigitsCNN (LeNet-style) on the bundled digits, and torchvision's
resnet18 (weights=None) on 2,000 random 3 x 32 x 32 images. The two timings
are interleaved (their order alternates between repeats) so that machine
noise hits both alike; the ratio is median(capture) / median(plain). The last
line is ``capture_overhead=<ratio>`` of the larger model, resnet18 (goal: at most
1.15); the line before gives both ratios. DigitsCNN's whole pass takes about
20-30 ms of CPU, so capture's fixed cost weighs more there (see
benchmarks/README.md). A third run, "hooks only", is the floor of any capture that
copies what it keeps: forward hooks that copy the same outputs into one preallocated
buffer and take their norms, with nothing else (no probe, layout, budget or checks).

Timings are process CPU time (``time.process_time``) on one thread by
default, which a busy shared machine disturbs far less than wall time;
``--wall`` and ``--threads`` change that. Each line also gives the median
minor page faults of a plain pass and of a capture (fresh pages from the
kernel). The batch size defaults to capture's own default (256).

Usage: python benchmarks/capture_overhead.py [--repeats 7] [--batch-size 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import time

import torch
import torchvision
from torch.utils.data import DataLoader, TensorDataset

from peekwidgets.capture import capture
from peekwidgets.demo.datasets import load_digits
from peekwidgets.demo.models import DigitsCNN


def plain(model, loader):
    with torch.no_grad():
        for x, *_ in loader:
            model(x)


def hooks_only(model, loader, names, rows):
    """The floor of any capture that copies what it keeps: forward hooks that copy each
    output of ``names`` (and each input batch), as they arrive (``rows`` values a sample),
    into one preallocated buffer and take its squared norm, with no probe, layout, pooling,
    budget or checks."""
    sizes = {name: row for name, row in zip(["input", *names], rows)}
    buffer = torch.empty(len(loader.dataset) * sum(sizes.values()))
    views, offset = {}, 0
    for name, row in sizes.items():
        views[name] = buffer[offset:offset + len(loader.dataset) * row].view(-1, row)
        offset += len(loader.dataset) * row
    start, squares = 0, []

    def keep(name, y):
        flat = y.reshape(len(y), -1)
        views[name][start:start + len(y)].copy_(flat)
        squares.append(torch.dot(flat.reshape(-1), flat.reshape(-1)))

    handles = [model.get_submodule(name).register_forward_hook(
        lambda module, args, y, name=name: keep(name, y)) for name in names]
    try:
        with torch.no_grad():
            for x, *_ in loader:
                keep("input", x)
                model(x)
                start += len(x)
    finally:
        for handle in handles:
            handle.remove()
    return buffer


def faults() -> int:
    """Minor page faults of this process so far (pages the kernel handed over)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed(fn, clock) -> tuple[float, int]:
    """``(time, page faults)`` of one call of ``fn``."""
    before, start = faults(), clock()
    result = fn()
    elapsed, faulted = clock() - start, faults() - before
    del result  # freeing the blocks is not part of capturing them
    return elapsed, faulted


def compare(name, model, loader, repeats, clock, min_seconds):
    model.eval()
    blocks = capture(model, loader, progress=False)
    names, rows = blocks.names[1:], [math.prod(b.meta["raw_shape"]) for b in blocks]
    del blocks  # held by nothing while the runs are timed
    runs = {
        "plain": lambda: plain(model, loader),
        "capture": lambda: capture(model, loader, progress=False),
        "hooks": lambda: hooks_only(model, loader, names, rows),
    }
    warm = [timed(run, clock)[0] for run in runs.values()]  # warm-up: pools, first-call costs
    repeats = max(repeats, math.ceil(min_seconds / sum(warm)))  # tiny runs: more repeats
    times = {key: [] for key in runs}
    paged = {key: [] for key in runs}
    for r in range(repeats):
        order = list(runs) if r % 2 == 0 else list(runs)[::-1]
        for key in order:
            elapsed, faulted = timed(runs[key], clock)
            times[key].append(elapsed)
            paged[key].append(faulted)
    medians = {key: statistics.median(values) for key, values in times.items()}
    pages = {key: statistics.median(values) for key, values in paged.items()}
    ratio = medians["capture"] / medians["plain"]
    fastest = min(times["capture"]) / min(times["plain"])
    size = sum(rows) * len(loader.dataset) * 4 / 1e6  # as they arrive, before pooling
    print(f"{name:<28} plain {medians['plain'] * 1e3:8.1f} ms   capture "
          f"{medians['capture'] * 1e3:8.1f} ms   ratio {ratio:.3f} (of minima {fastest:.3f})   "
          f"hooks only {medians['hooks'] * 1e3:8.1f} ms, ratio "
          f"{medians['hooks'] / medians['plain']:.3f}   {len(rows)} blocks, {size:.1f} MB, "
          f"{len(loader)} batches, {repeats} repeats, page faults {pages['plain']:.0f} / "
          f"{pages['capture']:.0f}")
    return ratio


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-seconds", type=float, default=10.0,
                        help="repeat a fast model until both runs took about this long")
    parser.add_argument("--wall", action="store_true", help="time wall clock, not CPU time")
    args = parser.parse_args()
    clock = time.perf_counter if args.wall else time.process_time
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{'wall' if args.wall else 'CPU'} time, batch size {args.batch_size}, "
          f"at least {args.repeats} repeats, medians")
    images = DataLoader(TensorDataset(torch.randn(2000, 3, 32, 32)), batch_size=args.batch_size)
    cases = [
        ("DigitsCNN on digits", DigitsCNN(), DataLoader(load_digits(), batch_size=args.batch_size)),
        ("resnet18 on 2000 x 3x32x32", torchvision.models.resnet18(weights=None), images),
    ]
    digits, resnet = (compare(*case, args.repeats, clock, args.min_seconds) for case in cases)
    print(f"ratios: digits_cnn={digits:.3f} resnet18={resnet:.3f}")
    print(f"capture_overhead={resnet:.3f}")


if __name__ == "__main__":
    main()
