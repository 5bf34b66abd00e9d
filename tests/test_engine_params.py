"""Estimator parameters: get_params / set_params / clone, and no import cycle in the engine."""

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest
import sklearn.base
import sklearn.utils
import torch

import peekwidgets
from peekwidgets.blocks import Blocks
from peekwidgets.engine import CoupledCP, clone

ENGINE = Path(peekwidgets.__file__).parent / "engine"

#: A value for every constructor parameter, each different from its default.
CHANGED = dict(rank=3, nonnegative=True, init="random", n_init=2, max_iter=7, tol=1e-3,
               block_weights={"a": 2.0}, normalize=False, batch_size=16, device="cpu",
               dtype=torch.float64, random_state=4, progress=True, extrapolate=True)


def small_blocks():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(40, 3, generator=gen)
    return Blocks.from_arrays({"a": a @ torch.rand(3, 12, generator=gen),
                               "t": torch.einsum("nr,cr,sr->ncs", a, torch.rand(4, 3),
                                                 torch.rand(5, 3))})


def test_get_params_round_trips_every_constructor_parameter():
    signature = inspect.signature(CoupledCP.__init__)
    names = [p for p in signature.parameters if p != "self"]
    assert sorted(CHANGED) == sorted(names), "CHANGED must cover every parameter"
    defaults = CoupledCP().get_params()
    assert defaults == {n: signature.parameters[n].default for n in names}
    model = CoupledCP(**CHANGED)
    assert model.get_params() == CHANGED and model.get_params(deep=False) == CHANGED
    assert CoupledCP(**model.get_params()).get_params() == CHANGED
    assert CoupledCP().set_params(**CHANGED).get_params() == CHANGED
    assert list(model.get_params()) == names  # signature order


def test_repr_names_the_parameters_that_differ_from_the_defaults():
    assert repr(CoupledCP()) == "CoupledCP(rank=5)"
    assert repr(CoupledCP(3, nonnegative=True, tol=1e-3, dtype=torch.float64)) == (
        "CoupledCP(rank=3, nonnegative=True, tol=0.001, dtype=torch.float64)")
    fitted = CoupledCP(2, max_iter=7, tol=-1).fit(small_blocks())
    assert repr(fitted) == "CoupledCP(rank=2, max_iter=7, tol=-1)"  # parameters only
    init = {"a": [np.ones((12, 2))]}
    assert repr(CoupledCP(2, init=init)).startswith("CoupledCP(rank=2, init={'a': [array(")


def test_an_unfitted_model_says_so_as_scikit_learn_does():
    from sklearn.exceptions import NotFittedError

    model = CoupledCP(2)
    for use in (lambda: model.transform(small_blocks()), lambda: model.cp_tensor("a"),
                lambda: model.save("never.npz")):
        with pytest.raises(NotFittedError, match=r"not fitted yet; call fit\(blocks\) first"):
            use()
    assert not hasattr(model, "A_")


def test_set_params_rejects_an_unknown_name_and_sets_nothing():
    model = CoupledCP(rank=4)
    with pytest.raises(ValueError, match=r"'ranks' is not a parameter of CoupledCP "
                                         r"\(did you mean 'rank'\?\); its parameters are") as e:
        model.set_params(tol=1.0, ranks=8)
    assert "'extrapolate'" in str(e.value)  # lists the valid names
    assert model.rank == 4 and model.tol == 1e-6  # nothing set
    with pytest.raises(ValueError, match="'zzz' is not a parameter of CoupledCP; its"):
        model.set_params(zzz=1)
    assert model.set_params(rank=6) is model and model.rank == 6


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # capped on purpose
def test_clone_is_unfitted_equal_in_params_and_independent():
    init = {"a": [np.full((12, 3), 0.5)], "t": [np.ones((4, 3)), np.ones((5, 3))]}
    model = CoupledCP(3, init=init, block_weights={"a": 2.0}, max_iter=5).fit(small_blocks())
    for copy in (clone(model), sklearn.base.clone(model)):  # scikit-learn's clone agrees
        assert type(copy) is CoupledCP and not hasattr(copy, "A_")
        params, theirs = copy.get_params(), model.get_params()
        assert params.keys() == theirs.keys()
        for name in params:
            if name != "init":
                assert params[name] == theirs[name], name
        assert all(np.array_equal(f, g) for n in init
                   for f, g in zip(params["init"][n], theirs["init"][n]))
        assert params["init"]["a"][0] is not init["a"][0]  # a deep copy
        assert params["block_weights"] is not model.block_weights
    refit = clone(model).set_params(max_iter=6).fit(small_blocks())  # the clone is usable
    assert refit.n_iter_ <= 6 and model.max_iter == 5 and np.isfinite(refit.loss_)
    np.testing.assert_array_equal(init["a"][0], 0.5)  # the user's init is untouched


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # capped on purpose
def test_scikit_learns_check_is_fitted_reads_the_estimator():
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    model = CoupledCP(2, max_iter=3)
    with pytest.raises(NotFittedError):
        check_is_fitted(model)
    check_is_fitted(model.fit(small_blocks()))
    check_is_fitted(model, "A_")
    if hasattr(sklearn.utils, "get_tags"):  # scikit-learn 1.6 and later
        tags = sklearn.utils.get_tags(model)
        assert tags.requires_fit and not tags.target_tags.required


