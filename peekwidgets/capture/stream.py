"""Capture: run a model once over its inputs and keep chosen layer outputs as blocks.

:func:`capture` hooks the chosen modules, streams the inputs through the model
in batches, and writes each batch of outputs straight into a preallocated
block (see :mod:`peekwidgets.blocks`). The user's model is borrowed, never
changed: it runs in eval mode under :func:`torch.no_grad`, and every hook,
``training`` flag and buffer is restored on the way out, also after an
exception or a KeyboardInterrupt.

Choices, documented once here:

* **Which layers** (:func:`resolve_layers`): ``"auto"`` takes the stage outputs
  of common architectures plus the logits (the last ``nn.Linear``).
* **Modules that run more than once per forward pass** (torchvision's
  ``BasicBlock`` calls its ``relu`` twice) are found by a probe forward pass on
  the first two samples. ``"auto"`` never picks them; naming one raises an
  error that suggests the enclosing block. Every batch re-checks that each
  hooked module ran exactly once.
* **Blocks**: a 2-D output ``(N, D)`` is a matrix block; a 3-D sequence output
  ``(N, T, D)`` is a tensor block as is; a conv map ``(N, C, H, W)`` (or
  ``(N, C, D, H, W)``) is a tensor block ``(N, C, H*W)`` with
  ``spatial_shape=(H, W)``; ``(N,)`` becomes ``(N, 1)``. ``flatten=True``
  makes every block a matrix. Module outputs that are tuples (``nn.LSTM``)
  are captured at their first tensor. Everything is stored as float32.
* **Memory budget** (:class:`peekwidgets.capture.storage.Budget`): blocks are placed
  in forward order, input first, on the model's device while they fit, else
  in host memory (pinned for CUDA models), else in a memory-mapped file in a
  temporary folder that is deleted with the block's data. A conv map with
  more than ``max_positions`` spatial positions that does not fit in memory
  is first reduced by adaptive average pooling to the largest grid
  ``(h, w)`` with ``h * w <= max_positions`` and the map's aspect ratio
  (``meta["pooled_from"]`` keeps the original ``(H, W)``); the input block is
  never pooled. Each block is allocated once, for the number of samples the
  inputs report (``len`` of a tensor, Dataset or DataLoader's sampler); when
  that is unknown (a generator), for 16 batches, growing by doubling (a block
  that outgrows its tier moves to the next one) and trimmed at the end.
* **Repeating a capture** (``like=``, for folding new inputs into a fit): the
  layout follows the earlier blocks, not the budget. Each block's meta keeps
  what that takes: ``raw_shape`` (the per-sample shape as it arrived),
  ``pooled_from`` and ``flattened_from``.
* **Norms and NaN/Inf**: each block's squared Frobenius norm is accumulated
  batch by batch; a NaN or Inf raises an error naming the block and the first
  bad sample (checked every 16 batches, when the norms are read, and at the end).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import fnmatch
import itertools
import math
import re
import tempfile
from collections.abc import Iterable, Mapping, Sized
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset
from tqdm.auto import tqdm

from peekwidgets.blocks import Block, Blocks
from peekwidgets.capture.storage import Budget, Store

__all__ = ["capture", "resolve_layers", "DEFAULT_BATCH_SIZE", "DEFAULT_MAX_POSITIONS"]

#: Samples per batch when ``inputs`` is a tensor or a Dataset.
DEFAULT_BATCH_SIZE = 256
#: Spatial positions (16 x 16) that a conv map is pooled to when it does not fit in memory.
DEFAULT_MAX_POSITIONS = 256
#: Batches between two NaN/Inf checks (on CUDA a check waits for the device).
CHECK_EVERY = 16

_INPUT_KEYS = ("input", "inputs", "image", "images", "x", "pixel_values", "data", "features")
_LABEL_KEYS = ("label", "labels", "target", "targets", "y")
_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh,
    nn.Softplus, nn.Softsign, nn.LogSigmoid, nn.Tanhshrink,
)
_POOLS = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool1d, nn.LPPool2d,
)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


# ----------------------------------------------------------------------------- layers

def resolve_layers(model: nn.Module, layers="auto") -> list[str]:
    """Names of the modules that :func:`capture` hooks, in registration order.

    Parameters
    ----------
    model : nn.Module
    layers : "auto", str, type, or list of them
        ``"auto"``: the stage outputs of common architectures plus the logits
        (the last ``nn.Linear``):

        * torchvision ResNet-like nets (children ``layer1``, ``layer2``, ...):
          each ``layerN`` stage;
        * nets with a ``features`` ``nn.Sequential`` that holds pooling layers
          (VGG, AlexNet): the module just before each pool (the ReLU);
        * other ``features`` Sequentials (MobileNet, EfficientNet): the block
          before each block that downsamples (a strided conv), and the last one;
        * anything else (LeNet-style nets, MLPs): every activation module
          (ReLU, GELU, Tanh, ...), or every conv and linear layer when the
          net applies its nonlinearities as functions.

        Otherwise module names (``"layer2.1.conv1"``), glob patterns matched
        with :func:`fnmatch.fnmatch` against the dotted names (``"layer*"``,
        ``"features.*"``; ``*`` also crosses dots) or module types
        (``nn.Conv2d``), alone or in a list.

    Returns
    -------
    list of str
        Module names. :func:`capture` puts them in forward order and, for
        ``"auto"``, drops modules that do not run exactly once per forward pass.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(layers, str) and layers == "auto":
        return _auto_layers(model)
    named = {name: module for name, module in model.named_modules() if name}
    selectors = list(layers) if isinstance(layers, (list, tuple, set)) else [layers]
    chosen = set()
    for selector in selectors:
        chosen.update(_match(model, named, selector))
    return [name for name in named if name in chosen]


