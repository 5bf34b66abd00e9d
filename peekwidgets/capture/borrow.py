"""Borrowing the model: run it without changing it, and learn what runs in its forward pass.

The user's model is borrowed, never changed: it runs in eval mode under
:func:`torch.no_grad` (:func:`borrowed`), and every hook, ``training`` flag
and buffer is restored on the way out, also after an exception or a
KeyboardInterrupt.

* **Wrappers** (:func:`unwrap`): a ``torch.compile``'d model
  (``OptimizedModule``), ``nn.DataParallel`` and ``DistributedDataParallel``
  are captured through the module they wrap (``model._orig_mod``,
  ``model.module``), which runs eagerly: hooks cannot see inside a compiled
  graph, and DataParallel's replicas would call each hook once per device.
  A model compiled in place (``model.compile()``) also runs eagerly while
  it is borrowed. Layer names are those of the wrapped module; names with
  the wrapper's prefix (``"_orig_mod.layer1"``, ``"module.layer1"``) are
  accepted too.
* **Weights**: a model with parameters or buffers on the ``meta`` device
  holds no data and is refused before anything runs (:func:`check_weights`).
* **The probe**: one forward pass on the first two samples of the first
  batch, with a hook on every module (:func:`probe`), finds each module's
  output shape and how often it runs. Modules that run more than once per
  forward pass (torchvision's ``BasicBlock`` calls its ``relu`` twice) are
  never picked by ``"auto"``; naming one raises an error that suggests the
  enclosing block (:func:`check_runs_once`). When a named layer does not run
  exactly once on two samples, the probe is repeated on the whole first
  batch (a model may branch on the batch size) before that error is raised.
  When the probe itself fails, :func:`explain_failure` says whether the
  inputs are integers (for example uint8 images) or single samples rather
  than batches, and how to fix that.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import sys
import warnings
from collections.abc import Mapping
from functools import partial

import torch
from torch import nn

from peekwidgets.capture.source import fields, leading, map_tensors, run_model

__all__ = [
    "unwrap", "check_weights", "copied", "borrowed", "probe", "describe", "explain_failure",
    "check_runs_once", "module_device", "float_dtype", "to_device", "inputs_to_device",
]

#: Samples in the probe forward pass.
PROBE_SAMPLES = 2

#: An ``nn.Module``'s dicts of hooks.
_HOOKS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
          "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
          "_backward_pre_hooks", "_state_dict_hooks", "_state_dict_pre_hooks",
          "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")


def _compiled(model: nn.Module) -> bool:
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")  # loaded by any torch.compile call
    return eval_frame is not None and isinstance(model, eval_frame.OptimizedModule)


def unwrap(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """The module that ``torch.compile``, DataParallel or DDP wrappers run, and their prefixes.

    Returns
    -------
    module : nn.Module
        ``model`` itself when it is not such a wrapper.
    prefixes : list of str
        The name prefixes the wrappers add, outermost first (``["_orig_mod."]``).
    """
    parallel = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    prefixes = []
    while True:
        if _compiled(model):
            model, prefix = model._orig_mod, "_orig_mod."
        elif isinstance(model, parallel):
            model, prefix = model.module, "module."
        else:
            return model, prefixes
        prefixes.append(prefix)


def check_weights(model: nn.Module):
    """Raise when parameters or buffers of ``model`` are on the ``meta`` device (no data)."""
    tensors = itertools.chain(model.named_parameters(), model.named_buffers())
    empty = [name for name, tensor in tensors if tensor.is_meta]
    if empty:
        raise ValueError(
            f"{type(model).__name__} has {len(empty)} parameters or buffers on the meta device "
            f"(for example {empty[0]!r}): they hold no values, so it cannot run; load its "
            "weights first: model.to_empty(device='cpu') then model.load_state_dict(state_dict)"
        )


def copied(model: nn.Module, fix: str) -> nn.Module:
    """A deep copy of ``model`` (to load other weights into, or to run on another device).

    A hook that cannot be copied (a method of a logger that holds a lock or a file) is shared
    instead: the copy gets the model's hooks themselves, with a warning that they run for the
    copy too. When the model cannot be copied even so, the error ends with ``fix``.
    """
    try:
        return copy.deepcopy(model)
    except Exception as error:  # deepcopy raises errors of many kinds
        reason = f"{type(error).__name__}: {error}"
    shared = {id(hooks): hooks.copy() for module in model.modules() for name in _HOOKS
              if (hooks := getattr(module, name, None)) is not None}
    try:
        twin = copy.deepcopy(model, shared)
    except Exception as error:
        raise TypeError(f"the model cannot be copied ({reason}); {fix}") from error
    warnings.warn(
        f"the model's hooks cannot be copied ({reason}), so its working copy shares them: "
        "they run for the copy as well", RuntimeWarning, stacklevel=3)
    return twin


def module_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU when it has none)."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def float_dtype(model: nn.Module):
    """The dtype of the model's first floating parameter or buffer, or None."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    return next((t.dtype for t in tensors if t.is_floating_point()), None)


