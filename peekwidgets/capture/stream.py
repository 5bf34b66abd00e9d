"""The :func:`capture` function and its streaming loop.

:func:`capture` hooks the chosen modules (:mod:`~peekwidgets.capture.layers`),
streams the inputs (:mod:`~peekwidgets.capture.source`) through the borrowed
model (:mod:`~peekwidgets.capture.borrow`) in batches, and writes each batch
of outputs straight into a preallocated block
(:mod:`~peekwidgets.capture.layout`, :mod:`~peekwidgets.capture.storage`).
Every batch re-checks that each hooked module ran exactly once.

Before streaming, capture checks what it can on the first batch, so that a
mistake costs seconds, not a pass over the data: the model's weights (not on
the ``meta`` device), the layer names (a module named ``"input"`` would clash
with the input block), a probe pass (integer inputs, single samples instead
of batches, modules that do not run once) and the layout of every block. A
model with ``batch_first=False`` sequence modules fed its inputs as they are
gets a warning: capture takes the first dimension as the samples.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from peekwidgets import distributed
from peekwidgets.blocks import Blocks, full_device
from peekwidgets.capture.borrow import (
    PROBE_SAMPLES,
    borrowed,
    check_runs_once,
    check_weights,
    copied,
    explain_failure,
    float_dtype,
    inputs_to_device,
    module_device,
    probe,
    unwrap,
)
from peekwidgets.capture.layers import (
    auto_layers,
    auto_output_keys,
    leaves,
    resolve_layers,
    strip_prefixes,
)
from peekwidgets.capture.layout import (
    DEFAULT_MAX_POSITIONS,
    Folder,
    Target,
    channels_last,
    follow,
    layer_shape,
    pick,
)
from peekwidgets.capture.shard import local_shard
from peekwidgets.capture.source import Source, leading, map_tensors, run_model
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
    output_keys: Mapping | None = None,
    sharded: bool | None = None,
    progress: bool = True,
) -> Blocks:
    """Run ``model`` once over ``inputs`` and return the input and layer outputs as blocks.

    Parameters
    ----------
    model : nn.Module
        Returned untouched: same parameters, buffers, ``training`` flags and
        ``requires_grad``, and no hooks left, also after an error or a
        KeyboardInterrupt. A ``torch.compile``'d or DataParallel model is
        captured through the module it wraps, run eagerly (see
        :mod:`~peekwidgets.capture.borrow`); its weights must be loaded (not
        on the ``meta`` device).
    inputs : DataLoader, Dataset, tensor, numpy array, or iterable of batches
        A tensor or Dataset is cut into batches of ``batch_size`` samples, in
        order. A batch is a tensor, a tuple/list (the input is its first
        tensor, the labels its second item) or a dict (the input under
        ``"input"``, ``"image"``, ``"x"``, ...; labels under ``"label"``,
        ``"target"``, ``"y"``, ...). Batches, not single samples: the samples
        are the first dimension (``batch_first``; a sequence model built with
        ``batch_first=False`` gets a warning). Inputs reach the model as they
        are, apart from floating inputs cast to the model's dtype: integer
        images (uint8) that the model cannot take raise an error that says
        how to convert them (``input_fn``). They are never modified: the
        model gets a copy of each batch (a model may write into its inputs).
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
        ``input_fn(batch)``: the model input of a batch, a tensor (``model(x)``), a tuple of
        the model's positional arguments (``model(*x)``) or a dict of its keyword arguments
        (``model(**x)``), for example ``lambda batch: (batch[0], batch[1])`` for a model of
        two images. The first tensor (depth first) holds the samples ``(n, ...)`` and is the
        input block; other tensors whose first dimension is ``n`` are cut with it for the
        probe.
    label_fn : callable, optional
        ``label_fn(batch) -> (n,) labels``; kept only as ``Blocks.labels``.
    include_input : bool, optional
        Whether the raw inputs become the first block, ``"input"``. By default they do,
        unless they are integers (token ids, category codes: their values name things
        rather than measure them, so a factorization of them as numbers means nothing;
        ``True`` takes them anyway). Images
        ``(N, C, H, W)`` as ``(N, C, H*W)`` with ``spatial_shape=(H, W)``, or
        ``(N, H*W)`` when ``C == 1``; flat inputs ``(N, P)`` as a matrix. Images
        with more than ``max_positions`` pixels are pooled (see there).
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
        memory, and of the input block always: they are adaptive-average
        pooled to the largest grid of at most this many positions with their
        aspect ratio (default 256: 224 x 224 becomes 16 x 16), recorded in
        ``meta["pooled_from"]``. A pooled input image is drawn from its
        thumbnails (``Blocks.thumbnails``: at most 64 x 64, float16). None
        never pools.
    flatten : bool, optional
        Default False. Make every block a matrix ``(N, features)``
        (``meta["flattened_from"]``).
    batch_size : int, optional
        Batch size for tensor and Dataset inputs (default 256); a DataLoader
        or iterable keeps its own batches.
    output_keys : dict, optional
        ``{layer: key}``: the item to capture of a layer whose output is a
        dict (its key), a tuple (its index) or a tensor ``(N, T, ...)`` (an
        index along ``T``: 0 is a ViT's class token). By default a tuple gives
        its first tensor, a dict its only tensor (a dict with several tensors
        needs a key here) and a tensor itself, except that ``"auto"`` takes
        the class token of a ViT's blocks (``None`` here keeps all tokens).
        ``meta["output_key"]`` records the item taken.
    sharded : bool, optional
        Under a ``torch.distributed`` process group of more than one process, each process
        captures its own shard of the samples (:mod:`~peekwidgets.capture.shard`): a tensor
        or map-style Dataset (also read through a DataLoader in order, or through a
        ``DistributedSampler``, whose dealt-out order it replaces) is split into contiguous
        ranges by rank, and ``sharded=True`` takes any inputs as this process's shard. The
        processes check that they run the same weights on inputs of the same shape and
        agree on the layout (the same blocks, pooled alike); labels and thumbnails are this
        shard's. Without a group it changes nothing.
    progress : bool
        Show a tqdm progress bar over batches (under a process group, on process 0 only).

    Returns
    -------
    Blocks
        The input block (when ``include_input``), then one block per layer in
        forward order, with ``labels``, ``sample_shape`` and ``thumbnails`` (None
        unless the input was pooled). Each block knows
        its squared norm (``sq_norm``), its storage (``meta["storage"]``) and
        its per-sample shape before pooling and flattening (``meta["raw_shape"]``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if max_positions is not None and max_positions < 1:
        raise ValueError(f"max_positions must be >= 1 or None, got {max_positions}")
    model, prefixes = unwrap(model)
    check_weights(model)
    layers = strip_prefixes(layers, prefixes)
    output_keys = _output_keys(output_keys, prefixes)
    if like is not None:
        layers, include_input, flatten, output_keys = follow(
            model, like, layers, include_input, flatten, output_keys)
    explicit = None if isinstance(layers, str) and layers == "auto" else resolve_layers(
        model, layers)
    if explicit == [] and include_input is False:
        raise ValueError("nothing to capture: layers is empty and include_input=False")
    if explicit is not None:
        _check_names(explicit, output_keys, include_input is not False)
    shard, first_row = local_shard(inputs, sharded)
    source = Source(shard, batch_size, input_fn, label_fn)
    batches = iter(source)
    first = next(batches, None)
    if first is None:
        raise ValueError(
            f"inputs ({type(inputs).__name__}) yielded no batches; pass at least one sample"
        )
    lead = leading(first[0])
    sample_shape = tuple(lead.shape[1:])
    if include_input is None:  # integers (token ids, category codes) name, not measure
        include_input = lead.is_floating_point() or lead.is_complex()
        if explicit == [] and not include_input:
            raise ValueError(
                f"nothing to capture: layers is empty and the inputs are {lead.dtype} (token "
                "ids or codes), left out of the blocks by default; name layers, or pass "
                "include_input=True to factorize the integer inputs as numbers")
    if like is not None and like.sample_shape not in (None, sample_shape):
        one = tuple(lead.shape) == tuple(like.sample_shape)  # a sample, not a batch of them
        raise ValueError(
            f"the inputs have per-sample shape {sample_shape}, the earlier capture "
            f"(like=) had {like.sample_shape}; "
            + ("the first batch is one sample: capture expects batches, so stack the samples "
               "(torch.stack), or pass x.unsqueeze(0) for a single one" if one else
               f"resize or crop them to {like.sample_shape}")
        )
    own_device = module_device(model)
    device = own_device if device is None else full_device(device)
    net = model if device == own_device else copied(
        model, f"move the model to {device} yourself and capture it there").to(device)
    dtype = float_dtype(net)
    targets = []
    with borrowed(net) as handles, torch.no_grad():
        try:
            seen, rows = _probe(net, first[0], explicit, handles, device, dtype)
            _warn_sequence_first(net, seen, rows, lead)
            layouts = _layouts(net, explicit, seen, rows, output_keys)
            if explicit is None:
                _check_names(list(layouts), output_keys, include_input)
            common = dict(
                capacity=source.n_rows or len(lead) * (source.n_batches or 16),
                budget=Budget(memory_budget, device), folder=Folder(),
                max_positions=max_positions, flatten=bool(flatten),
                shard=(distributed.rank(), first_row) if distributed.is_active() else None,
            )
            _agree(net, sample_shape, include_input, layouts)
            old = {} if like is None else {b.name: b for b in like}
            specs = []
            if include_input:
                dtype_name = str(lead.dtype).replace("torch.", "")
                specs.append(dict(name="input", shape=lead.shape[1:], is_input=True,
                                  meta={"dtype": dtype_name}, like=old.get("input")))
            for name, (shape, key, last) in layouts.items():
                module_type = type(net.get_submodule(name)).__name__
                specs.append(dict(name=name, shape=shape, is_input=False,
                                  meta={"module_type": module_type}, like=old.get(name),
                                  key=key, last=last))
            targets += _targets(specs, common)
            common["budget"].hand_out(shared=source.n_rows is not None)  # else trimmed
            for target in targets[int(include_input):]:
                handles.append(net.get_submodule(target.name).register_forward_hook(target))
            batches = _chained([first], batches)
            del first, lead  # the stream holds each batch only until the next one comes
            n_rows, labels = _stream(net, batches, source, targets, device, dtype,
                                     include_input, progress, auto=explicit is None)
        except BaseException:
            for target in targets:
                target.discard()
            raise
    blocks = [t.block(n_rows) for t in targets]
    if like is not None:
        blocks.sort(key=lambda b: like.names.index(b.name))
    thumbnails = targets[0].thumbnails(n_rows) if include_input else None
    return Blocks(blocks, labels=labels, sample_shape=sample_shape, thumbnails=thumbnails)


def _agree(net: nn.Module, sample_shape, include_input: bool, layouts: dict):
    """Raise on every process of a group unless all of them would capture the same blocks of
    the same model (its floating weights and buffers, summed tensor by tensor)."""
    if not distributed.is_active():
        return
    mine = (sample_shape, include_input, [(n, tuple(s), k, last)
                                          for n, (s, k, last) in layouts.items()])
    weights = [float(t.double().sum()) for t in net.state_dict().values()
               if t.is_floating_point()]
    every = distributed.all_gather_object((mine, weights))
    odd = [r for r, theirs in enumerate(every) if theirs[0] != every[0][0]]
    other = [r for r, theirs in enumerate(every) if theirs[1] != every[0][1]]
    if other and not odd:
        raise ValueError(
            f"process {other[0]} runs a model with other weights than process 0; load the same "
            "weights on every process (a model built with random weights differs from process "
            "to process unless torch is seeded alike before it is built)")
    every = [theirs for theirs, _ in every]
    if odd:
        def text(r):
            shape, with_input, blocks = every[r]
            return (f"inputs {shape}{' (and the input block)' if with_input else ''}, "
                    f"layers {[(n, s) for n, s, _, _ in blocks]}")
        raise ValueError(
            f"the processes would capture different blocks: process {odd[0]} has "
            f"{text(odd[0])}, process 0 has {text(0)}; give every process inputs of the same "
            "shape and the same model")


def _targets(specs: list[dict], common: dict) -> list[Target]:
    """The :class:`Target` of each spec; under a process group every process pools the maps
    that rank 0's budget pools (:mod:`~peekwidgets.capture.layout`)."""
    if not distributed.is_active():
        return [Target(**spec, **common) for spec in specs]
    mine = [Target(**spec, **common) for spec in specs] if distributed.rank() == 0 else None
    grids = distributed.broadcast_object(None if mine is None else [t.pool for t in mine])
    if mine is not None:
        return mine
    return [Target(**spec, pool=grid, **common) for spec, grid in zip(specs, grids)]


def _output_keys(output_keys, prefixes) -> dict:
    if output_keys is None:
        return {}
    if not isinstance(output_keys, Mapping):
        raise TypeError(
            f"output_keys must be a dict {{layer name: key or index}}, got "
            f"{type(output_keys).__name__}"
        )
    return {strip_prefixes(name, prefixes): key for name, key in output_keys.items()}


def _check_names(names: list[str], output_keys: Mapping, include_input: bool):
    """Raise when a layer's block would clash with the input block, or output_keys names others."""
    if include_input and "input" in names:
        others = [n for n in names if n != "input"]
        leave = f", or leave it out: layers={others!r}" if others else ""
        raise ValueError(
            "the model has a module named 'input', whose block would clash with the input "
            "block 'input' (the raw inputs); pass include_input=False to capture module "
            f"'input' without the raw inputs{leave}"
        )
    unknown = [n for n in output_keys if n not in names]
    if unknown:
        raise ValueError(
            f"output_keys names {unknown}, which are not captured (the layers are {names}); "
            "name captured layers only"
        )


def _probe(net: nn.Module, x, explicit, handles, device, dtype):
    """The probe's record (see :func:`~peekwidgets.capture.borrow.probe`) and its sample count.

    The probe runs on a copy of the first :data:`PROBE_SAMPLES` samples of the first
    batch's model input ``x``; again on a copy of all of ``x`` when a named layer did not
    run once.
    """
    n = len(leading(x))
    rows = min(PROBE_SAMPLES, n)

    def run(rows):
        return probe(net, inputs_to_device(_samples(x, n, rows), device, dtype, copy=True),
                     handles)

    try:
        seen = run(rows)
    except Exception as error:
        explain_failure(net, x, error)
        raise
    if explicit and n > rows and any(
            seen.get(name, [0])[0] != 1 for name in explicit):  # the model may branch on n
        seen, rows = run(n), n
    return seen, rows


def _samples(x, n: int, rows: int):
    """The model input ``x`` of ``n`` samples cut to its first ``rows``: every tensor whose
    first dimension is ``n``."""
    return map_tensors(lambda t: t[:rows] if t.ndim and t.shape[0] == n else t, x)


def _layouts(net: nn.Module, explicit, seen: dict, rows: int, output_keys: Mapping) -> dict:
    """``{name: (per-sample shape, output key, channels last)}`` of the layers, in forward order.

    ``"auto"`` (``explicit`` None) takes the class token of a ViT's blocks
    unless ``output_keys`` says otherwise, and leaves out, with a warning, the
    layers whose output cannot be captured.
    """
    calls = {name: record[0] for name, record in seen.items()}
    if explicit is not None:
        check_runs_once(explicit, calls, net, rows)
        names, keys = explicit, output_keys
    else:
        names = auto_layers(net, calls)
        keys = {**auto_output_keys(net, names), **output_keys}
    order = list(seen)
    layouts, skipped = {}, []
    for name in sorted(names, key=order.index):
        module = net.get_submodule(name)
        try:
            shape, key = layer_shape(name, module, seen[name][1], rows, keys.get(name))
            layouts[name] = (shape, key, channels_last(name, module, shape, order))
        except (TypeError, ValueError) as error:
            if explicit is not None:
                raise
            skipped.append(f"{name!r}: {error}")
    left_out = "; ".join(skipped)
    if not layouts and explicit is None:
        modules = [n for n, _ in leaves(net)][:4]
        raise ValueError(
            f"layers='auto' found no layer to capture in {type(net).__name__}"
            + (f" (left out: {left_out})" if skipped else "")
            + (f"; name them, e.g. layers={modules}" if modules else
               "; it has no submodules, so nothing but its input and output to capture: "
               "wrap it, nn.Sequential(model), to capture its output as layer '0'")
        )
    if skipped:
        warnings.warn(
            f"layers='auto' leaves out layers whose output cannot be captured: {left_out}",
            stacklevel=3)
    return layouts


def _warn_sequence_first(net: nn.Module, seen: dict, rows: int, x: torch.Tensor):
    """Warn when ``batch_first=False`` modules read the inputs' first dimension as time."""
    names = [n for n, m in net.named_modules() if getattr(m, "batch_first", None) is False]
    if not names or x.ndim < 2:
        return
    for name in names:
        owner = next((n for n in _self_and_ancestors(name) if n in seen), None)
        if owner is None:
            continue
        try:
            shape, _ = pick(seen[owner][1], name=owner, leaf=torch.Size)
        except ValueError:
            continue
        if shape is not None and len(shape) >= 3 and shape[1] == rows != shape[0]:
            return  # samples second inside: the model turns (N, T, ...) inputs around itself
    module = net.get_submodule(names[0])
    warnings.warn(
        f"module {names[0]!r} ({type(module).__name__}) has batch_first=False: the model reads "
        f"its inputs as (T, N, ...) sequences, but capture takes the first dimension of the "
        f"inputs and of every layer output as the samples (here {len(x)} of them in the first "
        "batch); build the model with batch_first=True (its state_dict loads unchanged) and "
        "pass inputs as (N, T, ...)", stacklevel=3)


def _self_and_ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:cut]) for cut in range(len(parts), 0, -1)]


