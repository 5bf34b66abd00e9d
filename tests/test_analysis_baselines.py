"""Label-free baselines: planted spectra give the known counts and effective ranks."""

import math

import numpy as np
import pytest
import torch

import peekwidgets.analysis.baselines as baselines
from peekwidgets.analysis import energy_rank, rankme
from peekwidgets.blocks import Block


def with_spectrum(s, n=60, d=20, seed=0):
    """``(n, d)`` float32 matrix with singular values ``s`` (the rest zero)."""
    rng = np.random.default_rng(seed)
    u = np.linalg.qr(rng.standard_normal((n, len(s))))[0]
    v = np.linalg.qr(rng.standard_normal((d, len(s))))[0]
    return (u * np.asarray(s, float)) @ v.T


@pytest.mark.parametrize("shape", [(60, 20), (15, 40)])  # Gram on the feature or sample side
def test_energy_rank_counts_the_planted_components(shape):
    n, d = shape
    # energies 6, 3, 0.6, 0.4 of 10: two components hold 90%, three 96%
    x = with_spectrum(np.sqrt([6.0, 3.0, 0.6, 0.4]), n, d)
    block = Block("logits", torch.from_numpy(x.astype(np.float32)))
    assert energy_rank(block) == 3
    assert energy_rank(block, share=0.9) == 2
    assert energy_rank(block, share=0.5) == 1
    # k equal components: exactly k are needed for 95% (no rounding up to k + 1)
    equal = Block("logits", torch.from_numpy(with_spectrum([2.0] * 4, n, d).astype(np.float32)))
    assert energy_rank(equal) == 4 and energy_rank(equal, share=0.5) == 2


@pytest.mark.parametrize("k", [1, 3, 7])
def test_rankme_of_k_equal_singular_values_is_k(k):
    x = with_spectrum([3.0] * k, 50, 30, seed=k)
    assert rankme(Block("h", torch.from_numpy(x))) == pytest.approx(k, rel=1e-4)
    wide = with_spectrum([3.0] * k, 12, 80, seed=k)
    assert rankme(Block("h", torch.from_numpy(wide))) == pytest.approx(k, rel=1e-4)


def test_rankme_matches_the_definition_on_a_tensor_block(monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 3, 9)) * np.linspace(1, 0.1, 9)
    s = np.linalg.svd(x.reshape(40, -1), compute_uv=False)
    p = s / s.sum() + 1e-12
    expected = math.exp(-np.sum(p * np.log(p)))  # Garrido et al. 2023
    block = Block("conv", torch.from_numpy(x))
    assert rankme(block) == pytest.approx(expected, rel=1e-6)
    # read in slices of a few rows, the same numbers
    monkeypatch.setattr(baselines, "_SLICE_BYTES", 8 * 27 * 3)
    np.testing.assert_allclose(baselines.singular_values(block)[:27], s, rtol=1e-6)
    assert rankme(block) == pytest.approx(expected, rel=1e-6)


def test_an_all_zero_block_has_rank_zero():
    zero = Block("dead", torch.zeros(10, 4))
    assert energy_rank(zero) == 0 and rankme(zero) == 0.0
