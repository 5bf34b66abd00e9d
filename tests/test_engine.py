"""CoupledCP: planted factors, TensorLy parity, streaming, fold-in, I/O, bad input."""

from types import SimpleNamespace

import numpy as np
import pytest
import tensorly as tl
import torch
from sklearn.exceptions import ConvergenceWarning
from tensorly.decomposition import coupled_matrix_tensor_3d_factorization, parafac

from peekwidgets.blocks import Block, Blocks
from peekwidgets.engine import (
    CoupledCP,
    component_explained_variance,
    coupled_factor_match_score,
    explained_variance,
)
from peekwidgets.engine import coupled as coupled_module
from peekwidgets.engine.svd import randomized_svd

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                   reason="no CUDA device")),
]
RANK = 5


def planted(nonnegative: bool, n=150, noise=0.01, seed=0):
    """Input matrix, two tensor blocks and a matrix block sharing A (rank 5), with noise."""
    rng = np.random.default_rng(seed)

    def factor(d):
        if nonnegative:  # sparse nonnegative columns are well identified
            return rng.random((d, RANK)) * (rng.random((d, RANK)) < 0.6)
        return rng.standard_normal((d, RANK))

    a = factor(n)
    factors = {"input": [factor(40)], "conv1": [factor(6), factor(12)],
               "conv2": [factor(8), factor(9)], "fc": [factor(20)]}
    arrays = {}
    for name, fs in factors.items():
        x = a @ fs[0].T if len(fs) == 1 else np.einsum("nr,cr,sr->ncs", a, *fs)
        x = x + noise * np.linalg.norm(x) / np.sqrt(x.size) * rng.standard_normal(x.shape)
        arrays[name] = torch.tensor(x, dtype=torch.float32)
    return Blocks.from_arrays(arrays), SimpleNamespace(A_=a, factors_=factors)


def negative_shares(blocks) -> dict:
    """Each block's share of its squared norm in negative values, in float64 numpy."""
    return {b.name: float((np.minimum(x, 0) ** 2).sum() / (x ** 2).sum())
            for b in blocks for x in [b.data.double().numpy()]}


@pytest.fixture(scope="module")
def ls_data():
    return planted(False)


@pytest.fixture(scope="module")
def ls_model(ls_data):
    return CoupledCP(RANK, tol=1e-9, max_iter=500, random_state=0).fit(ls_data[0])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("nonnegative", [False, True])
def test_planted_factors_recovered(device, nonnegative):
    blocks, truth = planted(nonnegative)
    blocks = Blocks([Block(b.name, b.data.to(device)) for b in blocks])
    model = CoupledCP(RANK, nonnegative=nonnegative, tol=1e-8, max_iter=500,
                      random_state=0).fit(blocks)
    match = coupled_factor_match_score(model, truth)
    assert match.score >= 0.99, match
    assert min(match.per_block.values()) >= 0.99, match
    assert model.converged_ and not model.interrupted_
    assert all(f > 0.99 for f in model.fit_.values()), model.fit_
    hist = np.array(model.loss_history_)  # ALS and HALS never increase the loss
    assert (np.diff(hist) <= 1e-6 * hist[:-1]).all()
    if nonnegative:
        assert (model.A_ >= 0).all()
        assert all((f >= 0).all() for fs in model.factors_.values() for f in fs)


def test_nonnegative_fit_of_a_signed_block_warns_and_says_what_it_leaves_out(tmp_path):
    blocks, _ = planted(True, n=60)
    fc = blocks["fc"].data.double()
    signed = fc - fc.mean()  # about half of it negative
    share = float((signed.clamp(max=0) ** 2).sum() / (signed ** 2).sum())
    blocks = Blocks([b if b.name != "fc" else Block("fc", signed.float()) for b in blocks])
    model = CoupledCP(RANK, nonnegative=True, max_iter=100, random_state=0)
    with pytest.warns(UserWarning, match=r"nonnegative fit of signed blocks: negative values "
                                         rf"hold {share:.0%} of 'fc' \(of the squared norm\).* "
                                         r"fit least squares") as caught:
        model.fit(blocks)
    assert [w.filename for w in caught] == [__file__]  # points at the caller's line
    assert model.negative_share_ == pytest.approx(negative_shares(blocks), rel=1e-5)
    assert model.negative_share_["fc"] == pytest.approx(share, rel=1e-6)
    assert model.fit_["fc"] <= 1 - share + 1e-6  # no nonnegative model explains them
    back = CoupledCP.load(model.save(tmp_path / "nn.npz"))
    assert back.negative_share_ == model.negative_share_


