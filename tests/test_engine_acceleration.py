"""Acceleration by default: extrapolated sweeps kept only when the loss falls, fewer sweeps to
converge at equal or lower loss, and the estimated loss of an extrapolated point."""

import numpy as np
import pytest
import torch

from peekwidgets.blocks import Blocks
from peekwidgets.engine import CoupledCP
from peekwidgets.engine import coupled as coupled_module

EPS32 = float(np.finfo(np.float32).eps)


def collinear(noise, n=300, rank=4, seed=0, nonnegative=False):
    """Uniform (so collinear, slowly converging) factors of a matrix and a tensor block."""
    rng = np.random.default_rng(seed)
    a, b, u, v = (rng.random((d, rank)) for d in (n, 40, 6, 15))
    arrays = {"fc": a @ b.T, "conv": np.einsum("nr,cr,sr->ncs", a, u, v)}
    out = {}
    for name, x in arrays.items():
        x = x + noise * x.std() * rng.standard_normal(x.shape)
        out[name] = torch.tensor(np.maximum(x, 0) if nonnegative else x, dtype=torch.float32)
    return Blocks.from_arrays(out)


def kept_extrapolations(monkeypatch):
    """Counts the extrapolated sweeps (those that estimate or measure a jumped start)."""
    calls = {"estimated": 0, "measured": 0}
    sweep = coupled_module.CoupledCP._sweep

    def counting(self, data, factors, a_prev, a_out, measure=False, energy=None):
        if energy is not None:
            calls["estimated"] += 1
        return sweep(self, data, factors, a_prev, a_out, measure, energy)

    monkeypatch.setattr(coupled_module.CoupledCP, "_sweep", counting)
    return calls


@pytest.mark.parametrize("nonnegative", [False, True])
def test_acceleration_by_default_converges_in_fewer_sweeps_at_no_higher_loss(nonnegative):
    blocks = collinear(0.05, nonnegative=nonnegative)
    params = dict(rank=4, nonnegative=nonnegative, tol=1e-7, max_iter=3000, init="random",
                  random_state=0)
    plain = CoupledCP(**params, extrapolate=False).fit(blocks)
    fast = CoupledCP(**params).fit(blocks)
    assert plain.converged_ and fast.converged_
    assert fast.n_iter_ * 1.5 <= plain.n_iter_, (fast.n_iter_, plain.n_iter_)
    assert fast.loss_ <= plain.loss_ * (1 + 1e-6), (fast.loss_, plain.loss_)
    for model in (plain, fast):
        hist = np.array(model.loss_history_)
        assert (np.diff(hist) <= 1e-6 * hist[:-1]).all()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # fixed counts
def test_extrapolated_losses_are_estimated_from_the_sweep_and_stay_within_their_bound(
        monkeypatch):
    """With an explicit residual in every plain sweep, each tracked loss (as the callback sees
    it) is compared with the explicit loss of the same state, which replaces it one sweep
    later: an estimated loss is within ESTIMATE * eps * ||X||^2 of it."""
    blocks = collinear(0.2)
    calls = kept_extrapolations(monkeypatch)
    monkeypatch.setattr(coupled_module, "CHECK_EVERY", 1)
    seen = []
    model = CoupledCP(4, tol=-1, max_iter=80, init="random", random_state=0).fit(
        blocks, callback=lambda sweep, loss: seen.append(loss))
    total = len(blocks)  # unit-norm blocks
    assert calls["estimated"] >= 10, calls  # the fit is coarse: estimates, no residuals
    tracked = np.array(seen[1:]) * total
    explicit = np.array(model.loss_history_[1:])
    assert np.abs(tracked - explicit).max() <= coupled_module.ESTIMATE * EPS32 * total
    assert (np.diff(explicit) <= 1e-6 * explicit[:-1]).all()


@pytest.mark.parametrize("nonnegative", [False, True])
def test_sweep_estimate_of_the_loss_matches_the_explicit_residual(nonnegative):
    blocks = collinear(0.1, nonnegative=nonnegative)
    model = CoupledCP(4, nonnegative=nonnegative, init="random", random_state=0)
    data = model._batched(blocks, [1 / b.norm() for b in blocks], "cpu")
    factors = model._initial_factors(data, blocks.names, 0, torch.Generator().manual_seed(0))
    a_cur, a_out = (torch.zeros(data.n, 4) for _ in range(2))
    for _ in range(3):  # a few sweeps from a random start, then a jumped point
        _, factors, _ = model._sweep(data, factors, None if not a_cur.any() else a_cur, a_out)
        a_cur, a_out = a_out, a_cur
    jumped = [[1.5 * f for f in fs] for fs in factors]
    estimated, _, drop_e = model._sweep(data, jumped, a_cur * 0.7, a_out, energy=len(blocks))
    explicit, _, drop_x = model._sweep(data, jumped, a_cur * 0.7, a_out, measure=True)
    assert abs(estimated - explicit) <= coupled_module.ESTIMATE * EPS32 * len(blocks)
    assert drop_e == drop_x


def test_fine_fits_measure_the_extrapolated_point_explicitly(monkeypatch):
    """Below FINE_FIT of the energy the estimate is too coarse: extrapolated points are then
    measured by their explicit residual, and acceleration still pays."""
    blocks = collinear(0.01)  # a fit of 1 - 2e-5
    plain = CoupledCP(4, tol=1e-6, max_iter=2000, init="random", random_state=0,
                      extrapolate=False).fit(blocks)
    calls = kept_extrapolations(monkeypatch)
    model = CoupledCP(4, tol=1e-6, max_iter=2000, init="random", random_state=0).fit(blocks)
    assert model.converged_ and model.loss_ < coupled_module.FINE_FIT * len(blocks) / 10
    first_fine = next(i for i, v in enumerate(model.loss_history_[1:], 1)
                      if v < coupled_module.FINE_FIT * len(blocks))
    assert calls["estimated"] < first_fine  # estimates only while the fit is coarse
    assert model.n_iter_ * 1.5 <= plain.n_iter_, (model.n_iter_, plain.n_iter_)
    assert model.loss_ <= plain.loss_ * (1 + 1e-6)
    hist = np.array(model.loss_history_)
    assert (np.diff(hist) <= 1e-6 * hist[:-1]).all()
