"""Time capture against a plain ``torch.no_grad()`` forward pass over the same loader.

Two models: DigitsCNN (LeNet-style) on the bundled digits, and torchvision's
resnet18 (weights=None) on 2,000 random 3 x 32 x 32 images. The two timings
are interleaved (their order alternates between repeats) so that machine
noise hits both alike; the ratio is median(capture) / median(plain). The last
line is ``capture_overhead=<ratio>``, the larger ratio of the two models
(goal: at most 1.15).

Usage: python benchmarks/capture_overhead.py [--repeats 7] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
from torch.utils.data import DataLoader, TensorDataset

from peekwidgets.capture import capture
from peekwidgets.datasets import load_digits
from peekwidgets.models import DigitsCNN


def plain(model, loader):
    with torch.no_grad():
        for x, *_ in loader:
            model(x)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(name, model, loader, repeats):
    model.eval()
    runs = {
        "plain": lambda: plain(model, loader),
        "capture": lambda: capture(model, loader, progress=False),
    }
    for run in runs.values():  # warm-up: thread pools, allocator, first-call overheads
        run()
    times = {key: [] for key in runs}
    for r in range(repeats):
        order = list(runs) if r % 2 == 0 else list(runs)[::-1]
        for key in order:
            times[key].append(timed(runs[key]))
    medians = {key: statistics.median(values) for key, values in times.items()}
    ratio = medians["capture"] / medians["plain"]
    blocks = capture(model, loader, progress=False)
    size = sum(b.size for b in blocks) * 4 / 1e6
    print(f"{name:<28} plain {medians['plain'] * 1e3:8.1f} ms   capture "
          f"{medians['capture'] * 1e3:8.1f} ms   ratio {ratio:.3f}   "
          f"({len(blocks)} blocks, {size:.1f} MB, {len(loader)} batches)")
    return ratio


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"batch size {args.batch_size}, {args.repeats} repeats, medians")
    digits = DataLoader(load_digits(), batch_size=args.batch_size)
    images = TensorDataset(torch.randn(2000, 3, 32, 32))
    ratios = [
        compare("DigitsCNN on digits", DigitsCNN(), digits, args.repeats),
        compare("resnet18 on 2000 x 3x32x32", torchvision.models.resnet18(weights=None),
                DataLoader(images, batch_size=args.batch_size), args.repeats),
    ]
    print(f"capture_overhead={max(ratios):.3f}")


if __name__ == "__main__":
    main()