def _match(model: nn.Module, named: dict, selector) -> list[str]:
    where = type(model).__name__
    if isinstance(selector, type) and issubclass(selector, nn.Module):
        found = [name for name, module in named.items() if isinstance(module, selector)]
        if not found:
            present = sorted({type(m).__name__ for m in named.values()})
            raise ValueError(
                f"{where} has no module of type {selector.__name__}; its module types are "
                f"{present}"
            )
        return found
    if not isinstance(selector, str):
        raise TypeError(
            f"layers must be 'auto', module names, glob patterns or nn.Module types, got "
            f"{selector!r} of type {type(selector).__name__}"
        )
    if any(c in selector for c in "*?["):
        found = fnmatch.filter(named, selector)
        if found:
            return found
        key = re.sub(r"[*?\[\]]", "", selector)
        kind = "pattern"
    elif selector in named:
        return [selector]
    else:
        key, kind = selector, "module named"
    close = difflib.get_close_matches(key, list(named), n=5, cutoff=0.4)
    top = [name for name, _ in model.named_children()]
    hint = f"closest names: {close}" if close else f"top-level modules: {top}"
    raise ValueError(
        f"{where} has no {kind} {selector!r}; {hint} (print(model) or model.named_modules() "
        "lists every name)"
    )


def _leaves(model: nn.Module):
    return [(n, m) for n, m in model.named_modules() if n and next(m.children(), None) is None]


def _downsamples(module: nn.Module) -> bool:
    return any(isinstance(m, _CONVS) and max(m.stride) > 1 for m in module.modules())


def _sequential_stages(prefix: str, seq: nn.Sequential) -> list[str]:
    kids = list(seq.named_children())
    pools = [i for i, (_, m) in enumerate(kids) if isinstance(m, _POOLS)]
    if pools:
        ends = [i - 1 for i in pools if i > 0]
    else:
        ends = [i - 1 for i, (_, m) in enumerate(kids) if i > 0 and _downsamples(m)]
        ends.append(len(kids) - 1)
    return [f"{prefix}.{kids[i][0]}" for i in sorted(set(ends))]


def _auto_layers(model: nn.Module, calls: Mapping[str, int] | None = None) -> list[str]:
    """The ``"auto"`` choice; with ``calls`` (from a probe), only modules that ran once."""

    def once(name):
        return calls is None or calls.get(name) == 1

    children = dict(model.named_children())
    stages = [n for n in children if re.fullmatch(r"layer\d+", n)]
    if not stages and isinstance(children.get("features"), nn.Sequential):
        stages = _sequential_stages("features", children["features"])
    picks = [n for n in stages if once(n)]
    if not picks:
        leaves = [(n, m) for n, m in _leaves(model) if once(n)]
        picks = [n for n, m in leaves if isinstance(m, _ACTIVATIONS)] or [
            n for n, m in leaves if isinstance(m, (*_CONVS, nn.Linear))
        ]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and once(n)]
    if linears and linears[-1] not in picks:
        picks.append(linears[-1])
    return picks


