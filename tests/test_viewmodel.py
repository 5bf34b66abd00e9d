"""The view model: the numbers every front end reads from one fit (no widget imports)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from peekwidgets.blocks import Block, Blocks
from peekwidgets.engine import CoupledCP
from peekwidgets.engine.diagnostics import DEGENERACY_THRESHOLD, degeneracy
from peekwidgets.viewmodel import ViewModel


def planted(n=60, seed=0, noise=0.0):
    """Nonnegative blocks of rank 2 (plus ``noise``): samples 0-5 carry pattern 1, the rest
    pattern 0."""
    rng = np.random.default_rng(seed)
    A = rng.random((n, 2)) * 0.1
    A[:6, 1] += 1.0
    A[6:, 0] += 0.5 + rng.random(n - 6)

    def block(name, width, spatial=None):
        x = A @ rng.random((2, width)) + noise * rng.random((n, width))
        return Block(name, torch.from_numpy(x.astype(np.float32)), spatial)

    return Blocks([block("input", 64, (8, 8)), block("fc", 10)], sample_shape=(1, 8, 8))


def test_total_share_weighs_blocks_as_the_fit_does():
    blocks = planted()
    est = CoupledCP(2, max_iter=500, random_state=0,
                    block_weights={"input": 1.0, "fc": 3.0}).fit(blocks)
    view = ViewModel(blocks, est)
    w2 = np.array([1.0, 9.0])
    np.testing.assert_allclose(view.total_share, w2 @ est.explained_variance_ / w2.sum())
    assert view.total_share.sum() == pytest.approx((w2 @ [est.fit_["input"], est.fit_["fc"]])
                                                   / w2.sum(), abs=1e-6)


# -- fit health ----------------------------------------------------------------------------------
def test_a_planted_dead_component_is_flagged_with_the_fix():
    blocks = planted()
    rng = np.random.default_rng(1)
    init = {"input": [rng.random((64, 3))], "fc": [rng.random((10, 3))]}
    for fs in init.values():
        fs[0][:, 2] = 0.0  # component 2 starts with no pattern anywhere: its loadings stay 0
    est = CoupledCP(3, nonnegative=True, init=init, max_iter=300, tol=1e-5).fit(blocks)
    health = ViewModel(blocks, est).health
    dead = np.flatnonzero(np.linalg.norm(est.A_, axis=0) == 0)
    assert len(dead) == 1 and health.dead == (int(dead[0]),)
    assert not health.ok and int(dead[0]) in health.suspect
    (flag,) = health.flags(int(dead[0]))
    assert "dead" in flag and "lower rank" in flag
    assert any("refit at rank 2" in p for p in health.problems(3))
    assert health.flags(int(np.flatnonzero(np.linalg.norm(est.A_, axis=0) > 0)[0])) == []


def test_near_duplicate_pairs_are_found_by_congruence():
    blocks = planted()
    est = CoupledCP(3, max_iter=300, random_state=0).fit(blocks)
    rng = np.random.default_rng(2)
    for fs in est.factors_.values():  # component 2 := component 0 plus a little noise
        for f in fs:
            f[:, 2] = f[:, 0] + 0.01 * rng.standard_normal(len(f))
    est.A_[:, 2] = est.A_[:, 0] + 0.01 * rng.standard_normal(len(est.A_))
    health = ViewModel(blocks, est).health
    ((r, s, c),) = health.duplicates
    assert (r, s) == (0, 2) and 0.95 < c <= 1.0
    assert "nearly duplicates component 2" in health.flags(0)[0]


def test_a_pair_that_cancels_in_one_block_is_found_there():
    # a tensor of rank 3 and border rank 2: rank-2 fits diverge into two cancelling
    # components; coupled with a block of noise, the product of the cosines over every
    # block's modes does not show it, the cosines within the tensor block do
    rng = np.random.default_rng(1)
    n = 40
    a, b, c, e, f, g = (rng.standard_normal((k, 1)) for k in (n, n, 6, 6, 7, 7))
    x = np.einsum("ir,jr,kr->ijk", np.hstack([a, a, b]), np.hstack([c, e, c]),
                  np.hstack([g, f, f]))
    blocks = Blocks([Block("t", torch.from_numpy(x.reshape(n, 6, 7).astype(np.float32))),
                     Block("noise", torch.from_numpy(rng.standard_normal((n, 30)).astype(
                         np.float32)))])
    est = CoupledCP(2, init="random", max_iter=2000, tol=0, random_state=0,
                    dtype=torch.float64, block_weights={"t": 1.0, "noise": 0.1}).fit(blocks)
    assert not degeneracy([est.A_, *(f for fs in est.factors_.values() for f in fs)]).degenerate
    health = ViewModel(blocks, est).health
    ((r, s, c, block),) = health.cancelling
    assert (r, s, block) == (0, 1, "t") and c < DEGENERACY_THRESHOLD
    assert "components 0 and 1 cancel each other in t" in health.problems(2)[-1]
    assert "cancels component 1 in t" in health.flags(0)[0]
    # a well-posed fit of the same shapes has no such pair
    assert ViewModel(planted(), CoupledCP(2, random_state=0).fit(planted())).health.ok


def test_how_the_fit_ended_is_kept():
    blocks = planted(noise=0.3)
    est = CoupledCP(2, max_iter=3, tol=0.0, random_state=0)
    with pytest.warns(Warning, match="did not converge"):
        est.fit(blocks)
    health = ViewModel(blocks, est).health
    losses = est.loss_history_
    assert (health.state, health.n_iter) == ("max_iter", 3)
    assert health.change == pytest.approx(abs(losses[-2] - losses[-1]) / losses[-2])
    assert "larger max_iter" in health.problems(2)[0]

    def stop(sweep, loss):
        if sweep == 2:
            raise KeyboardInterrupt

    est = CoupledCP(2, max_iter=50, random_state=0)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        est.fit(blocks, callback=stop)
    health = ViewModel(blocks, est).health
    assert health.state == "interrupted" and "refit to finish" in health.problems(2)[0]
    est = CoupledCP(2, max_iter=500, random_state=0).fit(blocks)
    health = ViewModel(blocks, est).health
    assert health.state == "converged" and health.ok and health.problems(2) == []


def test_a_signed_block_of_a_nonnegative_fit_is_a_problem():
    blocks = planted()
    fc = blocks["fc"].data
    blocks = Blocks([blocks["input"], Block("fc", fc - fc.mean())], sample_shape=(1, 8, 8))
    with pytest.warns(UserWarning, match="signed blocks"):
        est = CoupledCP(2, nonnegative=True, max_iter=200, random_state=0).fit(blocks)
    health = ViewModel(blocks, est).health
    assert health.signed == (("fc", est.negative_share_["fc"]),) and not health.ok
    assert health.problems(2)[-1].startswith(
        f"fc is signed: its negative values ({est.negative_share_['fc']:.0%} of its variance)")
    assert "refit least squares" in health.problems(2)[-1]


def test_the_opening_component_is_not_the_mean_like_one():
    blocks = planted()
    est = CoupledCP(3, max_iter=300, random_state=0).fit(blocks)
    est.A_[:, 0] = 1 / np.sqrt(len(est.A_))  # every sample the same: the mean activation
    view = ViewModel(blocks, est)
    assert view.mean_like[0] and not view.mean_like[1:].any()
    assert view.opening_component == 1
