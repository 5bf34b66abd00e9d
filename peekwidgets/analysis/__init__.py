"""Analysis of a joint factorization: the label-free rank profile and checkpoint comparison."""

from peekwidgets.analysis.rank import (
    DEFAULT_THRESHOLD,
    CheckpointComparison,
    RankProfile,
    compare_checkpoints,
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