# ----------------------------------------------------------------------------- inputs

def _as_tensor(value):
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    return value if isinstance(value, torch.Tensor) else None


def _default_input(batch):
    tensor = _as_tensor(batch)
    if tensor is not None:
        return tensor, None
    if isinstance(batch, (tuple, list)):
        for i, item in enumerate(batch):
            tensor = _as_tensor(item)
            if tensor is not None:
                label = batch[i + 1] if i == 0 and len(batch) > 1 else None
                return tensor, label
        kinds = [type(item).__name__ for item in batch]
        raise TypeError(
            f"a batch of type {type(batch).__name__} holds no tensor (its items are {kinds}); "
            "pass input_fn=lambda batch: ... returning the model input tensor"
        )
    if isinstance(batch, Mapping):
        for key in _INPUT_KEYS:
            tensor = _as_tensor(batch.get(key))
            if tensor is not None:
                label = next((batch[k] for k in _LABEL_KEYS if k in batch), None)
                return tensor, label
        raise TypeError(
            f"a dict batch has no input under any of the keys {list(_INPUT_KEYS)}; its keys are "
            f"{list(batch)}; pass input_fn=lambda batch: batch['<key>']"
        )
    raise TypeError(
        f"a batch of type {type(batch).__name__} is not a tensor, tuple, list or dict; pass "
        "input_fn=lambda batch: ... returning the model input tensor"
    )


def _labels_array(value, n: int, strict: bool):
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.ndim == 1 and len(array) == n:
        return array
    if strict:
        raise ValueError(
            f"label_fn returned labels of shape {array.shape} for a batch of {n} samples; "
            f"expected shape ({n},)"
        )
    return None


class _Source:
    """Batches ``(x, labels or None)`` from a tensor, Dataset, DataLoader or iterable."""

    def __init__(self, inputs, batch_size, input_fn, label_fn):
        self.input_fn, self.label_fn = input_fn, label_fn
        self.n_rows = self.n_batches = None
        if isinstance(inputs, np.ndarray):
            inputs = torch.from_numpy(inputs)
        sliceable = isinstance(inputs, (torch.Tensor, TensorDataset))
        if batch_size is not None and not (sliceable or isinstance(inputs, Dataset)):
            raise ValueError(
                f"batch_size applies to tensors and Datasets; a {type(inputs).__name__} "
                "brings its own batches (set the DataLoader's batch_size instead)"
            )
        size = batch_size or DEFAULT_BATCH_SIZE
        if isinstance(inputs, torch.Tensor):
            if inputs.ndim == 0:
                raise ValueError("inputs is a 0-d tensor; pass samples stacked as (N, ...)")
            self.batches = (inputs[i:i + size] for i in range(0, len(inputs), size))
            self.n_rows = len(inputs)
        elif isinstance(inputs, TensorDataset):
            tensors = inputs.tensors
            self.batches = (
                tuple(t[i:i + size] for t in tensors) for i in range(0, len(inputs), size)
            )
            self.n_rows = len(inputs)
        elif isinstance(inputs, Dataset):
            if not isinstance(inputs, IterableDataset):
                self.n_rows = len(inputs)
            inputs = DataLoader(inputs, batch_size=size)
            self.batches = inputs
        elif isinstance(inputs, DataLoader):
            self.batches = inputs
            self.n_rows = _loader_rows(inputs)
        elif isinstance(inputs, Iterable) and not isinstance(inputs, (str, bytes, Mapping)):
            self.batches = inputs
        else:
            raise TypeError(
                f"inputs must be a DataLoader, Dataset, tensor or iterable of batches, got "
                f"{type(inputs).__name__}"
            )
        if self.n_rows is not None:
            self.n_batches = math.ceil(self.n_rows / size)
        if isinstance(self.batches, Sized):
            with contextlib.suppress(TypeError):
                self.n_batches = len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            if self.input_fn is not None:
                x = _as_tensor(self.input_fn(batch))
                if x is None:
                    raise TypeError(
                        f"input_fn returned {type(self.input_fn(batch)).__name__}; it must "
                        "return the model input as a tensor"
                    )
                label = None
            else:
                x, label = _default_input(batch)
            if x.ndim == 0:
                raise ValueError("a batch input is a 0-d tensor; batches must be (n, ...)")
            if self.label_fn is not None:
                yield x, _labels_array(self.label_fn(batch), x.shape[0], strict=True)
            else:
                yield x, _labels_array(label, x.shape[0], strict=False)


