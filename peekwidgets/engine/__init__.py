"""The coupled CP/matrix factorization engine and its diagnostics."""

from peekwidgets.engine.coupled import CoupledCP
from peekwidgets.engine.diagnostics import (
    component_explained_variance,
    core_consistency,
    coupled_factor_match_score,
    degeneracy,
    explained_variance,
    factor_match_score,
)
from peekwidgets.engine.params import clone

__all__ = [
    "CoupledCP",
    "clone",
    "component_explained_variance",
    "core_consistency",
    "coupled_factor_match_score",
    "degeneracy",
    "explained_variance",
    "factor_match_score",
]
