"""Block layout: how each captured output is shaped, reduced, stored and checked.

* **Blocks**: a 2-D output ``(N, D)`` is a matrix block; a 3-D sequence output
  ``(N, T, D)`` is a tensor block as is; a conv map ``(N, C, H, W)`` (or
  ``(N, C, D, H, W)``) is a tensor block ``(N, C, H*W)`` with
  ``spatial_shape=(H, W)``; ``(N,)`` becomes ``(N, 1)``. ``flatten=True``
  makes every block a matrix. Every block is stored as float32.
* **Outputs that are not a tensor** (:func:`pick`): of a tuple or list
  (``nn.LSTM``, ``nn.MultiheadAttention``) the first tensor is captured; of a
  dict, its only tensor value. A dict with several tensor values needs a
  choice, ``output_keys={layer: key}`` (which also picks another item of a
  tuple, by index, or one token of a ``(N, T, D)`` tensor, by its index
  along ``T``). ``meta["output_key"]`` records the item taken.
* **Channels-last maps** (:func:`channels_last`): a map ``(N, H, W, C)``
  (Swin's stages) is stored as ``(N, C, H*W)`` like any other map, with
  ``meta["channels_last"] = True``; ``meta["raw_shape"]`` keeps ``(H, W, C)``.
* **Samples first**: every captured output has the samples as its first
  dimension, like the inputs. Sequence models built with
  ``batch_first=False`` read ``(T, N, D)``; build them with
  ``batch_first=True`` (the weights load unchanged) to capture them.
* **Memory budget** (:class:`peekwidgets.capture.storage.Budget`): blocks are placed
  in forward order, input first, on the model's device while they fit, else
  in host memory (pinned for CUDA models), else in a memory-mapped file in a
  temporary folder that is deleted with the block's data. A conv map with
  more than ``max_positions`` spatial positions that does not fit in memory
  is first reduced by adaptive average pooling to the largest grid
  ``(h, w)`` with ``h * w <= max_positions`` and the map's aspect ratio
  (``meta["pooled_from"]`` keeps the original ``(H, W)``). Under a process
  group, rank 0 decides which maps are pooled (by its budget and its shard)
  and every process follows it, so that all shards have the same layout;
  where a block is stored stays each process's own choice. Each block is
  allocated once, for the number of samples the inputs report (``len`` of a
  tensor, Dataset or DataLoader's sampler); when that is unknown (a
  generator), for 16 batches, growing by doubling (a block that outgrows its
  tier moves to the next one) and trimmed at the end.
* **The input block** is reduced like the maps, but by the bound alone: an
  input image or volume with more than ``max_positions`` positions (224 x 224
  RGB photographs: 50,176 per channel) is always pooled to that grid (16 x 16
  by default; ``meta["pooled_from"]``), whatever the budget, so that the raw
  pixels neither dominate the fit nor its memory. The views draw the inputs
  as they were: the target of a pooled image also keeps its thumbnails
  (:func:`thumbnail_grid`: at most 64 x 64, the image itself when smaller),
  float16, in the budget like a block, returned as ``Blocks.thumbnails``
  (not fitted). ``max_positions=None`` keeps the raw inputs.
* **Repeating a capture** (``like=``, for folding new inputs into a fit): the
  layout follows the earlier blocks, not the budget. Each block's meta keeps
  what that takes: ``raw_shape`` (the per-sample shape as it arrived),
  ``pooled_from`` and ``flattened_from``.
* **Norms and NaN/Inf**: each block's squared Frobenius norm is accumulated
  batch by batch (float32 products of chunks, summed in float64); a NaN or Inf
  raises an error naming the block and the first bad sample (checked when the
  norms are read, every few batches, and at the end). Blocks are stored in
  float32 (or the float16/bfloat16 the model gives); float64 values beyond
  float32's range raise an error that says so.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from peekwidgets.blocks import NORM_ELEMENTS, Block, Blocks
from peekwidgets.capture.layers import resolve_layers
from peekwidgets.capture.source import fields
from peekwidgets.capture.storage import Store

__all__ = [
    "Target", "Folder", "follow", "pick", "layer_shape", "channels_last", "thumbnail_grid",
    "BUDGET", "DEFAULT_MAX_POSITIONS", "THUMBNAIL_POSITIONS",
]

#: Spatial positions (16 x 16) that a conv map is pooled to when it does not fit in memory,
#: and an input image with more positions always.
DEFAULT_MAX_POSITIONS = 256

#: Positions (64 x 64) of the thumbnails kept to draw a pooled input image.
THUMBNAIL_POSITIONS = 64 * 64

_FLOAT16_RANGE = (-65504.0, 65504.0)

#: ``Target(pool=BUDGET)``: the memory budget decides whether a map is pooled.
BUDGET = "budget"

_LAYOUT_KEYS = ("raw_shape", "pooled_from", "flattened_from")


def _pooled_grid(spatial, max_positions: int) -> tuple[int, ...]:
    """Largest grid with the map's aspect ratio and at most ``max_positions`` positions."""
    scale = (max_positions / math.prod(spatial)) ** (1 / len(spatial))
    grid = [max(1, int(s * scale)) for s in spatial]
    while math.prod(grid) > max_positions:  # rounding can overshoot only when a side hit 1
        grid[grid.index(max(grid))] -= 1
    return tuple(grid)