def to_device(x: torch.Tensor, device: torch.device, dtype) -> torch.Tensor:
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


def inputs_to_device(x, device: torch.device, dtype, copy: bool = False):
    """The model input ``x`` (a tensor, or tuples, lists and dicts of them) with every tensor
    :func:`to_device`; with ``copy``, none of them is a tensor the inputs hold."""
    def move(t):
        moved = to_device(t, device, dtype)
        return moved.clone() if copy and moved is t else moved
    return map_tensors(move, x)


@contextlib.contextmanager
def borrowed(model: nn.Module):
    """Eval mode for the duration; hooks (appended to the yielded list), flags, buffers restored.

    Parameters are not copied (that would double the model's memory): one that the forward
    pass writes into (it should be a buffer) gets a warning that names it.
    """
    flags = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.clone()) for b in model.buffers()]
    versions = [(n, p, p._version) for n, p in model.named_parameters() if not p.is_inference()]
    compiled = [(m, m._compiled_call_impl) for m in model.modules()
                if getattr(m, "_compiled_call_impl", None) is not None]
    handles = []
    try:
        model.eval()
        for module, _ in compiled:  # model.compile(): run eagerly, so that hooks see every call
            module._compiled_call_impl = None
        yield handles
    finally:
        for handle in handles:
            handle.remove()
        for module, call in compiled:
            module._compiled_call_impl = call
        for module, flag in flags:
            if module.training != flag:
                module.training = flag
        with torch.no_grad():
            for buffer, saved in buffers:
                if not torch.equal(buffer, saved):
                    buffer.copy_(saved)
        written = [name for name, p, version in versions if p._version != version]
        if written:
            warnings.warn(
                f"the model's forward pass wrote into its parameters {written[:3]}, which "
                "capture cannot restore (it copies buffers only); register state that the "
                "forward pass updates as a buffer (module.register_buffer), which capture "
                "restores", RuntimeWarning, stacklevel=3)


def describe(output):
    """A module output with each tensor replaced by its shape and any other leaf by its type name.

    Dicts, dataclasses (as dicts of their fields) and tuples (or lists) keep their structure,
    so that a layer's item can be chosen from the description as from the output itself. A
    nested tensor (of sequences of different lengths; ``nn.TransformerEncoder`` in eval mode
    given a padding mask) has no shape: it is described as a leaf that is not captured.
    """
    output = fields(output)
    if isinstance(output, torch.Tensor):
        return "nested tensor" if output.is_nested else output.shape
    if isinstance(output, Mapping):
        return {key: describe(value) for key, value in output.items()}
    if isinstance(output, (tuple, list)):
        return tuple(describe(value) for value in output)
    return type(output).__name__


def probe(net: nn.Module, x, handles: list) -> dict:
    """Run ``net`` once on the model input ``x`` with a hook on every module.

    Returns ``{name: [calls, description of the first output]}`` (see
    :func:`describe`) in the order the modules first ran.
    """
    seen = {}

    def hook(name, module, args, output):
        record = seen.setdefault(name, [0, None])
        record[0] += 1
        if record[0] == 1:
            record[1] = describe(output)

    first = len(handles)
    for name, module in net.named_modules():
        if name:
            handles.append(module.register_forward_hook(partial(hook, name)))
    try:
        run_model(net, x)
    finally:
        for handle in handles[first:]:
            handle.remove()
        del handles[first:]
    return seen


def _first_layer(net: nn.Module):
    """``(name, module)`` of the first registered module that holds parameters itself."""
    return next(((n, m) for n, m in net.named_modules()
                 if next(m.parameters(recurse=False), None) is not None), (None, None))


