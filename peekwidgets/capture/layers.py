"""Layer choice: which modules :func:`~peekwidgets.capture.capture` hooks.

``layers`` is ``"auto"``, module names, glob patterns or module types
(:func:`resolve_layers`). ``"auto"`` takes the stage outputs of a network, the
hidden activations of its head and its logits, by one rule for every
architecture (see :func:`resolve_layers`); given the call counts of a probe
pass it never picks a module that does not run exactly once per forward pass.
Unknown names raise an error that lists the modules whose names end in the
given one (``"net.layer1"`` for ``"layer1"`` in a wrapper) and the closest
names. Wrapped models (``torch.compile``, DataParallel) are
resolved on the module they wrap; see :func:`~peekwidgets.capture.borrow.unwrap`.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Mapping

from torch import nn

from peekwidgets.capture.borrow import unwrap

__all__ = [
    "resolve_layers", "auto_layers", "auto_output_keys", "leaves", "strip_prefixes",
]

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
        ``"auto"``: the stage outputs, the hidden activations of the head and
        the logits. The stages are found by the first rule that applies:

        1. *named stages*: the children ``layerN``, ``stageN`` or ``blockN``
           of a module (ResNet, ResNeXt, Wide ResNet, ShuffleNet, RegNet's
           ``trunk_output``);
        2. *a stack of attention blocks*: a module whose children are blocks
           of one type with an ``nn.MultiheadAttention`` (ViT's
           ``encoder.layers``): the blocks at a quarter, half, three quarters
           and the end of the stack. In a model with a class token
           (a ``class_token`` or ``cls_token`` parameter) each is captured at
           its class token, an ``(N, D)`` matrix block (``output_keys`` 0);
           the whole ``(N, T, D)`` token output is a tensor block when the
           layer is named (``layers=[...]``) or given ``output_keys={name:
           None}``;
        3. *a trunk*: a ``features``, ``layers``, ``blocks`` or ``backbone``
           ``nn.Sequential``, ``nn.ModuleList`` or ``nn.ModuleDict`` (VGG,
           AlexNet, MobileNet, EfficientNet, ConvNeXt, DenseNet, SqueezeNet,
           MNASNet, Swin, MaxViT, torchvision's segmentation models on
           MobileNet), or the model's own children up to its global pool (of
           any dimension), flatten, dropout or first ``nn.Linear`` when two or
           more of them downsample (GoogLeNet, Inception v3, LeNet, 1-D and
           3-D CNNs): the child before each child that downsamples (a strided
           conv or pool, Swin's patch merging), and the last one that does
           not (the last child when all do), so one block per resolution;
        4. anything else (small CNNs, MLPs, recurrent nets): every activation
           module (ReLU, GELU, Tanh, ...) and recurrent layer (``nn.LSTM``,
           ``nn.GRU``, ``nn.RNN``; their output sequence), or every conv and
           linear layer when the net applies its nonlinearities as functions.

        With stages (rules 1-3), the head is what follows the last stage: its
        activations before its last ``nn.Linear`` are taken (the ReLU of
        ``classifier = Sequential(Flatten, Linear, ReLU, Linear)``). The
        logits are the last ``nn.Linear``, or in a net without one the module
        that returns last in the forward pass, a Sequential standing for its
        last child (SqueezeNet's ``classifier.3``; LRASPP's head, which adds
        its two classifiers). Auxiliary heads (a name part
        that starts with ``aux``: GoogLeNet's ``aux1``, the ``aux_classifier``
        that torchvision's segmentation models built with ``aux_loss=True``
        run in eval mode too) are never taken.

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


def _stride(module: nn.Module) -> int:
    stride = getattr(module, "stride", 1)
    return max(stride) if isinstance(stride, tuple) else int(stride or 1)


def _downsamples(module: nn.Module) -> bool:
    """Whether ``module`` holds a strided conv or pool, or is Swin's patch merging."""
    return any((isinstance(m, (*_CONVS, *_POOLS)) and _stride(m) > 1)
               or "PatchMerging" in type(m).__name__ for m in module.modules())


def _named_stages(model: nn.Module) -> list[str]:
    """Rule 1: the ``layerN``, ``stageN`` or ``blockN`` children of the first module with two."""
    for prefix, module in model.named_modules():
        stages = [f"{prefix}.{n}" if prefix else n for n, _ in module.named_children()
                  if re.fullmatch(r"(layer|stage|block)\d+", n)]
        if len(stages) >= 2:
            return stages
    return []