def thumbnail_grid(spatial) -> tuple[int, ...]:
    """The ``(h, w)`` of an input image's thumbnails: its own ``(H, W)`` when it has at most
    :data:`THUMBNAIL_POSITIONS` positions, else the largest grid within them with its aspect
    ratio."""
    if math.prod(spatial) <= THUMBNAIL_POSITIONS:
        return tuple(spatial)
    return _pooled_grid(spatial, THUMBNAIL_POSITIONS)


def _shape_or_none(value):
    return None if value is None else tuple(int(s) for s in value)


def _like_grid(like: Block) -> tuple[int, ...]:
    """The grid that an earlier block's map was pooled to."""
    if like.spatial_shape is not None:
        return like.spatial_shape
    if "flattened_from" in like.meta:
        return tuple(like.meta["flattened_from"][1:])
    raise ValueError(
        f"like= block {like.name!r} has meta['pooled_from'] but neither a spatial_shape nor "
        "meta['flattened_from'] that says the grid it was pooled to; pass blocks made by "
        "capture, or capture without like="
    )


def _layout_text(mode_shape, spatial_shape, meta) -> str:
    notes = [f"output {tuple(meta['raw_shape'])}"] if meta.get("raw_shape") else []
    if spatial_shape:
        notes.append("map " + "x".join(map(str, spatial_shape)))
    if meta.get("pooled_from"):
        notes.append("pooled from " + "x".join(map(str, meta["pooled_from"])))
    if meta.get("flattened_from"):
        notes.append(f"flattened from {tuple(meta['flattened_from'])}")
    return f"{tuple(mode_shape)}" + (f" ({', '.join(notes)})" if notes else "")


def _check_like(like: Block, row, spatial_shape, meta):
    """Raise unless a new block's layout equals the earlier block ``like``'s."""
    keys = [k for k in _LAYOUT_KEYS if k != "raw_shape" or "raw_shape" in like.meta]
    new = (tuple(row), spatial_shape, *(_shape_or_none(meta.get(k)) for k in keys))
    old = (like.mode_shape, like.spatial_shape, *(_shape_or_none(like.meta.get(k)) for k in keys))
    if new != old:
        raise ValueError(
            f"block {like.name!r} no longer matches the earlier capture (like=): it would now be "
            f"{_layout_text(row, spatial_shape, meta)}, the earlier block is "
            f"{_layout_text(like.mode_shape, like.spatial_shape, like.meta)}; capture with the "
            "same model architecture and inputs shaped like the earlier ones, or capture "
            "without like= and fit again"
        )


