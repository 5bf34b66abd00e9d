"""Capture: run a model once over its inputs and keep chosen layer outputs as blocks.

The only stage that touches ``nn.Module`` (besides the demo). :func:`capture` returns
:class:`~peekwidgets.blocks.Blocks`; :func:`resolve_layers` says which layers it would take.
"""

from peekwidgets.capture.stream import capture, resolve_layers

__all__ = ["capture", "resolve_layers"]