def explain_failure(net: nn.Module, inputs, error: Exception):
    """Raise a clear error when the probe on a batch's model input failed for a reason found
    in it.

    Three causes are told apart from the model's own error: a model that takes more
    arguments than the one tensor passed, integer inputs to a model that computes in floating
    point (uint8 images), and a batch that is one sample (one dimension short for the first
    layer). Otherwise a ValueError, TypeError or RuntimeError is raised again with the shape of
    the batch that the model failed on (the probe's shapes in the model's own message are of
    its first samples only); other errors return, for the caller to re-raise.
    """
    if isinstance(inputs, torch.Tensor) and isinstance(error, TypeError) \
            and "required positional argument" in str(error):
        raise TypeError(
            f"the model takes more inputs than the one tensor capture passes it, each batch's "
            f"first item (the model failed with: {error}); pass them all with input_fn: "
            "input_fn=lambda batch: (batch[0], batch[1]) for positional arguments, or a dict "
            "of keyword arguments"
        ) from error
    x = leading(inputs)
    name, layer = _first_layer(net)
    if layer is not None:
        _explain_inputs(net, x, name, layer, error)
    if type(error) in (ValueError, TypeError, RuntimeError):
        raise type(error)(
            f"the model failed on the first batch, of shape {tuple(x.shape)} (run on its first "
            f"{min(PROBE_SAMPLES, len(x))} samples to find the layers): {error}; pass batches of "
            "the shape and dtype the model takes (input_fn converts each batch)") from error


def _explain_inputs(net: nn.Module, x: torch.Tensor, name: str, layer: nn.Module,
                    error: Exception):
    """Raise when ``x`` is integers, channels last or one sample for the first layer."""
    what = f"the model's first layer {name!r} ({type(layer).__name__})"
    last = isinstance(layer, nn.modules.conv._ConvNd) and x.ndim == len(layer.kernel_size) + 2 \
        and x.shape[1] != layer.in_channels == x.shape[-1]
    permute = f".permute(0, {x.ndim - 1}, {', '.join(map(str, range(1, x.ndim - 1)))})"
    if not (x.is_floating_point() or x.is_complex()) and not isinstance(
            layer, (nn.Embedding, nn.EmbeddingBag)):
        dtype = str(x.dtype).replace("torch.", "")
        raise TypeError(
            f"the inputs are {dtype} but {what} computes in "
            f"{str(float_dtype(net)).replace('torch.', '')} (the model failed with: {error}); "
            "convert them to floats as the model was trained: for 0-255 pixels, "
            f"input_fn=lambda batch: batch{permute if last else ''}.float() / 255 (batch[0] "
            "for (x, y) batches; this is torchvision's convert_image_dtype), followed by the "
            "normalization the model expects"
            + (f"; the channels come last in the inputs {tuple(x.shape)}, hence the permute"
               if last else "")
        ) from error
    if last:
        raise ValueError(
            f"the first batch has shape {tuple(x.shape)}, channels last, but {what} takes "
            f"{layer.in_channels} channels first (the model failed with: {error}); move them "
            f"first: input_fn=lambda batch: batch{permute} (batch[0] for (x, y) batches)"
        ) from error
    if isinstance(layer, nn.Linear):
        expected = x.ndim == 1 and x.shape[0] == layer.in_features
        batched = f"(n, {layer.in_features})"
    elif isinstance(layer, nn.modules.conv._ConvNd):
        expected = x.ndim == len(layer.kernel_size) + 1 and x.shape[0] == layer.in_channels
        batched = f"(n, {', '.join(map(str, x.shape))})"
    else:
        return
    if expected:
        raise ValueError(
            f"the first batch has shape {tuple(x.shape)}, the shape of one sample for {what}, "
            f"which takes batches {batched} (the model failed with: {error}); capture expects "
            "batches, not single samples: stack the samples (torch.stack or np.stack), or "
            "pass a DataLoader with a batch_size"
        ) from error


def _enclosing(name: str, calls: Mapping[str, int]) -> str | None:
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        parent = ".".join(parts[:cut])
        if calls.get(parent) == 1:
            return parent
    return None


def check_runs_once(names, calls: Mapping[str, int], net: nn.Module, rows: int):
    """Raise unless each of ``names`` ran once in the probe (``calls``) on ``rows`` samples."""
    on = f"{rows} sample{'s' if rows > 1 else ''} of the first batch"
    for name in names:
        count = calls.get(name, 0)
        if count == 1:
            continue
        module = type(net.get_submodule(name)).__name__
        if count == 0:
            raise ValueError(
                f"layer {name!r} ({module}) did not run in the forward pass (tried on {on}), so "
                "it has no output to capture; choose a module that the model's forward calls"
            )
        parent = _enclosing(name, calls)
        hint = f"capture the enclosing block {parent!r} instead" if parent else (
            "capture a module that runs once per forward pass instead")
        raise ValueError(
            f"layer {name!r} ({module}) runs {count} times per forward pass (counted on {on}; "
            f"one module reused, like the ReLU of torchvision's BasicBlock), so its outputs "
            f"would mix {count} different activations; {hint}"
        )