def follow(model: nn.Module, like, layers, include_input, flatten, output_keys):
    """``(layers, include_input, flatten, output_keys)`` that repeat the capture ``like``.

    Raises when an explicitly given ``layers``, ``include_input``, ``flatten``
    or ``output_keys`` disagrees with ``like``.
    """
    if not isinstance(like, Blocks):
        raise TypeError(
            f"like must be the Blocks of an earlier capture, got {type(like).__name__}"
        )
    names = [n for n in like.names if n != "input"]
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise ValueError(
            f"like= has blocks {missing} that are not modules of {type(model).__name__}; "
            "capture with the model that made like=, or capture without like="
        )
    fix = "leave it out (like= decides) or capture without like="
    if not (isinstance(layers, str) and layers == "auto"):
        chosen = resolve_layers(model, layers)
        if set(chosen) != set(names):
            raise ValueError(
                f"layers={layers!r} selects {chosen}, but like= has the layer blocks {names}; "
                f"{fix}"
            )
    has_input = "input" in like.names
    if include_input is not None and bool(include_input) != has_input:
        raise ValueError(
            f"include_input={include_input!r}, but like= {'has' if has_input else 'has no'} "
            f"input block; {fix}"
        )
    flattened = any("flattened_from" in b.meta for b in like)
    moot = not flattened and all(b.kind == "matrix" and not b.spatial_shape for b in like)
    if flatten is not None and not moot and bool(flatten) != flattened:
        raise ValueError(
            f"flatten={flatten!r}, but like= was captured with flatten={flattened} (its blocks "
            f"{'have' if flattened else 'have no'} meta['flattened_from']); {fix}"
        )
    keys = {b.name: b.meta["output_key"] for b in like if "output_key" in b.meta}
    given = dict(output_keys or {})
    clash = {n: k for n, k in given.items() if n in keys and keys[n] != k}
    if clash:
        raise ValueError(
            f"output_keys={clash!r}, but like= captured "
            f"{ {n: keys[n] for n in clash}!r}; {fix}"
        )
    return names, has_input, flattened, {**given, **keys}


def _holds(item, leaf) -> bool:
    item = fields(item)
    if isinstance(item, leaf):
        return True
    if isinstance(item, Mapping):
        item = list(item.values())
    return isinstance(item, (tuple, list)) and any(_holds(v, leaf) for v in item)


def pick(output, key=None, *, name: str, leaf=torch.Tensor):
    """``(item, key)``: the tensor of a layer's ``output`` that its block holds, and its key.

    Parameters
    ----------
    output : tensor, tuple, list, dict or dataclass (nested), or its :func:`describe` tree
    key : str, int or None
        The item to take: a dict key, a tuple index, or for a tensor
        ``(N, T, ...)`` an index along ``T`` (the item of each sample); None
        takes the tensor itself, the first tensor of a tuple, or the only
        tensor of a dict.
    name : str
        The layer, for error messages.
    leaf : type
        What counts as a tensor: ``torch.Size`` for a description.

    Returns
    -------
    item : leaf or None
        None when the output holds no tensor.
    key : str, int or None
        The key taken, None for a tensor output.
    """
    output = fields(output)
    if key is None:
        if isinstance(output, leaf):
            return output, None
        if isinstance(output, Mapping):
            keys = [k for k, v in output.items() if _holds(v, leaf)]
            if len(keys) > 1:
                raise ValueError(
                    f"layer {name!r} returns a dict with tensors under the keys {keys}; say "
                    f"which one to capture: output_keys={{{name!r}: {keys[0]!r}}}"
                )
        elif isinstance(output, (tuple, list)):
            keys = [i for i, v in enumerate(output) if _holds(v, leaf)][:1]
        else:
            return None, None
        return (pick(output[keys[0]], name=name, leaf=leaf)[0], keys[0]) if keys else (None, None)
    if isinstance(output, leaf):  # a tensor (N, T, ...): the key indexes T (a ViT's class token)
        shape = output if leaf is torch.Size else output.shape
        size = shape[1] if len(shape) >= 2 else 0
        if isinstance(key, int) and -size <= key < size:
            item = torch.Size((shape[0], *shape[2:])) if leaf is torch.Size else output[:, key]
            return item, key
        valid = False
        choices = (f"a tensor of shape {tuple(shape)}, whose second dimension takes the indices "
                   f"0 to {size - 1}" if size else f"a tensor of shape {tuple(shape)}")
    elif isinstance(output, Mapping):
        valid = key in output
        choices = f"a dict with the keys {list(output)}"
    elif isinstance(output, (tuple, list)):
        valid = isinstance(key, int) and -len(output) <= key < len(output)
        choices = f"a tuple of {len(output)} items (indices 0 to {len(output) - 1})"
    else:
        valid, choices = False, f"{type(output).__name__}, which has no items"
    if not valid:
        raise ValueError(
            f"output_keys[{name!r}] = {key!r}, but layer {name!r} returns {choices}; pick one "
            "of them, or leave the layer out of output_keys"
        )
    return pick(output[key], name=name, leaf=leaf)[0], key


