"""Analysis of a joint factorization: the label-free rank profile and checkpoint comparison.

Modules, one job each: :mod:`~peekwidgets.analysis.profile` (the rank rule and
:func:`rank_profile`), :mod:`~peekwidgets.analysis.stability` (restart, split-half and
core-consistency diagnostics of identifiable models) and
:mod:`~peekwidgets.analysis.checkpoints` (:func:`compare_checkpoints`). Results hold data
only; their figures are in :mod:`peekwidgets.widgets.rank_figures` (bqplot) and
:mod:`peekwidgets.report` (matplotlib).
"""

from peekwidgets.analysis.checkpoints import CheckpointComparison, compare_checkpoints
from peekwidgets.analysis.profile import (
    DEFAULT_THRESHOLD,
    RankProfile,
    estimate_rank,
    rank_profile,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "CheckpointComparison",
    "RankProfile",
    "compare_checkpoints",
    "estimate_rank",
    "rank_profile",
]
