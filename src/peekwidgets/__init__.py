"""peekwidgets: look inside a trained PyTorch network.

``capture`` streams a model's inputs and layer outputs into :class:`Blocks`;
:class:`CoupledCP` factorizes all blocks jointly with a shared sample factor;
:class:`Peek` shows the result as linked Jupyter widgets.
"""

from peekwidgets.blocks import Block, Blocks
from peekwidgets.capture import capture, resolve_layers
from peekwidgets.engine import CoupledCP
from peekwidgets.widgets import Peek

__version__ = "0.1.0"

__all__ = ["Block", "Blocks", "CoupledCP", "Peek", "capture", "resolve_layers"]
