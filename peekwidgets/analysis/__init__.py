"""Analysis of a joint factorization: the label-free rank profile and checkpoint comparison.

Modules, one job each: :mod:`~peekwidgets.analysis.profile` (the rank rule and
:func:`rank_profile`), :mod:`~peekwidgets.analysis.stability` (restart, split-half and
core-consistency diagnostics of identifiable models),
:mod:`~peekwidgets.analysis.baselines` (label-free baselines: :func:`energy_rank`, :func:`rankme`)
and :mod:`~peekwidgets.analysis.checkpoints` (:func:`compare_checkpoints`). Results hold data
only; their figures are in :mod:`peekwidgets.widgets.rank_figures` (bqplot) and
:mod:`peekwidgets.report` (matplotlib).
"""

from peekwidgets.analysis.baselines import ENERGY_SHARE, energy_rank, rankme
from peekwidgets.analysis.checkpoints import CRITERIA, CheckpointComparison, compare_checkpoints
from peekwidgets.analysis.profile import (
    DEFAULT_THRESHOLD,
    RankProfile,
    estimate_rank,
    rank_profile,
)

__all__ = [
    "CRITERIA",
    "DEFAULT_THRESHOLD",
    "ENERGY_SHARE",
    "CheckpointComparison",
    "RankProfile",
    "compare_checkpoints",
    "energy_rank",
    "estimate_rank",
    "rank_profile",
    "rankme",
]
