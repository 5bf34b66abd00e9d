"""Component-switch latency of the Peek dashboard, Python side.

N = 10,000 samples, 6 LeNet-shaped blocks (input 28x28, relu1 6x24x24, relu2 6x8x8 pooled,
fc1 120, fc2 84, fc3 10), rank 10. The fitted factors are synthetic (the views only read the
fitted attributes), so the number measures the widgets, not the engine.

Measured: the time from setting ``peek.component`` until every view's data is updated (all
observers run synchronously), median over many switches. "cold" switches see a component's
gallery images for the first time; "warm" ones see them again. Then a 100-tile gallery alone
(one TileGrid: all pixels in one buffer): the time until its tiles are updated for a new
component, with the conv block's spatial map drawn over the inputs and without.
Last lines: ``gallery_100_tiles_ms=<median>`` and
``component_switch_ms=<median warm+cold over all switches>``.
"""

from __future__ import annotations

import time
import types

import numpy as np
import torch

from peekwidgets.blocks import Block, Blocks
from peekwidgets.viewmodel import ViewModel
from peekwidgets.widgets import InputGallery, Peek

N, RANK, GOAL_MS = 10_000, 10, 50.0
SHAPES = {  # name: (mode shape, spatial shape)
    "input": ((784,), (28, 28)),
    "relu1": ((6, 576), (24, 24)),
    "relu2": ((16, 64), (8, 8)),
    "fc1": ((120,), None),
    "fc2": ((84,), None),
    "fc3": ((10,), None),
}


def synthetic(seed: int = 0):
    rng = np.random.default_rng(seed)
    blocks = []
    for name, (shape, spatial) in SHAPES.items():
        if name == "input":
            data = torch.from_numpy(rng.random((N, *shape), dtype=np.float32))
        else:  # never read by the views: a zero-stride view, no memory
            data = torch.zeros((1, *shape)).expand(N, *shape)
        blocks.append(Block(name, data, spatial))
    blocks = Blocks(blocks, labels=rng.integers(0, 10, N), sample_shape=(1, 28, 28))
    A = rng.standard_normal((N, RANK))
    A /= np.linalg.norm(A, axis=0)
    estimator = types.SimpleNamespace(
        weights_=np.sort(rng.random(RANK))[::-1] + 0.1, A_=A,
        factors_={n: [rng.standard_normal((d, RANK)) for d in s] for n, (s, _) in SHAPES.items()},
        block_names_=list(SHAPES), block_kinds_=["matrix" if len(s) == 1 else "tensor"
                                                 for s, _ in SHAPES.values()],
        explained_variance_=rng.random((len(SHAPES), RANK)) / RANK,
        fit_={n: 0.8 for n in SHAPES}, nonnegative=False,
    )
    return blocks, estimator


def switch_times(peek, order) -> np.ndarray:
    times = []
    for r in order:
        t0 = time.perf_counter()
        peek.component = int(r)
        times.append(time.perf_counter() - t0)
    return np.array(times) * 1e3


def gallery_times(blocks, estimator, top_k: int = 100) -> dict:
    """Median ms of a ``top_k``-tile gallery update per component switch, by selected block."""
    gallery = InputGallery(ViewModel(blocks, estimator), top_k=top_k)
    out = {}
    for block in ("input", "relu1"):  # relu1: its spatial map is drawn over every input
        gallery.block = block
        times = switch_times(gallery, np.tile(np.arange(RANK), 5))
        assert len(gallery.top_grid.captions) == top_k
        out[block] = float(np.median(times))
    return out


def main():
    blocks, estimator = synthetic()
    t0 = time.perf_counter()
    peek = Peek.from_fitted(blocks, estimator)
    print(f"dashboard built in {time.perf_counter() - t0:.2f} s "
          f"(N={N}, {len(SHAPES)} blocks, rank {RANK})")
    results = {}
    for block in ("relu1", "fc1", "input"):
        peek.block = block
        peek.views["gallery"].renderer.clear_cache()
        cold = switch_times(peek, list(range(1, RANK)) + [0])
        warm = switch_times(peek, np.tile(np.arange(RANK), 10))
        results[block] = (cold, warm)
        print(f"block {block:<6} cold median {np.median(cold):6.2f} ms  "
              f"warm median {np.median(warm):6.2f} ms  warm p90 {np.percentile(warm, 90):6.2f} ms")
    every = np.concatenate([np.concatenate(v) for v in results.values()])
    median = float(np.median(every))
    print(f"all switches: median {median:.2f} ms, goal {GOAL_MS:.0f} ms "
          f"(median / goal = {median / GOAL_MS:.2f})")
    tiles = gallery_times(blocks, estimator)
    for block, ms in tiles.items():
        what = "spatial map over the inputs" if block != "input" else "plain inputs"
        print(f"100-tile gallery, block {block:<6} ({what}): median {ms:6.2f} ms "
              f"(median / goal = {ms / GOAL_MS:.2f})")
    print(f"gallery_100_tiles_ms={max(tiles.values()):.2f}")
    print(f"component_switch_ms={median:.2f}")


if __name__ == "__main__":
    main()