def _attention_stack(model: nn.Module) -> list[str]:
    """Rule 2: the attention blocks at each quarter of the first stack of them."""
    for prefix, module in model.named_modules():
        kids = list(module.named_children())
        if len(kids) >= 2 and len({type(m) for _, m in kids}) == 1 and any(
                isinstance(m, nn.MultiheadAttention) for m in kids[0][1].modules()):
            cuts = sorted({max(1, round(len(kids) * q / 4)) - 1 for q in (1, 2, 3, 4)})
            return [f"{prefix}.{kids[i][0]}" if prefix else kids[i][0] for i in cuts]
    return []


def _has_class_token(model: nn.Module) -> bool:
    """Whether ``model`` has a ``class_token`` or ``cls_token`` parameter (ViT-like)."""
    return any(n.rsplit(".", 1)[-1] in ("class_token", "cls_token")
               for n, _ in model.named_parameters())


def _trunk_stages(prefix: str, children: list, once) -> list[str]:
    """Rule 3: the child before each downsampling child, and the last that does not downsample
    (the last child when every child downsamples, as MaxViT's stages do)."""
    kids = [(n, m) for n, m in children if once(f"{prefix}{n}")]
    down = [_downsamples(m) for _, m in kids]
    ends = [i - 1 for i in range(1, len(kids)) if down[i]]
    keep = [i for i in range(len(kids)) if not down[i]] or [len(kids) - 1]
    if kids:
        ends.append(keep[-1])
    return [f"{prefix}{kids[i][0]}" for i in sorted(set(ends))]


def _body(model: nn.Module) -> list:
    """The model's children up to its global pool, flatten, dropout or first Linear."""
    stop = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
            nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Flatten,
            nn.Dropout, nn.Linear)
    body = []
    for name, module in model.named_children():
        if isinstance(module, stop):
            break
        body.append((name, module))
    return body


def _stages(model: nn.Module, once) -> list[str]:
    stages = [n for n in _named_stages(model) or _attention_stack(model) if once(n)]
    if stages:
        return stages
    children = dict(model.named_children())
    for name in ("features", "layers", "blocks", "backbone"):
        if isinstance(children.get(name), (nn.Sequential, nn.ModuleDict, nn.ModuleList)):
            return _trunk_stages(f"{name}.", list(children[name].named_children()), once)
    body = _body(model)
    if sum(_downsamples(m) for _, m in body) >= 2:
        return _trunk_stages("", body, once)
    return []


def _head_activations(model: nn.Module, stages: list[str], once) -> list[str]:
    """The activations after the last stage and before the last Linear (registration order)."""
    modules = list(model.named_modules())
    names = [n for n, _ in modules]
    last = stages[-1]
    after = max(i for i, n in enumerate(names) if n == last or n.startswith(f"{last}."))
    head = modules[after + 1:]
    linears = [i for i, (_, m) in enumerate(head) if isinstance(m, nn.Linear)]
    if not linears:
        return []
    return [n for n, m in head[:linears[-1]] if isinstance(m, _ACTIVATIONS) and once(n)]


def auto_layers(model: nn.Module, calls: Mapping[str, int] | None = None) -> list[str]:
    """The ``"auto"`` choice; with ``calls`` (from a probe), only modules that ran once."""

    def once(name):  # and not in an auxiliary head
        return (calls is None or calls.get(name) == 1) and not any(
            part.lower().startswith("aux") for part in name.split("."))

    picks = _stages(model, once)
    if picks:
        picks += _head_activations(model, picks, once)
    else:
        found = [(n, m) for n, m in leaves(model) if once(n)]
        picks = [n for n, m in found if isinstance(m, (*_ACTIVATIONS, nn.RNNBase))] or [
            n for n, m in found if isinstance(m, (*_CONVS, nn.Linear))
        ]
    logits = _logits(model, calls, once)
    return picks + [n for n in logits if n not in picks]


def _logits(model: nn.Module, calls, once) -> list[str]:
    """The last Linear; without one, the module that returned last in the probe (``calls``
    is in that order; else the last leaf), a Sequential standing for its last child
    (LRASPP's head adds two classifiers: the head gives the logits, neither classifier)."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and once(n)]
    if linears:
        return linears[-1:]
    order = [n for n, _ in leaves(model)] if calls is None else list(calls)
    last = next((n for n in reversed(order) if once(n)), None)
    while last is not None and isinstance(model.get_submodule(last), nn.Sequential):
        children = [n for n, _ in model.get_submodule(last).named_children()]
        if not children or not once(f"{last}.{children[-1]}"):
            break
        last = f"{last}.{children[-1]}"
    return [] if last is None else [last]


def auto_output_keys(model: nn.Module, names: list[str]) -> dict:
    """``{name: 0}`` for the attention blocks that ``"auto"`` captures at their class token."""
    if not _has_class_token(model):
        return {}
    stack = set(_attention_stack(model))
    return {name: 0 for name in names if name in stack}