def layer_shape(name: str, module: nn.Module, described, rows: int, key=None):
    """``(shape, key)``: a layer's per-sample output shape from the probe's record, or an error.

    ``described`` is the layer's output as :func:`~peekwidgets.capture.borrow.describe` gives
    it, for a probe on ``rows`` samples; ``key`` picks an item of it (:func:`pick`).
    """
    what = f"layer {name!r} ({type(module).__name__})"
    shape, key = pick(described, key, name=name, leaf=torch.Size)
    if shape is None and described == "nested tensor":
        raise TypeError(
            f"{what} returned a nested tensor (sequences of different lengths packed together, "
            "as nn.TransformerEncoder does in eval mode with a padding mask), which has no "
            "per-sample shape; to capture the encoder's layers, build it with "
            "enable_nested_tensor=False (the weights load unchanged)")
    if shape is None:
        kind = described if isinstance(described, str) else type(described).__name__
        raise TypeError(
            f"{what} returned {kind}, not a tensor; capture a module whose output is a tensor"
        )
    if len(shape) == 0 or shape[0] != rows:
        raise ValueError(
            f"{what} returned shape {tuple(shape)} for a batch of {rows} samples; capture "
            "needs one output per sample, with the batch as the first dimension (a scalar such "
            "as a loss cannot be captured; a (T, N, D) sequence layer can when the model is "
            "built with batch_first=True; else pick another layer)"
        )
    return tuple(shape[1:]), key


def channels_last(name: str, module: nn.Module, shape, order) -> bool:
    """Whether a layer's per-sample output ``shape`` is a channels-last map ``(H, W, C)``.

    It is when the last module with parameters that ran inside the layer (in
    the probe's ``order`` of names) acts on the last dimension, of size ``C``:
    a ``Linear`` with ``C`` outputs or a ``LayerNorm`` over ``C``, and ``C``
    is not also the first dimension.
    """
    if len(shape) != 3 or shape[-1] == shape[0]:
        return False
    inside = [n for n in order if n == name or n.startswith(f"{name}.")]
    for found in reversed(inside):
        leaf = module.get_submodule(found[len(name) + 1:])
        if next(leaf.children(), None) is not None:
            continue
        if isinstance(leaf, nn.Linear):
            return leaf.out_features == shape[-1]
        if isinstance(leaf, nn.LayerNorm):
            return tuple(leaf.normalized_shape) == (shape[-1],)
        if next(leaf.parameters(recurse=False), None) is not None:
            return False
    return False