def test_nonnegative_fit_of_nonnegative_blocks_does_not_warn(recwarn):
    blocks, _ = planted(True, n=60)
    model = CoupledCP(RANK, nonnegative=True, max_iter=20, tol=-1, random_state=0).fit(blocks)
    assert not recwarn.list  # the noise makes a few small values negative: below the bound
    assert model.negative_share_ == pytest.approx(negative_shares(blocks), rel=1e-5)
    assert 0 < max(model.negative_share_.values()) < coupled_module.NEGATIVE_SHARE
    assert CoupledCP(RANK, max_iter=5, tol=-1).fit(blocks).negative_share_ == {}  # not measured


def test_fitted_conventions(ls_data, ls_model):
    blocks, _ = ls_data
    m = ls_model
    assert isinstance(m.A_, np.ndarray) and m.A_.shape == (blocks.n_samples, RANK)
    np.testing.assert_allclose(np.linalg.norm(m.A_, axis=0), 1.0, rtol=1e-10)
    assert (np.diff(m.weights_) <= 0).all(), "components ordered by weight, strongest first"
    peak = m.A_[np.argmax(np.abs(m.A_), axis=0), np.arange(RANK)]
    assert (peak > 0).all(), "sign convention: largest |entry| of each A column is positive"
    assert m.block_names_ == blocks.names
    assert m.block_kinds_ == ["matrix", "tensor", "tensor", "matrix"]
    assert [f.shape for f in m.factors_["conv1"]] == [(6, RANK), (12, RANK)]
    np.testing.assert_allclose(np.linalg.norm(m.factors_["conv1"][0], axis=0), 1.0)
    for b in blocks:
        np.testing.assert_allclose(m.block_scales_[b.name], 1.0 / b.norm(), rtol=1e-6)
    assert m.explained_variance_.shape == (len(blocks), RANK)
    # losses never increase (ALS is monotone), and the loss is the sum of block residuals
    hist = np.array(m.loss_history_)
    assert (np.diff(hist) <= 1e-6 * hist[:-1]).all()  # float32 rounding
    np.testing.assert_allclose(m.loss_, sum(1 - f for f in m.fit_.values()), rtol=1e-6)


def test_cp_tensor_and_explained_variance_match_diagnostics(ls_data, ls_model):
    blocks, _ = ls_data
    m = ls_model
    for i, b in enumerate(blocks):
        cp = m.cp_tensor(b.name)
        scaled = b.data.double() * m.block_scales_[b.name]
        rec = tl.cp_to_tensor(cp)
        fit = 1 - np.sum((scaled.numpy() - rec) ** 2) / np.sum(scaled.numpy() ** 2)
        np.testing.assert_allclose(m.fit_[b.name], fit, atol=1e-6)
        np.testing.assert_allclose(m.fit_[b.name], explained_variance(scaled, cp), atol=1e-6)
        share = component_explained_variance(scaled, cp)
        np.testing.assert_allclose(m.explained_variance_[i], share, atol=1e-5)
        np.testing.assert_allclose(m.explained_variance_[i].sum(), m.fit_[b.name], atol=1e-4)
        raw = m.cp_tensor(b.name, scaled=False)  # the model of the block as given
        np.testing.assert_allclose(tl.cp_to_tensor(raw), rec / m.block_scales_[b.name])
        np.testing.assert_allclose(explained_variance(b, raw), m.fit_[b.name], atol=1e-6)
        with tl.backend_context("pytorch"):  # in the backend's own arrays
            torch_rec = tl.cp_to_tensor(m.cp_tensor(b.name))
        assert isinstance(torch_rec, torch.Tensor)
        np.testing.assert_allclose(torch_rec.numpy(), rec)


def test_single_tensor_matches_tensorly_parafac():
    blocks, _ = planted(False, n=80)
    x = blocks["conv1"].data.double().numpy()
    rng = np.random.default_rng(1)
    a0, u0, v0 = (rng.random((d, RANK)) for d in x.shape)
    tl.set_backend("numpy")
    cp = parafac(x, RANK, init=tl.cp_tensor.CPTensor((np.ones(RANK), [a0, u0, v0])),
                 n_iter_max=1000, tol=1e-12)
    theirs = np.sum((x - tl.cp_to_tensor(cp)) ** 2)
    model = CoupledCP(RANK, init={"conv1": [u0, v0]}, normalize=False, tol=1e-10,
                      max_iter=1000).fit(blocks.select(["conv1"]))
    assert model.loss_ <= theirs * 1.001, (model.loss_, theirs)


