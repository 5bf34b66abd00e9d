"""Diagnostics checked against tlviz and against direct dense computations."""

from types import SimpleNamespace

import numpy as np
import pytest
import tensorly as tl
import torch
from tensorly.decomposition import parafac
from tlviz.factor_tools import factor_match_score as tlviz_fms
from tlviz.model_evaluation import core_consistency as tlviz_core_consistency

from peekwidgets.blocks import Block
from peekwidgets.engine.diagnostics import (
    DEGENERACY_THRESHOLD,
    component_explained_variance,
    core_consistency,
    coupled_factor_match_score,
    degeneracy,
    explained_variance,
    factor_match_score,
)

SHAPE = (40, 6, 15)
RANK = 3


def planted(shape=SHAPE, rank=RANK, noise=0.01, seed=0):
    """Random factors and a tensor built from them, with relative Gaussian noise."""
    rng = np.random.default_rng(seed)
    factors = [rng.standard_normal((n, rank)) for n in shape]
    clean = tl.cp_to_tensor((None, factors))
    scale = noise * np.linalg.norm(clean) / np.sqrt(clean.size)
    return factors, clean + scale * rng.standard_normal(shape)


def fit(X, rank):
    return parafac(X, rank, init="svd", n_iter_max=500, tol=1e-10)