def _loader_rows(loader: DataLoader):
    if loader.batch_size is None:
        return None
    try:
        n = len(loader.sampler)
    except TypeError:
        return None
    return n - n % loader.batch_size if loader.drop_last else n


# ----------------------------------------------------------------------------- the model

def _module_device(model: nn.Module) -> torch.device:
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def _float_dtype(model: nn.Module):
    tensors = itertools.chain(model.parameters(), model.buffers())
    return next((t.dtype for t in tensors if t.is_floating_point()), None)


def _full_device(device) -> torch.device:
    """``torch.device(device)`` with the current CUDA index filled in, as tensors report it."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


@contextlib.contextmanager
def _borrowed(model: nn.Module):
    """Eval mode for the duration; hooks (appended to the yielded list), flags, buffers restored."""
    flags = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.clone()) for b in model.buffers()]
    handles = []
    try:
        model.eval()
        yield handles
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in flags:
            if module.training != flag:
                module.training = flag
        with torch.no_grad():
            for buffer, saved in buffers:
                if not torch.equal(buffer, saved):
                    buffer.copy_(saved)


def _first_tensor(output):
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _probe(net: nn.Module, x: torch.Tensor, handles: list) -> dict:
    """Run ``net(x)`` once with a hook on every module.

    Returns ``{name: [calls, first output or its type name]}`` in the order
    the modules first ran.
    """
    seen = {}

    def hook(name, module, args, output):
        record = seen.setdefault(name, [0, None])
        record[0] += 1
        if record[0] == 1:
            tensor = _first_tensor(output)
            record[1] = tensor.shape if tensor is not None else type(output).__name__

    first = len(handles)
    for name, module in net.named_modules():
        if name:
            handles.append(module.register_forward_hook(partial(hook, name)))
    try:
        net(x)
    finally:
        for handle in handles[first:]:
            handle.remove()
        del handles[first:]
    return seen


def _enclosing(name: str, calls: Mapping[str, int]) -> str | None:
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        parent = ".".join(parts[:cut])
        if calls.get(parent) == 1:
            return parent
    return None


def _check_runs_once(names, calls, net):
    for name in names:
        count = calls.get(name, 0)
        if count == 1:
            continue
        module = type(net.get_submodule(name)).__name__
        if count == 0:
            raise ValueError(
                f"layer {name!r} ({module}) did not run in the forward pass, so it has no "
                "output to capture; choose a module that the model's forward calls"
            )
        parent = _enclosing(name, calls)
        hint = f"capture the enclosing block {parent!r} instead" if parent else (
            "capture a module that runs once per forward pass instead")
        raise ValueError(
            f"layer {name!r} ({module}) runs {count} times per forward pass (one module reused, "
            f"like the ReLU of torchvision's BasicBlock), so its outputs would mix {count} "
            f"different activations; {hint}"
        )


# ----------------------------------------------------------------------------- blocks

def _pooled_grid(spatial, max_positions: int) -> tuple[int, ...]:
    """Largest grid with the map's aspect ratio and at most ``max_positions`` positions."""
    scale = (max_positions / math.prod(spatial)) ** (1 / len(spatial))
    grid = [max(1, int(s * scale)) for s in spatial]
    while math.prod(grid) > max_positions:  # rounding can overshoot only when a side hit 1
        grid[grid.index(max(grid))] -= 1
    return tuple(grid)


_LAYOUT_KEYS = ("raw_shape", "pooled_from", "flattened_from")


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