def test_tensor_and_matrix_no_worse_than_tensorly_cmtf():
    blocks, _ = planted(False, n=80)
    x = blocks["conv1"].data.double().numpy()
    y = blocks["fc"].data.double().numpy()
    tl.set_backend("numpy")
    cp_x, cp_y, _ = coupled_matrix_tensor_3d_factorization(x, y, RANK, n_iter_max=500)
    theirs = np.sum((x - tl.cp_to_tensor(cp_x)) ** 2) + np.sum((y - tl.cp_to_tensor(cp_y)) ** 2)
    model = CoupledCP(RANK, normalize=False, tol=1e-8, max_iter=500, random_state=0)
    model.fit(blocks.select(["conv1", "fc"]))
    assert model.loss_ <= theirs * (1 + 1e-6), (model.loss_, theirs)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # capped on purpose
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("nonnegative", [False, True])
def test_streaming_equals_in_memory(tmp_path, device, nonnegative):
    blocks, _ = planted(nonnegative, n=90)
    mapped = []
    for b in blocks:  # the same blocks backed by memory-mapped files on the host
        mm = np.lib.format.open_memmap(tmp_path / f"{b.name}.npy", mode="w+",
                                       dtype=np.float32, shape=b.shape)
        mm[:] = b.data.numpy()
        mapped.append(Block(b.name, torch.from_numpy(mm), meta={"storage": "memmap"}))
    params = dict(rank=RANK, nonnegative=nonnegative, tol=0, max_iter=25, random_state=3)
    whole = CoupledCP(**params, device=device).fit(
        Blocks([Block(b.name, b.data.to(device)) for b in blocks]))
    streamed = CoupledCP(**params, batch_size=16, device=device).fit(Blocks(mapped))
    np.testing.assert_allclose(streamed.A_, whole.A_, atol=1e-4)
    for name in blocks.names:
        for fs, fw in zip(streamed.factors_[name], whole.factors_[name]):
            np.testing.assert_allclose(fs, fw, atol=1e-4)
    np.testing.assert_allclose(streamed.loss_, whole.loss_, rtol=1e-5)


@pytest.mark.parametrize("nonnegative", [False, True])
def test_fold_in_reproduces_training_rows(nonnegative):
    blocks, _ = planted(nonnegative, n=90)
    model = CoupledCP(RANK, nonnegative=nonnegative, tol=1e-12, max_iter=1000,
                      dtype=torch.float64, random_state=0).fit(blocks)
    folded = model.transform(blocks)
    assert folded.shape == model.A_.shape
    np.testing.assert_allclose(folded, model.A_, atol=2e-3 * np.abs(model.A_).max())
    sub = model.transform(Blocks.from_arrays({"input": blocks["input"].data[:7]}))
    assert sub.shape == (7, RANK)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # capped on purpose
def test_deterministic_with_seed():
    blocks, _ = planted(False, n=60)
    params = dict(rank=RANK, init="random", n_init=2, max_iter=20, random_state=7)
    m1, m2 = CoupledCP(**params).fit(blocks), CoupledCP(**params).fit(blocks)
    assert np.array_equal(m1.A_, m2.A_) and np.array_equal(m1.weights_, m2.weights_)
    for name in blocks.names:
        assert all(np.array_equal(f, g) for f, g in zip(m1.factors_[name], m2.factors_[name]))
    assert m1.loss_history_ == m2.loss_history_


def test_save_load_round_trip_exact(tmp_path, ls_data, ls_model):
    path = tmp_path / "model.npz"
    ls_model.save(path)
    back = CoupledCP.load(path)
    for attr in ("weights_", "A_", "explained_variance_"):
        assert np.array_equal(getattr(back, attr), getattr(ls_model, attr)), attr
    for name in ls_model.block_names_:
        assert all(np.array_equal(f, g)
                   for f, g in zip(back.factors_[name], ls_model.factors_[name]))
    for attr in ("block_names_", "block_kinds_", "block_shapes_", "block_scales_", "fit_",
                 "loss_", "loss_history_", "n_iter_", "converged_", "interrupted_"):
        assert getattr(back, attr) == getattr(ls_model, attr), attr
    assert (back.rank, back.tol, back.dtype) == (ls_model.rank, ls_model.tol, ls_model.dtype)
    np.testing.assert_array_equal(back.transform(ls_data[0]), ls_model.transform(ls_data[0]))