def shuffled(factors, seed=1):
    """The same components permuted, rescaled per mode and sign-flipped; and the permutation."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(factors[0].shape[1])
    out = []
    for f in factors:
        scale = rng.uniform(0.5, 2.0, f.shape[1]) * rng.choice([-1.0, 1.0], f.shape[1])
        out.append((f * scale)[:, perm])
    return out, perm


@pytest.fixture(scope="module")
def noisy():
    return planted()


# ------------------------------------------------------------------------------ core consistency
@pytest.mark.parametrize("rank", [1, 2, 3, 4])
def test_core_consistency_matches_tlviz(noisy, rank):
    _, X = noisy
    cp = fit(X, rank)
    for normalized in (False, True):
        ref = tlviz_core_consistency(cp, X, normalised=normalized)
        ours = core_consistency(X, cp, normalized=normalized)
        assert ours == pytest.approx(ref, rel=1e-9, abs=1e-9)


def test_core_consistency_high_for_right_rank_low_when_overfactored(noisy):
    factors, X = noisy
    assert core_consistency(X, (None, factors)) > 99.9
    assert core_consistency(X, fit(X, RANK)) > 99.0
    assert core_consistency(X, fit(X, RANK + 1)) < 50.0


def test_core_consistency_streams_a_block(noisy):
    _, X = noisy
    cp = fit(X, 4)
    dense = core_consistency(X, cp)
    block = Block("conv", torch.tensor(X, dtype=torch.float64))
    assert core_consistency(block, cp, batch_size=7) == pytest.approx(dense, rel=1e-10)
    assert core_consistency(torch.from_numpy(X), cp, batch_size=40) == pytest.approx(dense)
    single = core_consistency(X, cp, dtype=torch.float32, batch_size=16)
    assert single == pytest.approx(dense, rel=1e-3)


def test_core_consistency_clear_errors(noisy):
    factors, X = noisy
    with pytest.raises(ValueError, match="3-way"):
        core_consistency(X[:, :, 0], (None, factors[:2]))
    with pytest.raises(ValueError, match=r"rows \(40, 6, 14\).*shape \(40, 6, 15\)"):
        core_consistency(X, (None, [factors[0], factors[1], factors[2][:-1]]))
    with pytest.raises(ValueError, match="different numbers of columns"):
        core_consistency(X, (None, [factors[0], factors[1][:, :2], factors[2]]))
    with pytest.raises(ValueError, match="2 weights for 3 components"):
        core_consistency(X, (np.ones(2), factors))
    with pytest.raises(ValueError, match="batch_size"):
        core_consistency(X, (None, factors), batch_size=0)
    with pytest.raises(TypeError, match="list of factor matrices"):
        core_consistency(X, (None, factors[0]))


# ----------------------------------------------------------------------------- factor match score
def test_fms_is_one_for_permuted_scaled_sign_flipped_copy(noisy):
    factors, _ = noisy
    copy, perm = shuffled(factors)
    fms, found = factor_match_score(factors, copy, return_permutation=True)
    assert fms == pytest.approx(1.0)
    # copy[m][:, found] lines up with factors: found inverts the shuffle
    np.testing.assert_array_equal(perm[found], np.arange(RANK))
    signed = factor_match_score(factors, copy, absolute_value=False)
    assert signed < 1.0


@pytest.mark.parametrize("consider_weights", [False, True])
def test_fms_matches_tlviz_on_a_noisy_fit(noisy, consider_weights):
    factors, X = noisy
    weights = np.array([3.0, 1.0, 0.5])
    cp = fit(X, RANK)
    ref, ref_perm = tlviz_fms(
        (weights, factors), cp, consider_weights=consider_weights, return_permutation=True
    )
    fms, perm = factor_match_score(
        factors, cp.factors, weights, cp.weights,
        consider_weights=consider_weights, return_permutation=True,
    )
    assert fms == pytest.approx(ref, rel=1e-12)
    np.testing.assert_array_equal(perm, ref_perm)
    if not consider_weights:  # the planted weights differ from the fitted magnitudes
        assert 0.99 < fms <= 1.0


def test_fms_matches_tlviz_unrelated_models_skip_mode_and_ranks(noisy):
    factors, _ = noisy
    other, _ = planted(seed=5)
    ours = factor_match_score(factors, other)
    assert ours == pytest.approx(tlviz_fms((None, factors), (None, other), consider_weights=False))
    assert ours < 0.5
    # split-half style: the sample mode differs, so it is skipped
    half = [factors[0][:20], *factors[1:]]
    ref = tlviz_fms((None, half), (None, factors), consider_weights=False, skip_mode=0)
    assert factor_match_score(half, factors, skip_mode=0) == pytest.approx(ref)
    assert factor_match_score(half, factors, skip_mode=0) == pytest.approx(1.0)
    # more components on one side: the mean runs over matched pairs, the extra one is -1
    fewer = [f[:, :2] for f in factors]
    fms, perm = factor_match_score(factors, fewer, return_permutation=True)
    ref = tlviz_fms((None, factors), (None, fewer), consider_weights=False)
    assert fms == pytest.approx(ref) == pytest.approx(1.0)
    np.testing.assert_array_equal(perm, [0, 1, -1])


def test_fms_clear_errors(noisy):
    factors, _ = noisy
    with pytest.raises(ValueError, match="3 and 2 modes"):
        factor_match_score(factors, factors[:2])
    with pytest.raises(ValueError, match=r"rows \[40, 6, 15\] and \[39, 6, 15\]"):
        factor_match_score(factors, [factors[0][1:], *factors[1:]])
    with pytest.raises(ValueError, match="skip_mode=3"):
        factor_match_score(factors, factors, skip_mode=3)
    with pytest.raises(TypeError, match="list of factor matrices"):
        factor_match_score(factors[0], factors)
    with pytest.raises(ValueError, match="weights_b has 2 entries for 3 components"):
        factor_match_score(factors, factors, None, [1.0, 2.0], consider_weights=True)
    with pytest.raises(ValueError, match="pass consider_weights=False"):
        factor_match_score(factors, factors, skip_mode=0, consider_weights=True)


# ------------------------------------------------------------------------ coupled factor match
def coupled_model(seed=0, rank=RANK, n=30):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, rank))
    return SimpleNamespace(
        A_=A / np.linalg.norm(A, axis=0),
        weights_=np.sort(rng.uniform(1, 5, rank))[::-1],
        factors_={
            "input": [rng.standard_normal((12, rank))],
            "conv": [rng.standard_normal((4, rank)), rng.standard_normal((9, rank))],
            "fc": [rng.standard_normal((7, rank))],
        },
    )


def relabelled(model, seed=1):
    """The same coupled model with components permuted, rescaled and sign-flipped."""
    names = list(model.factors_)
    flat, perm = shuffled([model.A_, *[f for n in names for f in model.factors_[n]]], seed)
    it = iter(flat[1:])
    factors = {n: [next(it) for _ in model.factors_[n]] for n in names}
    return SimpleNamespace(A_=flat[0], weights_=model.weights_[perm], factors_=factors), perm


def test_coupled_fms_recovers_the_shared_permutation():
    model = coupled_model()
    other, perm = relabelled(model)
    result = coupled_factor_match_score(model, other)
    assert result.score == pytest.approx(1.0)
    assert result.per_block == pytest.approx({"input": 1.0, "conv": 1.0, "fc": 1.0})
    np.testing.assert_array_equal(perm[result.permutation], np.arange(RANK))


def test_coupled_fms_per_block_scores_under_one_matching():
    model = coupled_model()
    other, _ = relabelled(model)
    noise = np.random.default_rng(3).standard_normal(other.factors_["fc"][0].shape)
    other.factors_["fc"] = [other.factors_["fc"][0] + 2.0 * noise]
    result = coupled_factor_match_score(model, other)
    assert result.per_block["input"] == pytest.approx(1.0)
    assert result.per_block["conv"] == pytest.approx(1.0)
    assert result.per_block["fc"] < 0.9
    assert result.score < 0.9
    # each per-block score is the block's own FMS under the joint permutation
    for name, value in result.per_block.items():
        mats_a = [model.A_, *model.factors_[name]]
        mats_b = [f[:, result.permutation] for f in [other.A_, *other.factors_[name]]]
        cos = [np.abs(np.sum(fa * fb, 0) / np.linalg.norm(fa, axis=0) / np.linalg.norm(fb, axis=0))
               for fa, fb in zip(mats_a, mats_b)]
        assert value == pytest.approx(np.prod(cos, axis=0).mean())
    # the joint matching is what a single-block comparison finds when one block is compared
    one = coupled_factor_match_score(model, other, blocks=["conv"])
    fms = factor_match_score([model.A_, *model.factors_["conv"]],
                             [other.A_, *other.factors_["conv"]])
    assert one.score == pytest.approx(fms) == pytest.approx(one.per_block["conv"])


def test_coupled_fms_matches_tlviz_on_one_block():
    model, other = coupled_model(0), coupled_model(7)
    result = coupled_factor_match_score(model, other, blocks=["conv"])
    ref, perm = tlviz_fms(
        (None, [model.A_, *model.factors_["conv"]]),
        (None, [other.A_, *other.factors_["conv"]]),
        consider_weights=False, return_permutation=True,
    )
    assert result.score == pytest.approx(ref)
    np.testing.assert_array_equal(result.permutation, perm)


def test_coupled_fms_without_samples_and_errors():
    model = coupled_model()
    other, _ = relabelled(model)
    other_samples = SimpleNamespace(**{**vars(other), "A_": np.ones((10, RANK))})
    assert coupled_factor_match_score(model, other_samples, compare_samples=False).score == (
        pytest.approx(1.0)
    )
    with pytest.raises(ValueError, match=r"rows \[30, 12\] and \[10, 12\].*compare_samples=False"):
        coupled_factor_match_score(model, other_samples)
    fewer = SimpleNamespace(**{**vars(other), "factors_": {"conv": other.factors_["conv"]}})
    with pytest.raises(ValueError, match=r"different blocks.*blocks=\['conv'\]"):
        coupled_factor_match_score(model, fewer)
    with pytest.raises(ValueError, match="model_b has no block 'fc'"):
        coupled_factor_match_score(model, fewer, blocks=["fc"])
    with pytest.raises(ValueError, match="model_b .* not fitted; call fit"):
        coupled_factor_match_score(model, SimpleNamespace(rank=3))


# --------------------------------------------------------------------------- explained variance
def dense_fit(X, cp):
    return 1.0 - np.sum((X - tl.cp_to_tensor(cp)) ** 2) / np.sum(X**2)


def test_explained_variance_of_tensor_and_matrix_blocks(noisy):
    _, X = noisy
    cp = fit(X, 2)
    ref = dense_fit(X, cp)
    assert explained_variance(X, cp) == pytest.approx(ref, rel=1e-12)
    block = Block("conv", torch.tensor(X, dtype=torch.float32))
    assert explained_variance(block, cp, batch_size=9) == pytest.approx(ref, rel=1e-6)
    M = X.reshape(X.shape[0], -1)
    B = tl.tenalg.khatri_rao(cp.factors[1:])
    assert explained_variance(M, (cp.weights, [cp.factors[0], B])) == pytest.approx(ref)
    # the planted noise level: 1% of the RMS, so the true factors explain 1 - 1e-4
    factors, _ = noisy
    assert explained_variance(X, (None, factors)) == pytest.approx(1 - 1e-4, abs=3e-5)


@pytest.mark.parametrize("kind", ["tensor", "matrix"])
@pytest.mark.parametrize("method", ["share", "alone", "removed"])
def test_component_explained_variance_against_dense(noisy, method, kind):
    _, X = noisy
    weights, factors = fit(X, RANK)
    if kind == "matrix":
        X = X.reshape(X.shape[0], -1)
        factors = [factors[0], tl.tenalg.khatri_rao(factors[1:])]
    total = dense_fit(X, (weights, factors))
    expected = []
    for r in range(RANK):
        only = tl.cp_to_tensor((weights[[r]], [f[:, [r]] for f in factors]))
        if method == "share":
            expected.append(np.sum(X * only) / np.sum(X**2))
        elif method == "alone":
            expected.append(dense_fit(X, (weights[[r]], [f[:, [r]] for f in factors])))
        else:
            keep = [s for s in range(RANK) if s != r]
            expected.append(total - dense_fit(X, (weights[keep], [f[:, keep] for f in factors])))
    block = Block(kind, torch.tensor(X))
    ours = component_explained_variance(block, (weights, factors), method=method, batch_size=11)
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-12)


def test_component_shares_add_up_to_the_fit_at_a_least_squares_optimum(noisy):
    _, X = noisy
    weights, (A, U, V) = fit(X, RANK + 1)  # overfactored: correlated components
    # make the last factor exactly least-squares optimal given the others
    kr = tl.tenalg.khatri_rao([A * weights, U])
    V = np.linalg.lstsq(kr, tl.unfold(X, 2).T, rcond=None)[0].T
    cp = (None, [A * weights, U, V])
    shares = component_explained_variance(X, cp)
    assert shares.sum() == pytest.approx(explained_variance(X, cp), rel=1e-10)


def test_explained_variance_clear_errors(noisy):
    factors, X = noisy
    with pytest.raises(ValueError, match="method must be"):
        component_explained_variance(X, (None, factors), method="sum")
    with pytest.raises(ValueError, match="all zeros"):
        explained_variance(np.zeros(SHAPE), (None, factors))
    with pytest.raises(ValueError, match=r"rows \(40, 6, 15\).*shape \(40, 90\)"):
        explained_variance(X.reshape(40, -1), (None, factors))
    with pytest.raises(TypeError, match="CPTensor or a \\(weights, factors\\) pair"):
        explained_variance(X, factors)


# ---------------------------------------------------------------------------------- degeneracy
def test_degeneracy_flags_a_diverging_pair():
    # a tensor of rank 3 and border rank 2: rank-2 fits diverge into two cancelling components
    rng = np.random.default_rng(1)
    a, b, c, e, f, g = (rng.standard_normal((n, 1)) for n in (5, 5, 6, 6, 7, 7))
    X = tl.cp_to_tensor((None, [np.hstack([a, a, b]), np.hstack([c, e, c]), np.hstack([g, f, f])]))
    weights, factors = parafac(X, 2, init="random", random_state=0, n_iter_max=500, tol=0)
    result = degeneracy(factors)
    assert result.degenerate and result.pair == (0, 1)
    assert result.min_cosine < DEGENERACY_THRESHOLD
    # the two components cancel: one of them has a negative share of the fit
    assert component_explained_variance(X, (weights, factors)).min() < 0


def test_degeneracy_of_a_well_posed_fit_and_edge_cases(noisy):
    _, X = noisy
    weights, factors = fit(X, RANK)
    result = degeneracy(factors)
    cos = [[np.prod([f[:, r] @ f[:, s] / np.linalg.norm(f[:, r]) / np.linalg.norm(f[:, s])
                     for f in factors]) for s in range(RANK)] for r in range(RANK)]
    pairs = {(r, s): cos[r][s] for r in range(RANK) for s in range(r + 1, RANK)}
    assert result.min_cosine == pytest.approx(min(pairs.values()))
    assert result.pair == min(pairs, key=pairs.get)
    assert not result.degenerate
    assert degeneracy(factors, threshold=result.min_cosine + 1e-9).degenerate
    single = degeneracy([f[:, :1] for f in factors])
    assert np.isnan(single.min_cosine) and single.pair is None and not single.degenerate


# ---------------------------------------------------------------------------------------- CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_diagnostics_on_cuda_match_cpu(noisy):
    _, X = noisy
    cp = fit(X, RANK)
    block = Block("conv", torch.tensor(X, dtype=torch.float32, device="cuda"))
    X32 = X.astype(np.float32).astype(np.float64)  # the values the block holds
    assert core_consistency(block, cp, batch_size=16) == pytest.approx(
        core_consistency(X32, cp), rel=1e-9
    )
    assert explained_variance(block, cp) == pytest.approx(explained_variance(X, cp), rel=1e-6)
    np.testing.assert_allclose(
        component_explained_variance(block, cp, dtype=torch.float32),
        component_explained_variance(X, cp), rtol=1e-4, atol=1e-6,
    )
