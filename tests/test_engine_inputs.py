"""Awkward inputs to the engine: each gets the right result or a clear error, blocks untouched."""

import re
import warnings

import numpy as np
import pytest
import torch

from peekwidgets.blocks import Blocks, check_finite
from peekwidgets.engine import CoupledCP


def arrays(n=120, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, 3, generator=gen)
    x = {"input": a @ torch.randn(3, 30, generator=gen),
         "conv": torch.einsum("nr,cr,sr->ncs", a, torch.randn(4, 3, generator=gen),
                              torch.randn(6, 3, generator=gen))}
    return {k: v + 0.1 * torch.randn(v.shape, generator=gen) for k, v in x.items()}


def bits(blocks):
    return [b.data.clone() for b in blocks]


def unchanged(blocks, before):
    return all(torch.equal(b.data.view(torch.int32), x.view(torch.int32))
               for b, x in zip(blocks, before))


def test_nan_blocks_get_the_one_finite_check_in_fit_and_transform():
    data = arrays()
    data["conv"][17, 2, 1] = float("nan")
    blocks = Blocks.from_arrays(data)
    before = bits(blocks)
    with pytest.raises(ValueError) as expected:
        check_finite(blocks)
    message = re.escape(str(expected.value))
    assert "block 'conv' contains NaN or Inf values in 1 of 120 samples, first in sample 17" \
        in str(expected.value) and "drop those samples" in str(expected.value)
    with pytest.raises(ValueError, match=message):
        CoupledCP(3).fit(blocks)
    model = CoupledCP(3, random_state=0).fit(arrays())
    with pytest.raises(ValueError, match=message):
        model.transform(blocks)
    assert unchanged(blocks, before)


@pytest.mark.parametrize("nonnegative", [False, True])
def test_activations_near_1e18_give_the_same_fit(nonnegative):
    data = arrays()
    if nonnegative:
        data = {k: v.abs() for k, v in data.items()}
    params = dict(rank=3, nonnegative=nonnegative, random_state=0)
    plain = CoupledCP(**params).fit(data)
    for scale in (1e18, 1e30):
        big = Blocks.from_arrays({k: v * scale for k, v in data.items()})
        before = bits(big)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no ConvergenceWarning, no overflow warning
            model = CoupledCP(**params).fit(big)
        assert np.isfinite(model.loss_) and model.converged_
        for name in data:
            assert model.fit_[name] == pytest.approx(plain.fit_[name], abs=1e-5), name
        np.testing.assert_allclose(model.A_, plain.A_, atol=1e-3)
        np.testing.assert_allclose(model.transform(big), model.A_, atol=5e-3)
        assert unchanged(big, before)


@pytest.mark.parametrize("rank, message", [
    (True, "rank=True: expected a whole number of components >= 1, not a bool; "
           "for example rank=5"),
    (5.0, "rank=5.0: expected a whole number of components >= 1, not a float; pass rank=5"),
    (2.5, "rank=2.5: expected a whole number of components >= 1, not a float; "
          "for example rank=5"),
    (0, "rank=0: expected a whole number of components >= 1; for example rank=5"),
    (-3, "rank=-3: expected a whole number of components >= 1; for example rank=5"),
    ("4", "rank='4': expected a whole number of components >= 1, not a str"),
])
def test_rank_is_validated_before_any_work(monkeypatch, rank, message):
    blocks = Blocks.from_arrays(arrays())
    before = bits(blocks)
    monkeypatch.setattr(type(blocks["input"]), "norm", lambda self: pytest.fail("data read"))
    with pytest.raises(ValueError, match=re.escape(message)):
        CoupledCP(rank).fit(blocks)
    assert unchanged(blocks, before)


@pytest.mark.parametrize("name, value, message", [
    ("n_init", False, "n_init=False: expected a whole number of starts >= 1, not a bool"),
    ("max_iter", 10.0, "max_iter=10.0: expected a whole number of sweeps >= 1, not a float; "
                       "pass max_iter=10"),
    ("tol", None, "tol=None: expected a number (the relative decrease of the loss that stops"),
    ("tol", float("nan"), "tol=nan: expected a number"),
    ("device", "bogus", "device='bogus' is not a torch device"),
    ("device", "meta", "device='meta' holds no values to fit; pass 'cpu' or 'cuda'"),
    ("random_state", 1.5, "random_state=1.5: expected None, an int, or a numpy RandomState"),
    ("normalize", "no", "normalize='no': expected True or False"),
    ("nonnegative", 1, "nonnegative=1: expected True or False"),
])
def test_other_counts_and_tol_are_validated(name, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        CoupledCP(3, **{name: value}).fit(arrays())


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason="only a machine without CUDA can show this error")
def test_a_cuda_device_without_one_says_to_fit_on_the_cpu():
    with pytest.raises(ValueError, match=r"device='cuda', but torch sees no CUDA device here; "
                       r"pass device='cpu'"):
        CoupledCP(3, device="cuda").fit(arrays())


def test_random_state_takes_numpy_states_and_any_int():
    blocks = Blocks.from_arrays(arrays())
    fits = [CoupledCP(2, init="random", max_iter=5, tol=-1, random_state=state).fit(blocks).A_
            for state in (np.random.RandomState(0), np.random.RandomState(0),
                          np.random.default_rng(0), 2**70, 2**70)]
    np.testing.assert_array_equal(fits[0], fits[1])  # the same draw, the same fit
    np.testing.assert_array_equal(fits[3], fits[4])
    assert all(np.isfinite(a).all() for a in fits)


def test_a_negative_tol_runs_max_iter_sweeps_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = CoupledCP(3, max_iter=4, tol=-1.0, random_state=0).fit(arrays())
    assert model.n_iter_ == 4 and not model.converged_


def test_tensors_that_require_grad_are_fitted_and_folded_in():
    data = {name: torch.as_tensor(x).clone().requires_grad_() for name, x in arrays().items()}
    model = CoupledCP(3, random_state=0).fit(data)
    plain = CoupledCP(3, random_state=0).fit(arrays())
    np.testing.assert_allclose(model.A_, plain.A_, atol=1e-6)
    np.testing.assert_allclose(model.transform(data), model.A_, atol=5e-3)
