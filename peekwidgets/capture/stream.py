"""The :func:`capture` function and its streaming loop.

:func:`capture` hooks the chosen modules (:mod:`~peekwidgets.capture.layers`),
streams the inputs (:mod:`~peekwidgets.capture.source`) through the borrowed
model (:mod:`~peekwidgets.capture.borrow`) in batches, and writes each batch
of outputs straight into a preallocated block
(:mod:`~peekwidgets.capture.layout`, :mod:`~peekwidgets.capture.storage`).
Every batch re-checks that each hooked module ran exactly once.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from peekwidgets.blocks import Blocks
from peekwidgets.capture.borrow import (
    borrowed,
    check_runs_once,
    float_dtype,
    full_device,
    module_device,
    probe,
    to_device,
)
from peekwidgets.capture.layers import auto_layers, leaves, resolve_layers
from peekwidgets.capture.layout import DEFAULT_MAX_POSITIONS, Folder, Target, follow, layer_shape
from peekwidgets.capture.source import Source
from peekwidgets.capture.storage import Budget

__all__ = ["capture"]

#: Batches between two NaN/Inf checks (on CUDA a check waits for the device).
CHECK_EVERY = 16


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
        layers, include_input, flatten = follow(model, like, layers, include_input, flatten)
    include_input = True if include_input is None else include_input
    explicit = None if isinstance(layers, str) and layers == "auto" else resolve_layers(
        model, layers)
    if explicit == [] and not include_input:
        raise ValueError("nothing to capture: layers is empty and include_input=False")
    source = Source(inputs, batch_size, input_fn, label_fn)
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
    own_device = module_device(model)
    device = own_device if device is None else full_device(device)
    net = model if device == own_device else copy.deepcopy(model).to(device)
    dtype = float_dtype(net)
    targets = []
    with borrowed(net) as handles, torch.no_grad():
        try:
            seen = probe(net, to_device(first[0][:2], device, dtype), handles)
            calls = {name: record[0] for name, record in seen.items()}
            if explicit is None:
                names = auto_layers(net, calls)
                if not names:
                    raise ValueError(
                        f"layers='auto' found no layer to capture in {type(model).__name__}; "
                        f"name them, e.g. layers={[n for n, _ in leaves(net)][:4]}"
                    )
            else:
                check_runs_once(explicit, calls, net)
                names = explicit
            order = list(seen)
            common = dict(
                capacity=source.n_rows or len(first[0]) * (source.n_batches or 16),
                budget=Budget(memory_budget, device), folder=Folder(),
                max_positions=max_positions, flatten=bool(flatten),
            )
            old = {} if like is None else {b.name: b for b in like}
            if include_input:
                dtype_name = str(first[0].dtype).replace("torch.", "")
                targets.append(Target("input", first[0].shape[1:], is_input=True,
                                       meta={"dtype": dtype_name}, like=old.get("input"),
                                       **common))
            for name in sorted(names, key=order.index):
                module = net.get_submodule(name)
                shape = layer_shape(name, module, seen[name][1], min(2, len(first[0])))
                targets.append(Target(name, shape, is_input=False,
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


def _stream(net, first, batches, source, targets, device, dtype, include_input, progress):
    """Run every batch through ``net``, writing into ``targets``; returns ``(n_rows, labels)``."""
    layers = targets[1:] if include_input else targets
    start = 0
    labels = []
    with tqdm(total=source.n_batches, desc="capture", unit="batch", disable=not progress) as bar:
        for i, (raw, label) in enumerate(itertools.chain([first], batches)):
            n = raw.shape[0]
            x = to_device(raw, device, dtype)
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