def test_refit_at_another_rank_from_initial_factors_says_what_to_pass():
    blocks = small_blocks()
    init = {"a": [np.ones((12, 3))], "t": [np.ones((4, 3)), np.ones((5, 3))]}
    before = [b.data.clone() for b in blocks]
    with pytest.raises(ValueError, match=r"init factors of block 'a' have shapes \[\(12, 3\)\], "
                                         r"expected \[\(12, 5\)\].*init='svd'"):
        clone(CoupledCP(3, init=init)).set_params(rank=5).fit(blocks)
    assert all(torch.equal(b.data, x) for b, x in zip(blocks, before))


def _imports(path: Path, package: str) -> set[str]:
    """peekwidgets modules that a module imports anywhere in it (submodules resolved)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module if node.level == 0 else package
            for a in node.names:
                sub = f"{base}.{a.name}"
                is_module = (ENGINE.parent.parent / (sub.replace(".", "/") + ".py")).exists()
                out.add(sub if is_module else base)
    return {m for m in out if m.startswith("peekwidgets")}


def test_engine_has_no_import_cycle_and_io_does_not_import_the_estimator():
    modules = {f"peekwidgets.engine.{p.stem}": p for p in ENGINE.glob("*.py")
               if p.stem != "__init__"}
    graph = {name: _imports(path, "peekwidgets.engine") for name, path in modules.items()}
    assert "peekwidgets.engine.coupled" not in graph["peekwidgets.engine.io"]
    io_names = {a.name for node in ast.walk(ast.parse((ENGINE / "io.py").read_text()))
                if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
    assert "CoupledCP" not in io_names
    assert not graph["peekwidgets.engine.io"], "io is the file format only"

    def reaches(start, target, seen=()):
        return any(m == target or (m in graph and m not in seen
                                   and reaches(m, target, (*seen, m)))
                   for m in graph.get(start, ()))

    cycles = [m for m in graph if reaches(m, m)]
    assert not cycles, cycles
    assert "peekwidgets.engine" not in set().union(*graph.values()), \
        "an engine module imports the package, which imports it back"


def test_initial_factors_that_cannot_start_a_fit_are_refused():
    blocks = small_blocks()
    good = CoupledCP(2, random_state=0).fit(blocks).factors_
    nan = {**good, "a": [np.full_like(good["a"][0], np.nan)]}
    zero = {**good, "t": [good["t"][0], np.zeros_like(good["t"][1])]}
    typo = {**good, "tt": good["t"]}
    for init, message in [(nan, "init factor 0 of block 'a' holds NaN or Inf"),
                          (zero, r"init factor 1 of block 't' has all-zero columns \[0, 1\]"),
                          (typo, r"init has factors for \['tt'\], which are not among the "
                                 r"blocks \['a', 't'\]")]:
        with pytest.raises(ValueError, match=message):
            CoupledCP(2, init=init).fit(blocks)


def test_transform_validates_its_iterations():
    blocks = small_blocks()
    model = CoupledCP(2, nonnegative=True, random_state=0).fit(blocks)
    with pytest.raises(ValueError, match=r"n_iter=2.5: expected a whole number of HALS "
                       r"iterations >= 0, not a float"):
        model.transform(blocks, n_iter=2.5)
    assert model.transform(blocks, n_iter=0).shape == model.A_.shape
