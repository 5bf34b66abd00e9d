"""peekwidgets: look inside a trained PyTorch network.

The pipeline, one stage per subpackage::

    model + inputs --capture--> Blocks --engine--> CoupledCP --analysis--> rank profile
                    \\________________ Analysis (session.py) ________________/
                                 |                              |
                         widgets (Peek, views)          report (write_report)

``capture`` streams a model's inputs and layer outputs into :class:`Blocks`;
:class:`CoupledCP` factorizes all blocks jointly with a shared sample factor;
:func:`rank_profile` and :func:`compare_checkpoints` estimate the rank of that
factorization without labels; :class:`Analysis` owns the whole pipeline for one model
and its inputs; :class:`Peek` shows it as linked Jupyter widgets.

Names are imported lazily (PEP 562), so ``import peekwidgets.engine`` or
``peekwidgets.capture`` loads neither ipywidgets nor bqplot. ``peekwidgets.capture`` the
attribute is the function (``from peekwidgets import capture``), bound when the package is
imported so that importing the ``peekwidgets.capture`` subpackage cannot replace it.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("peekwidgets")
except PackageNotFoundError:  # a source tree on PYTHONPATH, not installed
    __version__ = "0+unknown"

#: public name -> the module that defines it
_EXPORTS = {
    "Block": "peekwidgets.blocks",
    "Blocks": "peekwidgets.blocks",
    "resolve_layers": "peekwidgets.capture",
    "CoupledCP": "peekwidgets.engine",
    "rank_profile": "peekwidgets.analysis",
    "estimate_rank": "peekwidgets.analysis",
    "RankProfile": "peekwidgets.analysis",
    "compare_checkpoints": "peekwidgets.analysis",
    "CheckpointComparison": "peekwidgets.analysis",
    "Analysis": "peekwidgets.session",
    "Peek": "peekwidgets.widgets",
    "write_report": "peekwidgets.report",
    "load_demo": "peekwidgets.demo",
}

# importing the subpackage binds it as the package's attribute `capture`: bind the function
from peekwidgets.capture import capture  # noqa: E402, F401  (exported in __all__)

__all__ = sorted([*_EXPORTS, "capture"])


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'peekwidgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