class Target:
    """One block being filled: its layout, its store, and its streamed squared norm.

    With ``like`` (the same block of an earlier capture) the layout repeats
    that block's: pooled to its grid when it was pooled, else never pooled;
    a different layout raises before anything is allocated. ``pool`` (a grid
    or None) sets the pooling decided elsewhere (by rank 0 of a process
    group) instead of the budget (:data:`BUDGET`). Called as a
    forward hook, it writes the module's output at the current rows. The
    input's target, when it pools an image, also keeps its thumbnails
    (:func:`thumbnail_grid`). ``shard`` (under a process group: this process's rank and the
    index of its first sample in the inputs, None when unknown) names bad samples as the
    user knows them.
    """

    def __init__(self, name, shape, *, is_input, flatten, capacity, budget, folder,
                 max_positions, meta, like=None, key=None, last=False, pool=BUDGET,
                 shard=None):
        self.name, self.meta, self.pool, self.key, self.last = name, meta, None, key, last
        self.shard = shard
        if key is not None:
            meta["output_key"] = key
        self.shape = tuple(shape)  # per-sample shape of what arrives, e.g. (C, H, W)
        meta["raw_shape"] = self.shape
        if last:  # channels last: (H, W, C) arrives, (C, H, W) is laid out
            meta["channels_last"] = True
            shape = (self.shape[-1], *self.shape[:-1])
        spatial = shape[1:] if len(shape) >= 3 else None
        if like is not None:
            pooled = "pooled_from" in like.meta and spatial is not None
            self.pool = _like_grid(like) if pooled else None
        elif pool is not BUDGET:
            self.pool = None if pool is None else tuple(pool)
        elif max_positions is not None and spatial is not None and len(spatial) in (2, 3) \
                and math.prod(spatial) > max_positions:
            if is_input or not budget.fits(4 * capacity * math.prod(shape)):
                self.pool = _pooled_grid(spatial, max_positions)
        self.thumbs = self.thumb_grid = None
        if self.pool is not None:
            meta["pooled_from"] = tuple(spatial)
            if is_input and len(spatial) == 2:
                self.thumb_grid = thumbnail_grid(spatial)
            spatial = self.pool
        stored = tuple(shape) if spatial is None else (shape[0], *spatial)
        self.spatial_shape = None
        if flatten or len(stored) <= 1:
            row = (math.prod(stored),)
            if len(stored) >= 2:
                meta["flattened_from"] = stored
        elif spatial is None:
            row = stored
        elif is_input and stored[0] == 1 and len(spatial) == 2:
            row, self.spatial_shape = (math.prod(spatial),), spatial
        else:
            row, self.spatial_shape = (stored[0], math.prod(spatial)), spatial
        self.row = row
        if like is not None:
            _check_like(like, row, self.spatial_shape, meta)
        self.store = Store(stored, capacity, budget, folder)
        if self.thumb_grid is not None:  # after the block: the budget serves it first
            self.thumbs = Store((shape[0], *self.thumb_grid), capacity, budget, folder,
                                dtype=torch.float16)
        self.squares = []  # per-batch sums of squares (tensors, read at the next check: no sync)
        self.sq, self.checked, self.sq_overflow = 0.0, 0, False
        self.start = self.batch_rows = self.calls = 0

    def begin(self, start: int, n: int):
        """Make room for a batch of ``n`` rows at ``start`` (keeping the rows before it)."""
        for store in (self.store, self.thumbs):
            if store is not None:
                store.reserve(start + n, start)
        self.start, self.batch_rows, self.calls = start, n, 0

    def discard(self):
        """Drop what was stored (after an error)."""
        for store in (self.store, self.thumbs):
            if store is not None:
                store.discard()

    def write(self, y: torch.Tensor):
        """Store ``y : (n, *shape)`` at the current rows and add its squared norm."""
        if y.shape[1:] != self.shape:
            raise ValueError(
                f"block {self.name!r}: the batch starting at sample {self.start} has per-sample "
                f"shape {tuple(y.shape[1:])}, the first batch had {self.shape}; "
                + ("that batch is one sample, and the model squeezes its batch dimension away "
                   "(a .squeeze() in its forward pass): choose a batch size that leaves no "
                   "batch of one, or a DataLoader with drop_last=True" if self.batch_rows == 1 else
                   "every sample must have the same shape (resize or pad the inputs)"))
        if len(y) != self.batch_rows:
            raise ValueError(
                f"block {self.name!r}: the batch starting at sample {self.start} has "
                f"{self.batch_rows} samples, but the output has {len(y)} rows; capture only layers "
                "whose output has one row per sample")
        if y.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            y = _as_float32(y, self.name)  # integers and float64 as stored
        if self.last:
            y = y.permute(0, 3, 1, 2)
        if self.thumbs is not None:
            self.thumbs.write(self.start, _pooled(y, self.thumb_grid).clamp(*_FLOAT16_RANGE))
        if self.pool is not None:
            y = _pooled(y, self.pool)
        self.store.write(self.start, y)
        self.squares.append(_sum_of_squares(y))

    def __call__(self, module, args, output):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError(
                f"layer {self.name!r} ran twice in one forward pass (for the batch starting at "
                f"sample {self.start}); its outputs would mix different activations; capture "
                "a module that runs once per forward pass"
            )
        y, _ = pick(output, self.key, name=self.name)
        if y is None:
            raise TypeError(
                f"layer {self.name!r} returned {type(output).__name__}, not a tensor; "
                "capture a module whose output is a tensor"
            )
        self.write(y)

    def check_finite(self, stop: int):
        """Add the recent batches' squared norms; raise if they show NaN or Inf in rows up to
        ``stop``."""
        values = [float(sq) for sq in self.squares]
        self.squares.clear()
        checked, self.checked = self.checked, stop
        if all(math.isfinite(v) for v in values):
            self.sq += sum(values)
            return
        rows = self.store.data[checked:stop].reshape(stop - checked, -1)
        bad = (~torch.isfinite(rows).all(dim=1)).nonzero()
        if len(bad) == 0:  # float32 squares overflowed: the values are finite
            self.sq_overflow = True  # Block.norm computes the norm in float64
            return
        sample = _sample_name(checked + int(bad[0]), self.shard)
        fix = ("clean the inputs, or leave them out of the blocks (include_input=False)"
               if self.name == "input" else
               "check the inputs and the model's weights, or leave this layer out")
        what = "the input" if self.name == "input" else f"layer {self.name!r}"
        raise ValueError(f"{what} has NaN or Inf values (first at {sample}); {fix}")

    def block(self, n_rows: int) -> Block:
        """The finished block of the first ``n_rows`` rows."""
        sq = None if self.sq_overflow else self.sq
        return Block(self.name, self.store.finish(n_rows, self.row), self.spatial_shape,
                     _stored(self.store, self.meta), sq)

    def thumbnails(self, n_rows: int) -> Block | None:
        """The input's thumbnails of the first ``n_rows`` rows, or None when none were kept."""
        if self.thumbs is None:
            return None
        channels, size = self.thumbs.sample_shape[0], math.prod(self.thumb_grid)
        row = (size,) if channels == 1 else (channels, size)
        return Block("thumbnails", self.thumbs.finish(n_rows, row), self.thumb_grid,
                     _stored(self.thumbs, {"thumbnail_of": self.name}))


