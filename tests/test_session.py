"""The Analysis: one model and its inputs through capture, fit, refit, fold-in and rank."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from peekwidgets import Analysis
from peekwidgets.blocks import Block, Blocks
from peekwidgets.capture import capture
from peekwidgets.engine import CoupledCP


def planted_model(seed=0):
    """A ReLU MLP whose inputs are a rank-3 nonnegative mixture plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    A = torch.rand(120, 3, generator=g)
    B = torch.rand(3, 20, generator=g)
    x = A @ B + 0.01 * torch.rand(120, 20, generator=g)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 5)).eval()
    return model, x


def state_of(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def analysis():
    model, x = planted_model()
    return Analysis(model, x, rank=3, progress=False)


def test_analysis_captures_fits_and_leaves_model_and_inputs_alone():
    model, x = planted_model()
    before, x_before = state_of(model), x.clone()
    a = Analysis(model, x, rank=3, progress=False)
    assert a.blocks.names == ["input", "1", "2"]
    assert a.view.rank == 3 and a.estimator.A_.shape == (120, 3)
    assert a.estimator.fit_["input"] > 0.99  # the planted rank-3 input is explained
    assert set(a.timings) == {"capture", "fit"}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert torch.equal(x, x_before)
    assert "rank 3" in repr(a) and "Sequential" in repr(a)


def test_refit_changes_the_fit_and_keeps_folded_inputs(analysis):
    model, x = planted_model()
    old = analysis.estimator
    A_new = analysis.fold_in(x[:7])
    assert A_new.shape == (7, 3)
    np.testing.assert_allclose(A_new, old.transform(analysis.folded[0]), rtol=1e-5, atol=1e-6)
    analysis.refit(rank=2, nonnegative=True, blocks=["input", "2"])
    assert analysis.estimator is not old and analysis.estimator.rank == 2
    assert analysis.estimator.nonnegative and analysis.view.names == ["input", "2"]
    assert old.rank == 3 and not old.nonnegative  # the old estimator is not changed
    assert analysis.view.folded_A.shape == (7, 2)
    np.testing.assert_allclose(analysis.view.folded_A,
                               analysis.estimator.transform(
                                   analysis.folded[0].select(["input", "2"])),
                               rtol=1e-5, atol=1e-6)
    analysis.refit(rank=3, nonnegative=False, blocks=["input", "1", "2"])


def test_folding_in_fewer_blocks_than_the_fit_warns():
    model, x = planted_model()
    a = Analysis(model, x, rank=3, progress=False)
    some = capture(model, x[:5], layers=["2"], include_input=False, progress=False)
    with pytest.warns(UserWarning, match=r"no block \['input', '1'\].*alone, \['2'\]"):
        a.fold_in(some)


def test_failed_refit_keeps_the_fit_on_show(analysis):
    estimator, view = analysis.estimator, analysis.view
    with pytest.raises(ValueError, match="unknown blocks"):
        analysis.refit(blocks=["nope"])
    with pytest.raises(ValueError, match="no blocks chosen"):
        analysis.refit(blocks=[])
    with pytest.raises(ValueError, match="rank"):
        analysis.refit(rank=10**6)
    assert analysis.estimator is estimator and analysis.view is view


def test_rank_profile_is_kept(analysis):
    profile = analysis.rank_profile(5, progress=False)
    assert analysis.profile is profile and profile.max_rank == 5
    assert profile.block_names == analysis.view.names


def test_from_fitted_needs_no_model_and_refuses_raw_inputs():
    rng = np.random.default_rng(0)
    blocks = Blocks([Block("input", torch.from_numpy(rng.random((40, 6), dtype=np.float32)))])
    cp = CoupledCP(2, progress=False).fit(blocks)
    a = Analysis.from_fitted(blocks, cp)
    assert a.estimator is cp and a.model is None
    with pytest.raises(ValueError, match="no model to capture raw inputs"):
        a.fold_in(torch.rand(3, 6))
    with pytest.raises(ValueError, match="needs the model and its inputs"):
        a.compare_checkpoints([])


@pytest.mark.parametrize("kwargs, message", [
    ({}, "pass either inputs .* or blocks .*not neither"),
    ({"inputs": torch.rand(4, 2), "blocks": "b"}, "not both"),
    ({"inputs": torch.rand(4, 2)}, "needs the model"),
])
def test_bad_construction_says_what_to_pass(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Analysis(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"engine_kwargs": {"nonnegative": True}}, r"engine_kwargs sets 'nonnegative', which is a "
     r"parameter of Analysis itself; pass Analysis\(\.\.\., nonnegative=\.\.\.\)"),
    ({"engine_kwargs": {"rank": 3}}, "engine_kwargs sets 'rank'"),
    ({"capture_kwargs": {"layers": ["0"]}}, "capture_kwargs sets 'layers'"),
])
def test_arguments_that_analysis_takes_itself_are_refused_in_kwargs(kwargs, message):
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU())
    with pytest.raises(TypeError, match=message):
        Analysis(model, torch.rand(10, 6), rank=2, progress=False, **kwargs)