def test_keyboard_interrupt_keeps_best_so_far(monkeypatch):
    blocks, _ = planted(False, n=60)
    calls = {"n": 0}
    update = coupled_module.ops.update_block

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3 * len(blocks):  # during the 4th sweep
            raise KeyboardInterrupt
        return update(*args, **kwargs)

    monkeypatch.setattr(coupled_module.ops, "update_block", interrupting)
    with pytest.warns(RuntimeWarning, match="interrupted") as record:
        model = CoupledCP(RANK, max_iter=50, random_state=0).fit(blocks)
    assert model.interrupted_ and not model.converged_
    assert not [w for w in record if issubclass(w.category, ConvergenceWarning)]
    assert model.n_iter_ == 3
    assert np.isfinite(model.A_).all() and np.isfinite(model.loss_)
    assert model.loss_ <= model.loss_history_[0]


def test_bad_inputs_give_clear_errors():
    blocks, _ = planted(False, n=30)
    with pytest.raises(ValueError, match="rank=0"):
        CoupledCP(0).fit(blocks)
    with pytest.raises(ValueError, match="rank=4 is larger than the blocks allow"):
        CoupledCP(4).fit({"input": torch.rand(30, 2), "small": torch.rand(30, 1)})
    with pytest.raises(ValueError, match="larger than the 3 samples"):
        CoupledCP(4).fit({"input": torch.rand(3, 10)})
    with pytest.raises(ValueError, match="same number of samples"):
        CoupledCP(2).fit({"input": torch.rand(30, 10), "other": torch.rand(20, 4)})
    for bad in (float("nan"), float("inf")):
        x = torch.rand(30, 10)
        x[3, 4] = bad
        with pytest.raises(ValueError, match="'input' contains NaN or Inf"):
            CoupledCP(2).fit({"input": x})
    with pytest.raises(ValueError, match="no blocks"):
        CoupledCP(2).fit([])
    with pytest.raises(ValueError, match="init='pca'"):
        CoupledCP(2, init="pca").fit(blocks)
    with pytest.raises(ValueError, match="block_weights"):
        CoupledCP(2, block_weights={"nope": 2.0}).fit(blocks)
    with pytest.raises(ValueError, match="not fitted"):  # scikit-learn's NotFittedError
        CoupledCP(2).transform(blocks)


