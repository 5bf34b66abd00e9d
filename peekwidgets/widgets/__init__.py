"""Linked-view widgets (ipywidgets + bqplot) over a fitted coupled factorization.

``Peek`` is the dashboard; ``ComponentMap``, ``InputGallery``, ``LayerResponse``,
``SampleMap`` and ``Traversal`` also work alone (``View.from_fitted(blocks, estimator)``).
"""

from .base import ErrorArea, StateTraits, View
from .component_map import ComponentMap
from .controls import Controls
from .dashboard import Peek
from .gallery import InputGallery
from .layer_response import LayerResponse
from .render import InputRenderer
from .sample_map import SampleMap
from .traversal import Traversal

__all__ = [
    "ComponentMap",
    "Controls",
    "ErrorArea",
    "InputGallery",
    "InputRenderer",
    "LayerResponse",
    "Peek",
    "SampleMap",
    "StateTraits",
    "Traversal",
    "View",
]