class _Target:
    """One block being filled: its layout, its store, and its streamed squared norm.

    With ``like`` (the same block of an earlier capture) the layout repeats
    that block's: pooled to its grid when it was pooled, else never pooled;
    a different layout raises before anything is allocated.
    """

    def __init__(self, name, shape, *, is_input, flatten, capacity, budget, folder,
                 max_positions, meta, like=None):
        self.name, self.meta, self.pool = name, meta, None
        self.shape = tuple(shape)  # per-sample shape of what arrives, e.g. (C, H, W)
        meta["raw_shape"] = self.shape
        spatial = self.shape[1:] if len(self.shape) >= 3 else None
        if like is not None:
            pooled = "pooled_from" in like.meta and spatial is not None
            self.pool = _like_grid(like) if pooled else None
        elif not is_input and max_positions is not None and spatial is not None:
            full = 4 * capacity * math.prod(self.shape)
            if len(spatial) in (2, 3) and math.prod(spatial) > max_positions \
                    and not budget.fits(full):
                self.pool = _pooled_grid(spatial, max_positions)
        if self.pool is not None:
            meta["pooled_from"] = tuple(spatial)
            spatial = self.pool
        stored = self.shape if spatial is None else (self.shape[0], *spatial)
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
        self.norms = []  # per-batch norms (tensors, read at the next check: no device sync)
        self.sq, self.checked, self.sq_overflow = 0.0, 0, False
        self.start = self.calls = 0

    def write(self, y: torch.Tensor):
        """Store ``y : (n, *shape)`` at the current rows and add its squared norm."""
        if y.shape[1:] != self.shape:
            raise ValueError(
                f"block {self.name!r}: a batch has per-sample shape {tuple(y.shape[1:])}, the "
                f"first batch had {self.shape}; every sample must have the same shape (resize "
                "or pad the inputs)"
            )
        if y.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            y = y.float()  # integers and float64 as stored, so the norm is the stored one's
        if self.pool is not None:
            pool = F.adaptive_avg_pool2d if len(self.pool) == 2 else F.adaptive_avg_pool3d
            y = pool(y.float(), self.pool)
        store = self.store
        store.data[self.start:self.start + y.shape[0]].copy_(y, non_blocking=store.pinned)
        wide = None if y.dtype == torch.float32 else torch.float32
        self.norms.append(torch.linalg.vector_norm(y, dtype=wide))

    def __call__(self, module, args, output):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError(
                f"layer {self.name!r} ran twice in one forward pass (for the batch starting at "
                f"sample {self.start}); its outputs would mix different activations; capture "
                "a module that runs once per forward pass"
            )
        y = _first_tensor(output)
        if y is None:
            raise TypeError(
                f"layer {self.name!r} returned {type(output).__name__}, not a tensor; "
                "capture a module whose output is a tensor"
            )
        self.write(y)

    def check_finite(self, stop: int):
        """Add the recent batches' norms; raise if they show NaN or Inf in rows up to ``stop``."""
        values = [float(norm) for norm in self.norms]
        self.norms.clear()
        checked, self.checked = self.checked, stop
        if all(math.isfinite(v) for v in values):
            self.sq += sum(v * v for v in values)
            return
        rows = self.store.data[checked:stop].reshape(stop - checked, -1)
        bad = (~torch.isfinite(rows).all(dim=1)).nonzero()
        if len(bad) == 0:  # float32 squares overflowed: the values are finite
            self.sq_overflow = True  # Block.norm recomputes the norm in float64
            return
        sample = checked + int(bad[0])
        what = "the input" if self.name == "input" else f"layer {self.name!r}"
        raise ValueError(
            f"{what} has NaN or Inf values (first at sample {sample}); check the inputs and "
            "the model's weights, or leave this layer out"
        )

    def block(self, n_rows: int) -> Block:
        meta = dict(self.meta, storage=self.store.tier)
        if self.store.path is not None:
            meta["memmap_path"] = self.store.path
        sq = None if self.sq_overflow else self.sq
        return Block(self.name, self.store.finish(n_rows, self.row), self.spatial_shape, meta, sq)


class _Folder:
    """A temporary folder for memory-mapped blocks, created on first use."""

    def __init__(self):
        self.path = None

    def __call__(self) -> str:
        if self.path is None:
            self.path = tempfile.mkdtemp(prefix="peekwidgets-")
        return self.path


# ----------------------------------------------------------------------------- capture