def test_block_narrower_than_rank_is_fitted():
    blocks, truth = planted(False, n=80)
    logits = blocks["fc"].data[:, :3]  # 3 features at rank 5: dependent B columns, still fitted
    model = CoupledCP(RANK, tol=1e-8, max_iter=300, random_state=0).fit(
        Blocks([blocks["input"], blocks["conv1"], Block("logits", logits)]))
    match = coupled_factor_match_score(model, truth, blocks=["input", "conv1"])
    assert match.score >= 0.99 and model.fit_["logits"] > 0.99


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # capped on purpose
def test_progress_bar_and_block_weights(capsys):
    blocks, _ = planted(False, n=40)
    model = CoupledCP(RANK, max_iter=3, progress=True, block_weights={"fc": 2.0},
                      random_state=0).fit(blocks)
    assert "sweep" in capsys.readouterr().err
    np.testing.assert_allclose(model.block_scales_["fc"], 2.0 / blocks["fc"].norm(), rtol=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # capped on purpose
def test_extrapolation_keeps_loss_decreasing_and_helps_slow_problems():
    rng = np.random.default_rng(5)  # collinear uniform factors: plain ALS converges slowly
    a, b, u, v = (rng.random((d, RANK)) for d in (100, 30, 8, 12))
    blocks = Blocks.from_arrays({
        "input": torch.tensor(a @ b.T, dtype=torch.float32),
        "conv": torch.tensor(np.einsum("nr,cr,sr->ncs", a, u, v), dtype=torch.float32),
    })
    params = dict(rank=RANK, init="random", tol=0, max_iter=60, random_state=0)
    plain = CoupledCP(**params, extrapolate=False).fit(blocks)
    fast = CoupledCP(**params).fit(blocks)  # extrapolates by default
    hist = np.array(fast.loss_history_)
    assert (np.diff(hist) <= 1e-6 * hist[:-1]).all()
    assert fast.loss_ < plain.loss_


@pytest.mark.parametrize("nonnegative", [False, True])
def test_extrapolation_never_raises_the_loss_near_convergence(nonnegative):
    """Accepted steps must beat the float32 estimate of the current loss by its rounding."""
    blocks, truth = planted(nonnegative)
    model = CoupledCP(RANK, nonnegative=nonnegative, tol=1e-8, max_iter=500, random_state=0,
                      extrapolate=True).fit(blocks)
    hist = np.array(model.loss_history_)
    assert (np.diff(hist) <= 1e-6 * hist[:-1]).all()
    assert coupled_factor_match_score(model, truth).score >= 0.99


def test_keyboard_interrupt_in_a_later_start_keeps_the_first(monkeypatch):
    blocks, _ = planted(False, n=60)
    random_factors = coupled_module._init.random_factors
    calls = {"n": 0}

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return random_factors(*args, **kwargs)

    monkeypatch.setattr(coupled_module._init, "random_factors", interrupting)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        model = CoupledCP(RANK, init="random", n_init=3, max_iter=20,
                          random_state=0).fit(blocks)
    assert model.interrupted_ and model.n_iter_ > 0 and np.isfinite(model.loss_)


@pytest.mark.parametrize("center", [False, True])
def test_streamed_randomized_svd_matches_the_exact_svd(center):
    """Left vectors, singular values and per-block right factors of the scaled unfolding."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(80, 4, generator=gen, dtype=torch.float64)
    arrays = {"m": a @ torch.randn(4, 12, generator=gen, dtype=torch.float64) + 3.0,
              "t": torch.einsum("nr,cr,sr->ncs", a, torch.randn(3, 4, generator=gen,
                                dtype=torch.float64), torch.randn(5, 4, generator=gen,
                                dtype=torch.float64))}
    blocks = Blocks.from_arrays(arrays)
    scales = [0.5, 2.0]
    parts = [x.reshape(80, -1) for x in arrays.values()]
    means = [x.mean(0) for x in parts] if center else None
    z = torch.cat([s * (x - x.mean(0) if center else x) for s, x in zip(scales, parts)], 1)
    u, s, vt = torch.linalg.svd(z, full_matrices=False)
    got = randomized_svd(blocks, scales, 4, means=means, oversample=6, n_iter=2, batch_size=7,
                         device="cpu", dtype=torch.float64, generator=gen)
    np.testing.assert_allclose(got.S, s[:4], rtol=1e-8)
    np.testing.assert_allclose((got.U.T @ u[:, :4]).abs().numpy(), np.eye(4), atol=1e-8)
    right = torch.cat(got.right)  # (sum D_b, 4) = Z^T U
    np.testing.assert_allclose(right, z.T @ got.U, atol=1e-8)
    assert [tuple(r.shape) for r in got.right] == [(12, 4), (15, 4)]


def test_convergence_warning_only_when_max_iter_stops_the_fit(recwarn):
    blocks, _ = planted(False, n=60)
    with pytest.warns(ConvergenceWarning) as record:
        capped = CoupledCP(RANK, max_iter=2, tol=1e-12, random_state=0).fit(blocks)
    assert not capped.converged_ and capped.n_iter_ == 2
    assert record[0].filename == __file__  # the warning points at the line that called fit
    message = str(record[0].message)
    change = abs(capped.loss_history_[-2] - capped.loss_) / capped.loss_history_[-2]
    for part in (f"rank {RANK}", "max_iter=2 sweeps", f"{change:.2e}", "raise max_iter",
                 "loosen tol", "float64"):
        assert part in message
    with pytest.warns(ConvergenceWarning, match=r"max_iter=1 sweeps \(a single loss, no change "
                                                r"measured, tol=1e-12\)"):
        CoupledCP(RANK, max_iter=1, tol=1e-12, random_state=0).fit(blocks)
    recwarn.clear()
    converged = CoupledCP(RANK, max_iter=500, random_state=0).fit(blocks)
    assert converged.converged_
    assert not [w for w in recwarn if issubclass(w.category, ConvergenceWarning)]


def test_khatri_rao_matches_tensorly_in_both_layouts():
    """``ops.khatri_rao_t`` is the transposed Khatri-Rao product of TensorLy's row order
    (``c * S + s``), contiguous; ``ops.khatri_rao`` its transpose and a matrix block's own
    factor."""
    rng = np.random.default_rng(0)
    u, v, b = rng.standard_normal((4, 3)), rng.standard_normal((5, 3)), rng.standard_normal((6, 3))
    want = tl.tenalg.khatri_rao([u, v])
    kr_t = coupled_module.ops.khatri_rao_t([torch.from_numpy(u), torch.from_numpy(v)])
    assert kr_t.shape == (3, 20) and kr_t.is_contiguous()
    np.testing.assert_allclose(kr_t.numpy().T, want, rtol=1e-14)
    np.testing.assert_allclose(
        coupled_module.ops.khatri_rao([torch.from_numpy(u), torch.from_numpy(v)]).numpy(), want,
        rtol=1e-14)
    b_t = coupled_module.ops.khatri_rao_t([torch.from_numpy(b)])
    assert b_t.is_contiguous() and np.array_equal(b_t.numpy(), b.T)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # fixed counts
def test_factors_on_the_device_fit_as_on_the_host(monkeypatch, device):
    """Large least-squares fits on a GPU update the block factors there (float64 tensors);
    forced here on any device, they give the host's (numpy) fit."""
    blocks = Blocks([Block(b.name, b.data.to(device)) for b in planted(False)[0]])
    host = CoupledCP(RANK, max_iter=30, tol=-1.0, random_state=0).fit(blocks)
    monkeypatch.setattr(CoupledCP, "_factors_on_device", lambda self, data: True)
    on_device = CoupledCP(RANK, max_iter=30, tol=-1.0, random_state=0).fit(blocks)
    assert on_device.loss_ == pytest.approx(host.loss_, rel=1e-6)
    np.testing.assert_allclose(on_device.A_, host.A_, rtol=1e-5, atol=1e-7)
    for name, fs in host.factors_.items():
        for f, g in zip(on_device.factors_[name], fs):
            assert isinstance(f, np.ndarray)
            np.testing.assert_allclose(f, g, rtol=1e-5, atol=1e-7)


def test_update_block_solves_each_factor_from_the_compressed_block():
    """A tensor block's update is U then V (Gauss-Seidel), each the least squares solution of
    its normal equations written from the definitions, with the exact decrease of the loss."""
    rng = np.random.default_rng(1)
    n, c, s, r = 30, 4, 6, 3
    a, u, v = (rng.standard_normal((d, r)) for d in (n, c, s))
    x = rng.standard_normal((n, c, s))
    y, ata = a.T @ x.reshape(n, -1), a.T @ a
    (u_new, v_new), drop = coupled_module.ops.update_block([u, v], y, ata, False)
    rhs_u = np.einsum("ncs,nr,sr->cr", x, a, v)
    np.testing.assert_allclose(u_new, np.linalg.solve(ata * (v.T @ v), rhs_u.T).T, rtol=1e-9)
    rhs_v = np.einsum("ncs,nr,cr->sr", x, a, u_new)
    np.testing.assert_allclose(v_new, np.linalg.solve(ata * (u_new.T @ u_new), rhs_v.T).T,
                               rtol=1e-9)

    def loss(uu, vv):
        return np.sum((x - np.einsum("nr,cr,sr->ncs", a, uu, vv)) ** 2)

    assert drop == pytest.approx(loss(u, v) - loss(u_new, v_new), rel=1e-9)
    # the same from float64 tensors (a GPU fit's factors), without leaving their device
    (u_t, v_t), drop_t = coupled_module.ops.update_block(
        [torch.from_numpy(u), torch.from_numpy(v)], torch.from_numpy(y), torch.from_numpy(ata),
        False)
    assert torch.is_tensor(drop_t) and drop_t.ndim == 0
    np.testing.assert_allclose(u_t.numpy(), u_new, rtol=1e-12)
    np.testing.assert_allclose(v_t.numpy(), v_new, rtol=1e-12)
    assert float(drop_t) == pytest.approx(drop, rel=1e-12)


@pytest.mark.parametrize("shape", [(3, 4, 9), (3, 9, 4)])
def test_leading_pairs_are_the_leading_singular_pairs(shape):
    """The initial tensor-block factors: ``U[:, r] V[:, r]^T`` is the best rank-1
    approximation of each slice (as an SVD gives it), ``V`` unit-norm, also for a zero slice."""
    from peekwidgets.engine.init import leading_pairs

    y = torch.from_numpy(np.random.default_rng(2).standard_normal(shape))
    y[1] = 0.0
    u, v = leading_pairs(y)
    assert u.shape == (shape[1], shape[0]) and v.shape == (shape[2], shape[0])
    for r in range(shape[0]):
        left, sv, right = np.linalg.svd(y[r].numpy())
        best = sv[0] * np.outer(left[:, 0], right[0])
        np.testing.assert_allclose(np.outer(u[:, r], v[:, r]), best, atol=1e-12)
        assert np.linalg.norm(v[:, r]) == pytest.approx(1.0)
