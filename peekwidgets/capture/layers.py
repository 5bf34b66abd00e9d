"""Layer choice: which modules :func:`~peekwidgets.capture.capture` hooks.

``layers`` is ``"auto"``, module names, glob patterns or module types
(:func:`resolve_layers`). ``"auto"`` takes the stage outputs of common
architectures plus the logits (the last ``nn.Linear``); given the call counts
of a probe pass it never picks a module that does not run exactly once per
forward pass. Unknown names raise an error that lists the modules whose
names end in the given one (``"net.layer1"`` for ``"layer1"`` in a wrapper)
and the closest names. Wrapped models (``torch.compile``, DataParallel) are
resolved on the module they wrap; see :func:`~peekwidgets.capture.borrow.unwrap`.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Mapping

from torch import nn

from peekwidgets.capture.borrow import unwrap

__all__ = ["resolve_layers", "auto_layers", "leaves", "strip_prefixes"]

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
        * with these stages, the hidden activations of the heads (the ReLU of
          ``classifier = Sequential(Flatten, Linear, ReLU, Linear)``);
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
        For a ``torch.compile``'d or DataParallel model, the names in the
        module it wraps (without ``"_orig_mod."`` or ``"module."``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model, prefixes = unwrap(model)
    layers = strip_prefixes(layers, prefixes)
    if isinstance(layers, str) and layers == "auto":
        return auto_layers(model)
    named = {name: module for name, module in model.named_modules() if name}
    selectors = list(layers) if isinstance(layers, (list, tuple, set)) else [layers]
    chosen = set()
    for selector in selectors:
        chosen.update(_match(model, named, selector))
    return [name for name in named if name in chosen]


def strip_prefixes(layers, prefixes: list[str]):
    """``layers`` with the name prefixes of wrappers (``"_orig_mod."``) taken off its names."""

    def strip(selector):
        if isinstance(selector, str):
            for prefix in prefixes:
                selector = selector.removeprefix(prefix)
        return selector

    if isinstance(layers, (list, tuple, set)):
        return [strip(selector) for selector in layers]
    return strip(layers)


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
    inside = fnmatch.filter(named, f"*.{selector}")[:5]  # the same name one level down
    close = difflib.get_close_matches(key, list(named), n=5, cutoff=0.4)
    top = [name for name, _ in model.named_children()]
    if inside:
        hint = f"did you mean {inside[0]!r}? names that end in it: {inside}"
    else:
        hint = f"closest names: {close}" if close else f"top-level modules: {top}"
    raise ValueError(
        f"{where} has no {kind} {selector!r}; {hint} (print(model) or model.named_modules() "
        "lists every name)"
    )


def leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every module without children."""
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


def _head_activations(model: nn.Module, stages: list[str]) -> list[str]:
    """Hidden activations of the heads: top-level children that hold a Linear but no stage.

    An activation counts when a Linear of the same head comes after it, as the
    ReLU of ``classifier = Sequential(Flatten, Linear, ReLU, Linear)``.
    """
    found = []
    for name, child in model.named_children():
        if any(s == name or s.startswith(f"{name}.") for s in stages):
            continue
        modules = [(f"{name}.{n}" if n else name, m) for n, m in child.named_modules()]
        linears = [i for i, (_, m) in enumerate(modules) if isinstance(m, nn.Linear)]
        if linears:
            found += [n for n, m in modules[:linears[-1]] if isinstance(m, _ACTIVATIONS)]
    return found


def auto_layers(model: nn.Module, calls: Mapping[str, int] | None = None) -> list[str]:
    """The ``"auto"`` choice; with ``calls`` (from a probe), only modules that ran once."""

    def once(name):
        return calls is None or calls.get(name) == 1

    children = dict(model.named_children())
    stages = [n for n in children if re.fullmatch(r"layer\d+", n)]
    if not stages and isinstance(children.get("features"), nn.Sequential):
        stages = _sequential_stages("features", children["features"])
    picks = [n for n in stages if once(n)]
    if picks:
        picks += [n for n in _head_activations(model, stages) if once(n)]
    else:
        found = [(n, m) for n, m in leaves(model) if once(n)]
        picks = [n for n, m in found if isinstance(m, _ACTIVATIONS)] or [
            n for n, m in found if isinstance(m, (*_CONVS, nn.Linear))
        ]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and once(n)]
    if linears and linears[-1] not in picks:
        picks.append(linears[-1])
    return picks
