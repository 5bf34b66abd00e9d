"""Estimator parameters in scikit-learn's style: read from the constructor, set, cloned.

The parameter names are the keyword parameters of the estimator's ``__init__`` (its signature
is the only list of them), each stored unchanged as an attribute of the same name. This gives
:meth:`Params.get_params`, :meth:`Params.set_params` and :func:`clone` with scikit-learn's
semantics (``sklearn.base.clone`` works on these estimators too) without importing
scikit-learn, and the tags that scikit-learn's own checks read (``check_is_fitted``).
"""

from __future__ import annotations

import copy
import difflib
import inspect
import numbers

import numpy as np

__all__ = ["Params", "as_seed", "clone"]


def as_seed(random_state) -> int | None:
    """``random_state`` as a seed: an int (reduced to 63 bits), or drawn from a numpy
    ``RandomState`` or ``Generator`` (as scikit-learn takes them); None for a fresh one."""
    if random_state is None:
        return None
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(np.iinfo(np.int64).max))
    if isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral):
        raise ValueError(f"random_state={random_state!r}: expected None, an int, or a numpy "
                         "RandomState or Generator")
    return int(random_state) % 2**63


class Params:
    """Mixin: ``get_params`` / ``set_params`` from the constructor signature."""

    @classmethod
    def _param_names(cls) -> list[str]:
        """The constructor's parameter names, in signature order."""
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self, deep: bool = True) -> dict:
        """The estimator's parameters, ``{name: value}``.

        Parameters
        ----------
        deep : bool
            Accepted for scikit-learn compatibility; no parameter is itself an estimator, so
            ``deep`` changes nothing.
        """
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set parameters by name and return ``self`` (fitted attributes are left as they are;
        call ``fit`` again).

        Raises
        ------
        ValueError
            When a name is not a parameter of the estimator (nothing is set then).
        """
        valid = self._param_names()
        for name in params:
            if name not in valid:
                close = difflib.get_close_matches(name, valid, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"{name!r} is not a parameter of {type(self).__name__}{hint}; its "
                    f"parameters are {valid}"
                )
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __sklearn_is_fitted__(self) -> bool:
        """Whether ``fit`` has run (``sklearn.utils.validation.check_is_fitted`` asks this)."""
        return any(name.endswith("_") and not name.startswith("_") for name in vars(self))

    def __sklearn_tags__(self):
        """scikit-learn's tags (1.6 and later): an unsupervised estimator that needs ``fit``.
        Only scikit-learn calls this, so it is loaded then."""
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False))


def clone(estimator):
    """A new, unfitted estimator with a deep copy of ``estimator``'s parameters.

    ``clone(model).set_params(rank=8).fit(blocks)`` refits with one parameter changed and
    leaves ``model`` as it is.
    """
    params = {name: copy.deepcopy(value)
              for name, value in estimator.get_params(deep=False).items()}
    return type(estimator)(**params)
