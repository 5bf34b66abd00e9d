"""Borrowing the model: run it without changing it, and learn what runs in its forward pass.

The user's model is borrowed, never changed: it runs in eval mode under
:func:`torch.no_grad` (:func:`borrowed`), and every hook, ``training`` flag
and buffer is restored on the way out, also after an exception or a
KeyboardInterrupt.

Modules that run more than once per forward pass (torchvision's
``BasicBlock`` calls its ``relu`` twice) are found by a probe forward pass on
the first two samples (:func:`probe`). ``"auto"`` never picks them; naming
one raises an error that suggests the enclosing block
(:func:`check_runs_once`).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Mapping
from functools import partial

import torch
from torch import nn

__all__ = [
    "borrowed", "probe", "check_runs_once", "first_tensor", "module_device", "float_dtype",
    "full_device", "to_device",
]


def module_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU when it has none)."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def float_dtype(model: nn.Module):
    """The dtype of the model's first floating parameter or buffer, or None."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    return next((t.dtype for t in tensors if t.is_floating_point()), None)


def full_device(device) -> torch.device:
    """``torch.device(device)`` with the current CUDA index filled in, as tensors report it."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


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


@contextlib.contextmanager
def borrowed(model: nn.Module):
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


def first_tensor(output):
    """The first tensor in a module's output (a tensor, or nested tuples, lists, dicts)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def probe(net: nn.Module, x: torch.Tensor, handles: list) -> dict:
    """Run ``net(x)`` once with a hook on every module.

    Returns ``{name: [calls, first output shape or its type name]}`` in the
    order the modules first ran.
    """
    seen = {}

    def hook(name, module, args, output):
        record = seen.setdefault(name, [0, None])
        record[0] += 1
        if record[0] == 1:
            tensor = first_tensor(output)
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


def check_runs_once(names, calls: Mapping[str, int], net: nn.Module):
    """Raise unless every module in ``names`` ran exactly once in the probe (``calls``)."""
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
