"""Capture: run a model once over its inputs and keep chosen layer outputs as blocks.

The only stage that touches ``nn.Module`` (besides the demo). :func:`capture` returns
:class:`~peekwidgets.blocks.Blocks`; :func:`resolve_layers` says which layers it would take.

Modules, one job each: :mod:`~peekwidgets.capture.layers` (which layers),
:mod:`~peekwidgets.capture.source` (inputs as ``(x, labels)`` batches),
:mod:`~peekwidgets.capture.borrow` (running the model without changing it),
:mod:`~peekwidgets.capture.layout` (block shapes, pooling, ``like=``),
:mod:`~peekwidgets.capture.storage` (memory budget and storage tiers),
:mod:`~peekwidgets.capture.shard` (which inputs each process of a group reads) and
:mod:`~peekwidgets.capture.stream` (:func:`capture` and its streaming loop).
"""

from peekwidgets.capture.layers import resolve_layers
from peekwidgets.capture.stream import capture

__all__ = ["capture", "resolve_layers"]