def _sample_name(i: int, shard) -> str:
    """Row ``i`` of a capture as the user knows it: its index in the inputs, and under a
    process group (``shard``: ``(rank, index of the shard's first sample or None)``) the
    process that holds it."""
    if shard is None:
        return f"sample {i}"
    rank, start = shard
    if start is None:
        return f"sample {i} of process {rank}'s inputs"
    return f"sample {start + i} (sample {i} of process {rank})"


def _sum_of_squares(y: torch.Tensor) -> torch.Tensor:
    """``sum(y ** 2)`` of a float batch as a scalar tensor (read without a device sync):
    float32 dot products over chunks of ``NORM_ELEMENTS``, summed in float64. About 1e-7
    relative at the speed of one product, where one float32 reduction of a 16M-value batch ran
    2e-4 low and a float64 one 20 times slower; squares beyond float32's range give Inf."""
    flat = y.reshape(-1).float()  # a copy only for a strided or half-precision batch
    step = NORM_ELEMENTS.get(y.device.type, NORM_ELEMENTS["cuda"])
    if len(flat) <= step:
        return torch.dot(flat, flat)
    return torch.stack([torch.dot(part, part) for part in flat.split(step)]).sum(
        dtype=torch.float64)


def _as_float32(y: torch.Tensor, name: str) -> torch.Tensor:
    """``y`` (integers or float64) as the float32 it is stored in; raises when finite float64
    values pass float32's range (they would be stored as Inf)."""
    out = y.float()
    if y.dtype == torch.float64 and not torch.isfinite(out).all() and torch.isfinite(y).all():
        what = "the input" if name == "input" else f"layer {name!r}"
        raise ValueError(
            f"{what} has float64 values beyond float32's range (largest magnitude "
            f"{float(y.abs().max()):.3g}), and blocks are stored in float32; scale them down "
            "(for example with input_fn, or a layer after a normalization), or leave this "
            "layer out")
    return out


def _stored(store: Store, meta: dict) -> dict:
    """``meta`` with where ``store`` keeps its rows (``storage``, ``memmap_path``)."""
    meta = dict(meta, storage=store.tier)
    if store.path is not None:
        meta["memmap_path"] = store.path
    return meta


def _pooled(y: torch.Tensor, grid) -> torch.Tensor:
    """``y : (n, C, *spatial)`` adaptive-average-pooled to ``grid`` (as it is when equal)."""
    if tuple(y.shape[2:]) == tuple(grid):
        return y
    pool = F.adaptive_avg_pool2d if len(grid) == 2 else F.adaptive_avg_pool3d
    return pool(y if y.dtype == torch.float32 else y.float(), grid)


class Folder:
    """A temporary folder for memory-mapped blocks, created on first use."""

    def __init__(self):
        self.path = None

    def __call__(self) -> str:
        if self.path is None:
            self.path = tempfile.mkdtemp(prefix="peekwidgets-")
        return self.path