def test_compare_checkpoints_reuses_the_model_profile():
    model, x = planted_model()
    a = Analysis(model, x, rank=2, progress=False)
    profile = a.rank_profile(4, progress=False)
    other = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 5))
    comparison = a.compare_checkpoints({"other": other, "final": model}, max_rank=4,
                                       progress=False)
    assert comparison.names == ["other", "final"]
    assert comparison.profiles[1] is profile
    assert comparison.profiles[0] is not profile
    assert comparison.accuracy is None  # no labels in the inputs
    again = a.compare_checkpoints({"final": model}, progress=False)  # the profile's max_rank
    assert again.profiles[0] is profile
    fresh = Analysis(model, x, rank=2, progress=False)
    assert fresh.compare_checkpoints([model], progress=False).profiles[0].max_rank == 20


def test_compare_checkpoints_takes_the_labels_found_in_the_inputs():
    model, x = planted_model()
    with torch.no_grad():
        y = model(x).argmax(1)  # the model's own predictions: accuracy 1
    a = Analysis(model, TensorDataset(x, y), rank=2, progress=False)
    comparison = a.compare_checkpoints({"final": model}, max_rank=3, progress=False)
    assert comparison.accuracy.tolist() == [1.0]
    # a DataLoader that shuffles: each pass is scored against its own labels
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(x, y), batch_size=7, shuffle=True)
    a = Analysis(model, loader, rank=2, progress=False)
    comparison = a.compare_checkpoints({"final": model}, max_rank=3, progress=False)
    assert comparison.accuracy.tolist() == [1.0]
    with pytest.raises(ValueError, match=r"DataLoader that shuffles.*labels='inputs'"):
        a.compare_checkpoints({"final": model}, labels=y.numpy(), max_rank=3, progress=False)
    with pytest.raises(ValueError, match=r"labels='inputs', but the inputs carry no labels"):
        Analysis(model, x, rank=2, progress=False).compare_checkpoints(
            {"final": model}, labels="inputs", max_rank=3, progress=False)


def test_refit_of_a_fit_from_initial_factors_starts_from_svd():
    model, x = planted_model()
    a = Analysis(model, x, rank=2, progress=False)
    init = {n: [f.copy() for f in fs] for n, fs in a.estimator.factors_.items()}
    a.refit(init=init, max_iter=5)
    assert isinstance(a.estimator.init, dict)
    a.refit(rank=3)  # the rank-2 factors cannot start a rank-3 fit
    assert a.estimator.init == "svd" and a.view.rank == 3


def test_an_all_zero_block_is_left_out_of_the_fit_with_a_warning():
    """An untrained head initialized at zero (torchvision's ViT) gives an all-zero block."""
    model, x = planted_model()
    torch.nn.init.zeros_(model[2].weight)
    torch.nn.init.zeros_(model[2].bias)
    with pytest.warns(RuntimeWarning, match=r"blocks \['2'\] are all zeros"):
        a = Analysis(model, x, rank=2, progress=False)
    assert a.view.names == ["input", "1"] and "2" in a.blocks.names
    assert a.view.unfitted == ["2"]  # what the component map and the report say
    from peekwidgets.report import plot_component_map

    texts = [t.get_text() for t in plot_component_map(a.view).texts]
    assert "captured but not in this fit: 2" in texts


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_cuda_model_is_analysed_on_its_device_as_on_the_cpu():
    model, x = planted_model()
    on_cpu = Analysis(model, x, rank=3, progress=False)
    cpu_profile = on_cpu.rank_profile(5, progress=False)
    gpu_model = planted_model()[0].cuda().train()
    before, x_before = state_of(gpu_model), x.clone()
    a = Analysis(gpu_model, x, rank=3, progress=False)
    assert {b.data.device.type for b in a.blocks} == {"cuda"}  # kept where the model runs
    assert a.estimator.fit_ == pytest.approx(on_cpu.estimator.fit_, abs=1e-3)
    assert isinstance(a.view.A, np.ndarray) and a.view.A.shape == (120, 3)
    np.testing.assert_allclose(a.fold_in(x[:7]), a.estimator.A_[:7], rtol=1e-3, atol=1e-4)
    profile = a.rank_profile(5, progress=False)
    np.testing.assert_allclose(profile.fit, cpu_profile.fit, atol=1e-4)
    assert profile.estimated_rank == cpu_profile.estimated_rank
    # a checkpoint saved on the CPU is compared on the model's device
    other = planted_model(seed=1)[0].state_dict()
    comparison = a.compare_checkpoints({"other": other, "final": gpu_model}, max_rank=5,
                                       progress=False)
    assert comparison.profiles[1] is profile and np.isfinite(comparison.scores).all()
    assert gpu_model.training and all(v.is_cuda for v in gpu_model.state_dict().values())
    assert all(torch.equal(v, before[k]) for k, v in gpu_model.state_dict().items())
    assert torch.equal(x, x_before)