def _chained(first: list, rest):
    """Yield the batch in the list ``first`` (emptied, so that nothing else holds it), then
    the batches of ``rest``."""
    yield first.pop()
    yield from rest


def _stream(net, batches, source, targets, device, dtype, include_input, progress,
            auto=False):
    """Run every batch through ``net``, writing into ``targets``; returns ``(n_rows, labels)``.

    Holds one batch at a time: ``batches`` is an iterator. The model gets a copy of every
    batch, so that a model that writes into its inputs leaves the user's as they were (the
    copy costs far less than the forward pass). ``auto``: the layers are ``"auto"``'s choice.
    """
    layers = targets[1:] if include_input else targets
    start = 0
    labels = []
    one_bar = progress and distributed.rank() == 0  # one bar a process group
    bar = tqdm(total=source.n_batches, desc="capture", unit="batch") if one_bar else None
    with contextlib.nullcontext() if bar is None else bar:
        for i, (raw, label) in enumerate(batches):
            lead = leading(raw)
            n = lead.shape[0]
            x = inputs_to_device(raw, device, dtype, copy=True)
            for target in targets:
                target.begin(start, n)
            if include_input:
                moved = leading(x)
                same = moved.dtype == lead.dtype and moved.device == targets[0].store.device
                targets[0].write(moved if same else lead)
            run_model(net, x)
            for target in layers:
                if target.calls == 0:
                    raise RuntimeError(
                        f"layer {target.name!r} did not run for the batch starting at sample "
                        f"{start} ({n} samples)"
                        + ("; layers='auto' chose it from a forward pass on the first "
                           f"{PROBE_SAMPLES} samples, so the model takes another path for "
                           "other batch sizes: name the layers to capture (layers=[...])"
                           if auto else "; capture only modules that run for every batch"))
            labels.append(label)
            start += n
            if bar is not None:
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
