"""The tracked loss: explicit residuals only where needed, and a stopping rule that stays right
where ``||X||^2 - ||Xhat||^2`` cancels in float32."""

import numpy as np
import pytest
import torch

from peekwidgets.blocks import Blocks
from peekwidgets.engine import CoupledCP, ops
from peekwidgets.engine import coupled as coupled_module

EPS32 = float(np.finfo(np.float32).eps)


def planted(noise, n=200, rank=4, seed=0):
    """A matrix and a tensor block sharing A, plus relative Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, rank, generator=g, dtype=torch.float64)
    x = {"fc": a @ torch.randn(rank, 40, generator=g, dtype=torch.float64),
         "conv": torch.einsum("nr,cr,sr->ncs", a, torch.randn(6, rank, generator=g,
                              dtype=torch.float64), torch.randn(20, rank, generator=g,
                                                                dtype=torch.float64))}
    return Blocks.from_arrays({
        k: (v + noise * v.std() * torch.randn(v.shape, generator=g, dtype=torch.float64)).float()
        for k, v in x.items()})


@pytest.fixture
def residuals(monkeypatch):
    """Counts the sweeps (and final passes) that form the explicit residual of a block batch."""
    calls = []
    residual_norms = ops.residual_norms

    def counting(*args):
        calls.append(1)
        return residual_norms(*args)

    monkeypatch.setattr(coupled_module.ops, "residual_norms", counting)
    return calls


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # fixed counts
def test_stopping_rule_is_right_where_the_loss_cancels_in_float32():
    blocks = planted(noise=1e-4, seed=1)  # fit 1 - 1e-8: ||X||^2 - ||Xhat||^2 is lost to
    tol = 1e-3  # float32 rounding; changes fall by about half a sweep, through tol
    model = CoupledCP(4, tol=tol, max_iter=300, random_state=0).fit(blocks)
    total = len(blocks)  # blocks scaled to unit norm
    assert model.converged_ and model.loss_ < 0.1 * EPS32 * total
    n = model.n_iter_
    # the same sweeps with a fixed count: their final passes give the explicit loss of each state
    explicit = [CoupledCP(4, tol=-1, max_iter=k, random_state=0).fit(blocks).loss_
                for k in (n - 2, n - 1, n)]
    np.testing.assert_allclose(model.loss_history_[-3:], explicit, rtol=1e-5)
    change = -np.diff(explicit) / explicit[:-1]
    assert change[1] <= tol < change[0], change  # stopped at the first sweep within tol


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_loss_history_tracks_the_explicit_loss_of_every_state(monkeypatch):
    blocks = planted(noise=0.3)
    params = dict(rank=4, tol=-1, max_iter=30, random_state=0)
    tracked = CoupledCP(**params).fit(blocks)
    monkeypatch.setattr(coupled_module, "CHECK_EVERY", 1)  # explicit in every sweep
    explicit = CoupledCP(**params).fit(blocks)
    np.testing.assert_allclose(tracked.loss_history_, explicit.loss_history_, rtol=1e-6)
    np.testing.assert_array_equal(tracked.A_, explicit.A_)  # measuring changes no iterate
    hist = np.array(tracked.loss_history_)
    assert (np.diff(hist) <= 1e-7 * hist[:-1]).all()


@pytest.mark.parametrize("dtype, most", [(torch.float32, 0.5), (torch.float64, 0.15)])
def test_most_sweeps_form_no_explicit_residual(residuals, dtype, most):
    blocks = planted(noise=0.3)
    model = CoupledCP(4, dtype=dtype, tol=1e-9, max_iter=200, random_state=0).fit(blocks)
    assert model.n_iter_ >= 30
    measured = len(residuals) / len(blocks)  # one batch per block here
    assert 2 <= measured <= most * model.n_iter_, (measured, model.n_iter_)
