"""Component-switch latency of the Peek dashboard, Python side.

N = 10,000 samples, rank 10, the blocks of one of two models: ``--model lenet`` (the default:
6 LeNet-shaped blocks, input 28x28, relu1 6x24x24, relu2 16x8x8, fc1 120, fc2 84, fc3 10) or
``--model resnet18`` (torchvision's resnet18, ``weights=None``, on 224 x 224 RGB inputs: the
layout ``capture`` gives it, read from a capture of 8 random images, that is the input pooled
to 16 x 16 with its 64 x 64 thumbnails, layer1-4 at 56 x 56 down to 7 x 7, fc 1000). The
fitted factors are synthetic (the views only read the fitted attributes) and so are the input
rows and thumbnails; the other blocks, which the views never read, are zero-stride views. So
the numbers measure the widgets, not the engine.

Measured: the time from setting ``peek.component`` until every view's data is updated (all
observers run synchronously), median over many switches. "cold" switches see a component's
gallery images for the first time; "warm" ones see them again. Then a 100-tile gallery alone
(one TileGrid: all pixels in one buffer): the time until its tiles are updated for a new
component, with the conv block's spatial map drawn over the inputs and without.
Last lines: ``build_s=<seconds to build the dashboard> gallery_100_tiles_ms=<median>`` and
``component_switch_ms=<median warm+cold over all switches>``.

Usage: python benchmarks/widget_latency.py [--model lenet|resnet18]
"""

from __future__ import annotations

import argparse
import time
import types

import numpy as np
import torch

from peekwidgets.blocks import Block, Blocks
from peekwidgets.viewmodel import ViewModel
from peekwidgets.widgets import InputGallery, Peek

N, RANK, GOAL_MS, BUILD_GOAL_S = 10_000, 10, 50.0, 5.0
LENET = {  # name: (mode shape, spatial shape)
    "input": ((784,), (28, 28)),
    "relu1": ((6, 576), (24, 24)),
    "relu2": ((16, 64), (8, 8)),
    "fc1": ((120,), None),
    "fc2": ((84,), None),
    "fc3": ((10,), None),
}


def resnet18_layout() -> Blocks:
    """The blocks ``capture`` gives torchvision's resnet18 on 8 random 224 x 224 images."""
    import torchvision

    from peekwidgets.capture import capture

    model = torchvision.models.resnet18(weights=None)
    return capture(model, torch.rand(8, 3, 224, 224), progress=False)


def synthetic(model: str = "lenet", seed: int = 0):
    """``(blocks, estimator)``: N samples in the layout of ``model``, random input rows (and
    thumbnails), a random fit of rank RANK."""
    rng = np.random.default_rng(seed)

    def rows(block: Block) -> Block:
        shape = block.mode_shape
        if block.name in ("input", "thumbnails"):
            data = torch.from_numpy(rng.random((N, *shape), dtype=np.float32)).to(block.data.dtype)
        else:  # never read by the views: a zero-stride view, no memory
            data = torch.zeros((1, *shape), dtype=block.data.dtype).expand(N, *shape)
        return Block(block.name, data, block.spatial_shape, dict(block.meta))

    if model == "lenet":
        layout = Blocks([Block(name, torch.zeros(1, *shape), spatial)
                         for name, (shape, spatial) in LENET.items()], sample_shape=(1, 28, 28))
    else:
        layout = resnet18_layout()
    thumbs = None if layout.thumbnails is None else rows(layout.thumbnails)
    blocks = Blocks([rows(b) for b in layout], labels=rng.integers(0, 10, N),
                    sample_shape=layout.sample_shape, thumbnails=thumbs)
    A = rng.standard_normal((N, RANK))
    A /= np.linalg.norm(A, axis=0)
    estimator = types.SimpleNamespace(
        weights_=np.sort(rng.random(RANK))[::-1] + 0.1, A_=A,
        factors_={b.name: [rng.standard_normal((d, RANK)) for d in b.mode_shape] for b in blocks},
        block_names_=blocks.names, block_kinds_=[b.kind for b in blocks],
        explained_variance_=rng.random((len(blocks), RANK)) / RANK,
        fit_={b.name: 0.8 for b in blocks}, nonnegative=False,
    )
    return blocks, estimator


def switch_times(peek, order) -> np.ndarray:
    times = []
    for r in order:
        t0 = time.perf_counter()
        peek.component = int(r)
        times.append(time.perf_counter() - t0)
    return np.array(times) * 1e3


def gallery_times(blocks, estimator, spatial: str, top_k: int = 100) -> dict:
    """Median ms of a ``top_k``-tile gallery update per component switch, by selected block
    (``spatial``: a tensor block, whose spatial map is drawn over every input)."""
    gallery = InputGallery(ViewModel(blocks, estimator), top_k=top_k)
    out = {}
    for block in ("input", spatial):
        gallery.block = block
        times = switch_times(gallery, np.tile(np.arange(RANK), 5))
        assert len(gallery.top_grid.captions) == top_k
        out[block] = float(np.median(times))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("lenet", "resnet18"), default="lenet")
    args = parser.parse_args()
    blocks, estimator = synthetic(args.model)
    spatial = next(b.name for b in blocks if b.kind == "tensor" and b.name != "input")
    dense = next(b.name for b in blocks if b.kind == "matrix" and b.name != "input")
    t0 = time.perf_counter()
    peek = Peek.from_fitted(blocks, estimator)
    built = time.perf_counter() - t0
    print(f"{args.model}: N={N}, rank {RANK}, blocks "
          f"{ {b.name: list(b.mode_shape) for b in blocks} }"
          + ("" if blocks.thumbnails is None else
             f", thumbnails {list(blocks.thumbnails.mode_shape)} {blocks.thumbnails.data.dtype}"))
    print(f"dashboard built in {built:.2f} s (goal {BUILD_GOAL_S:.0f} s)")
    results = {}
    for block in (spatial, dense, "input"):
        peek.block = block
        peek.views["gallery"].renderer.clear_cache()
        cold = switch_times(peek, list(range(1, RANK)) + [0])
        warm = switch_times(peek, np.tile(np.arange(RANK), 10))
        results[block] = (cold, warm)
        print(f"block {block:<8} cold median {np.median(cold):6.2f} ms  "
              f"warm median {np.median(warm):6.2f} ms  warm p90 {np.percentile(warm, 90):6.2f} ms")
    every = np.concatenate([np.concatenate(v) for v in results.values()])
    median = float(np.median(every))
    print(f"all switches: median {median:.2f} ms, goal {GOAL_MS:.0f} ms "
          f"(median / goal = {median / GOAL_MS:.2f})")
    tiles = gallery_times(blocks, estimator, spatial)
    for block, ms in tiles.items():
        what = "spatial map over the inputs" if block != "input" else "plain inputs"
        print(f"100-tile gallery, block {block:<8} ({what}): median {ms:6.2f} ms "
              f"(median / goal = {ms / GOAL_MS:.2f})")
    print(f"build_s={built:.2f} gallery_100_tiles_ms={max(tiles.values()):.2f}")
    print(f"component_switch_ms={median:.2f}")


if __name__ == "__main__":
    main()
