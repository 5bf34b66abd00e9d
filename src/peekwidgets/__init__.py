"""peekwidgets: look inside a trained PyTorch network.

``capture`` streams a model's inputs and layer outputs into :class:`Blocks`;
:class:`CoupledCP` factorizes all blocks jointly with a shared sample factor;
:func:`rank_profile` and :func:`compare_checkpoints` estimate the rank of that
factorization without labels; :class:`Peek` shows the result as linked Jupyter widgets.
"""

from peekwidgets.blocks import Block, Blocks
from peekwidgets.capture import capture, resolve_layers
from peekwidgets.engine import CoupledCP
from peekwidgets.rank import compare_checkpoints, rank_profile
from peekwidgets.widgets import Peek

__version__ = "0.1.0"

__all__ = [
    "Block",
    "Blocks",
    "CoupledCP",
    "Peek",
    "capture",
    "compare_checkpoints",
    "rank_profile",
    "resolve_layers",
]