def capture(
    model: nn.Module,
    inputs,
    layers="auto",
    *,
    like: Blocks | None = None,
    input_fn=None,
    label_fn=None,
    include_input: bool | None = None,
    device=None,
    memory_budget=None,
    max_positions: int | None = DEFAULT_MAX_POSITIONS,
    flatten: bool | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> Blocks:
    """Run ``model`` once over ``inputs`` and return the input and layer outputs as blocks.

    Parameters
    ----------
    model : nn.Module
        Returned untouched: same parameters, buffers, ``training`` flags and
        ``requires_grad``, and no hooks left, also after an error or a
        KeyboardInterrupt.
    inputs : DataLoader, Dataset, tensor, numpy array, or iterable of batches
        A tensor or Dataset is cut into batches of ``batch_size`` samples, in
        order. A batch is a tensor, a tuple/list (the input is its first
        tensor, the labels its second item) or a dict (the input under
        ``"input"``, ``"image"``, ``"x"``, ...; labels under ``"label"``,
        ``"target"``, ``"y"``, ...).
    layers : "auto", str, type, or list of them
        See :func:`resolve_layers`.
    like : Blocks, optional
        An earlier capture to repeat, for example to fold new inputs into a
        fit of it: the same blocks in the same order (its layers, the input
        block only if it has one), flattened as it was, and every map that it
        pooled (``meta["pooled_from"]``) pooled to the same grid, whatever
        the memory budget; no other map is pooled. ``layers`` (other than
        ``"auto"``), ``include_input`` and ``flatten`` may be given only when
        they agree with it. A block whose layout would differ (another model
        or input shape) raises an error naming both layouts.
    input_fn : callable, optional
        ``input_fn(batch) -> tensor``: the model input of a batch.
    label_fn : callable, optional
        ``label_fn(batch) -> (n,) labels``; kept only as ``Blocks.labels``.
    include_input : bool, optional
        Default True. Whether the raw inputs become the first block, ``"input"``: images
        ``(N, C, H, W)`` as ``(N, C, H*W)`` with ``spatial_shape=(H, W)``, or
        ``(N, H*W)`` when ``C == 1``; flat inputs ``(N, P)`` as a matrix.
    device : torch.device or str, optional
        Where the forward pass runs; the model's own device by default.
        Batches are moved there (and floating inputs cast to the model's
        dtype). When it differs from the model's device, a copy of the model
        runs there and the user's model stays where it is.
    memory_budget : None, int, str or dict
        Bytes the blocks may take in memory: None for half of the free device
        and host memory, a number or ``"2GB"`` for device and host together,
        or ``{"device": ..., "host": ...}`` per tier. Blocks that do not fit go
        to memory-mapped files (``meta["storage"] == "memmap"``).
    max_positions : int or None
        Bound on the spatial positions of a conv map that does not fit in
        memory: it is pooled to at most this many positions (default 256,
        16 x 16). None never pools.
    flatten : bool, optional
        Default False. Make every block a matrix ``(N, features)``
        (``meta["flattened_from"]``).
    batch_size : int, optional
        Batch size for tensor and Dataset inputs (default 256); a DataLoader
        or iterable keeps its own batches.
    progress : bool
        Show a tqdm progress bar over batches.

    Returns
    -------
    Blocks
        The input block (when ``include_input``), then one block per layer in
        forward order, with ``labels`` and ``sample_shape``. Each block knows
        its squared norm (``sq_norm``), its storage (``meta["storage"]``) and
        its per-sample shape before pooling and flattening (``meta["raw_shape"]``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if max_positions is not None and max_positions < 1:
        raise ValueError(f"max_positions must be >= 1 or None, got {max_positions}")
    if like is not None:
        layers, include_input, flatten = _follow(model, like, layers, include_input, flatten)
    include_input = True if include_input is None else include_input
    explicit = None if isinstance(layers, str) and layers == "auto" else resolve_layers(
        model, layers)
    if explicit == [] and not include_input:
        raise ValueError("nothing to capture: layers is empty and include_input=False")
    source = _Source(inputs, batch_size, input_fn, label_fn)
    batches = iter(source)
    first = next(batches, None)
    if first is None:
        raise ValueError(
            f"inputs ({type(inputs).__name__}) yielded no batches; pass at least one sample"
        )
    if like is not None and like.sample_shape not in (None, tuple(first[0].shape[1:])):
        raise ValueError(
            f"the inputs have per-sample shape {tuple(first[0].shape[1:])}, the earlier capture "
            f"(like=) had {like.sample_shape}; resize or crop them to {like.sample_shape}"
        )
    own_device = _module_device(model)
    device = own_device if device is None else _full_device(device)
    net = model if device == own_device else copy.deepcopy(model).to(device)
    dtype = _float_dtype(net)
    targets = []
    with _borrowed(net) as handles, torch.no_grad():
        try:
            seen = _probe(net, _to_device(first[0][:2], device, dtype), handles)
            calls = {name: record[0] for name, record in seen.items()}
            if explicit is None:
                names = _auto_layers(net, calls)
                if not names:
                    raise ValueError(
                        f"layers='auto' found no layer to capture in {type(model).__name__}; "
                        f"name them, e.g. layers={[n for n, _ in _leaves(net)][:4]}"
                    )
            else:
                _check_runs_once(explicit, calls, net)
                names = explicit
            order = list(seen)
            common = dict(
                capacity=source.n_rows or len(first[0]) * (source.n_batches or 16),
                budget=Budget(memory_budget, device), folder=_Folder(),
                max_positions=max_positions, flatten=bool(flatten),
            )
            old = {} if like is None else {b.name: b for b in like}
            if include_input:
                dtype_name = str(first[0].dtype).replace("torch.", "")
                targets.append(_Target("input", first[0].shape[1:], is_input=True,
                                       meta={"dtype": dtype_name}, like=old.get("input"),
                                       **common))
            for name in sorted(names, key=order.index):
                module = net.get_submodule(name)
                shape = _layer_shape(name, module, seen[name][1], min(2, len(first[0])))
                targets.append(_Target(name, shape, is_input=False,
                                       meta={"module_type": type(module).__name__},
                                       like=old.get(name), **common))
                handles.append(module.register_forward_hook(targets[-1]))
            n_rows, labels = _stream(net, first, batches, source, targets, device, dtype,
                                     include_input, progress)
        except BaseException:
            for target in targets:
                target.store.discard()
            raise
    blocks = [t.block(n_rows) for t in targets]
    if like is not None:
        blocks.sort(key=lambda b: like.names.index(b.name))
    return Blocks(blocks, labels=labels, sample_shape=tuple(first[0].shape[1:]))


def _follow(model: nn.Module, like, layers, include_input, flatten):
    """``(layers, include_input, flatten)`` that repeat the capture ``like``.

    Raises when an explicitly given ``layers``, ``include_input`` or
    ``flatten`` disagrees with ``like``.
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
    return names, has_input, flattened


def _to_device(x: torch.Tensor, device: torch.device, dtype) -> torch.Tensor:
    """``x`` on ``device``, floating inputs cast to the model's floating ``dtype``."""
    cast = dtype if dtype is not None and x.is_floating_point() else x.dtype
    if cast == x.dtype and x.device == device:
        return x
    pinned = x.device.type == "cpu" and device.type == "cuda" and x.is_pinned()
    try:
        return x.to(device=device, dtype=cast, non_blocking=pinned)
    except (RuntimeError, NotImplementedError) as error:
        raise RuntimeError(
            f"could not move a batch from {x.device} to {device}, where the model runs ({error}); "
            f"move the inputs to {device} or pass device='{x.device}' to run a copy of the model "
            "there"
        ) from error


def _layer_shape(name: str, module: nn.Module, described, rows: int) -> tuple[int, ...]:
    """Per-sample output shape of a layer from the probe's record, or a clear error."""
    what = f"layer {name!r} ({type(module).__name__})"
    if isinstance(described, str):
        raise TypeError(
            f"{what} returned {described}, not a tensor; capture a module whose output is a "
            "tensor"
        )
    if len(described) == 0 or described[0] != rows:
        raise ValueError(
            f"{what} returned shape {tuple(described)} for a batch of {rows} samples; capture "
            "needs one output per sample, with the batch as the first dimension (a scalar such "
            "as a loss, or a (T, N, D) sequence layer, cannot be captured; pick another layer)"
        )
    return tuple(described[1:])


def _stream(net, first, batches, source, targets, device, dtype, include_input, progress):
    """Run every batch through ``net``, writing into ``targets``; returns ``(n_rows, labels)``."""
    layers = targets[1:] if include_input else targets
    start = 0
    labels = []
    with tqdm(total=source.n_batches, desc="capture", unit="batch", disable=not progress) as bar:
        for i, (raw, label) in enumerate(itertools.chain([first], batches)):
            n = raw.shape[0]
            x = _to_device(raw, device, dtype)
            for target in targets:
                target.store.reserve(start + n, start)
                target.start, target.calls = start, 0
            if include_input:
                same = x.dtype == raw.dtype and x.device == targets[0].store.device
                targets[0].write(x if same else raw)
            net(x)
            for target in layers:
                if target.calls == 0:
                    raise RuntimeError(
                        f"layer {target.name!r} did not run for the batch starting at sample "
                        f"{start}; capture only modules that run for every batch"
                    )
            labels.append(label)
            start += n
            bar.update()
            if (i + 1) % CHECK_EVERY == 0:
                for target in targets:
                    target.check_finite(start)
    for target in targets:
        target.check_finite(start)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if any(label is None for label in labels):
        return start, None
    return start, np.concatenate(labels)
