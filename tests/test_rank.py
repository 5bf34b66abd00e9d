"""Rank profile and checkpoint comparison: planted ranks, label-freeness, determinism, errors."""

import json
import math
import threading

import numpy as np
import pytest
import torch
from torch import nn

from peekwidgets.analysis import DEFAULT_THRESHOLD, compare_checkpoints, estimate_rank, rank_profile
from peekwidgets.blocks import Blocks


def planted(rank, n=300, noise=0.02, seed=0, nonnegative=False):
    """Coupled blocks sharing ``A : (n, rank)``: two matrix blocks and one tensor block."""
    rng = np.random.default_rng(seed)
    draw = rng.random if nonnegative else rng.standard_normal
    a = draw((n, rank))
    # component weights well apart, so each adds far more than the threshold
    scale = np.linspace(1.0, 0.6, rank)
    arrays = {
        "input": a * scale @ draw((rank, 40)),
        "hidden": a * scale @ draw((rank, 25)),
        "conv": np.einsum("nr,cr,sr->ncs", a * scale, draw((4, rank)), draw((9, rank))),
    }
    return Blocks.from_arrays({
        k: (v / np.linalg.norm(v) + noise * rng.standard_normal(v.shape) / np.sqrt(v.size))
        .astype(np.float32)
        for k, v in arrays.items()
    })


def exact_profile(blocks, center):
    parts = []
    for b in blocks:
        x = b.data.reshape(b.n_samples, -1).double().numpy()
        x = x - x.mean(0) if center else x
        parts.append(x / np.linalg.norm(x))
    s = np.linalg.svd(np.hstack(parts), compute_uv=False)
    return np.cumsum(s**2) / len(parts)


@pytest.mark.parametrize("rank", [2, 4, 6])
@pytest.mark.parametrize("center", [False, True])
def test_planted_rank_is_recovered(rank, center):
    blocks = planted(rank, seed=rank)
    p = rank_profile(blocks, 10, center=center, progress=False)
    assert p.estimated_rank == rank
    assert not p.saturated
    # the randomized SVD reproduces the exact truncated SVD of the scaled blocks
    exact = exact_profile(blocks, center)[:10]
    np.testing.assert_allclose(p.fit, exact, atol=1e-4)
    # the score, by hand from the exact gains: where log-gain falls to the threshold between
    # component `rank` (above it) and component `rank + 1` (below it)
    g = np.diff(exact, prepend=0.0)
    by_hand = rank + math.log(g[rank - 1] / DEFAULT_THRESHOLD) / math.log(g[rank - 1] / g[rank])
    assert p.score == pytest.approx(by_hand, abs=1e-3)
    assert p.block_fit.shape == (3, 10)
    assert np.all(p.block_fit[:, rank - 1] > 0.99)
    np.testing.assert_allclose(p.gain.sum(), p.fit[-1])


def test_labels_change_no_score():
    blocks = planted(3)
    labelled = Blocks(list(blocks), labels=np.arange(blocks.n_samples) % 3)
    a = rank_profile(blocks, 6, progress=False)
    b = rank_profile(labelled, 6, progress=False)
    np.testing.assert_array_equal(a.fit, b.fit)
    assert a.score == b.score


def test_deterministic_with_seed():
    blocks = planted(3)
    a = rank_profile(blocks, 8, random_state=5, progress=False)
    b = rank_profile(blocks, 8, random_state=5, progress=False)
    np.testing.assert_array_equal(a.fit, b.fit)
    np.testing.assert_array_equal(a.block_fit, b.block_fit)
    assert "estimated rank 3" in a.summary()
    # numpy states as CoupledCP takes them: one draw each, the same draw the same profile
    c, d = (rank_profile(blocks, 8, random_state=np.random.RandomState(1), progress=False)
            for _ in range(2))
    np.testing.assert_array_equal(c.fit, d.fit)
    assert rank_profile(blocks, 8, random_state=np.random.default_rng(1),
                        progress=False).estimated_rank == 3
    with pytest.raises(ValueError, match=r"random_state='5': expected None, an int, or a numpy"):
        rank_profile(blocks, 8, random_state="5", progress=False)


def test_block_weights_and_normalize():
    blocks = planted(2)
    heavy = rank_profile(blocks, 4, block_weights={"input": 3.0}, progress=False)
    np.testing.assert_allclose(heavy.block_weights, [3.0, 1.0, 1.0])
    raw = rank_profile(blocks, 4, normalize=False, progress=False)
    assert raw.estimated_rank == 2
    with pytest.raises(KeyError, match="nope"):
        rank_profile(blocks, 4, block_weights={"nope": 1.0}, progress=False)


def test_estimate_rank_rule():
    # components 1, 2 gain >= 3%; the log-gain falls from 0.2 to 0.02 between R = 2 and 3
    rank, score = estimate_rank(np.array([0.5, 0.2, 0.02, 0.01]), 0.03)
    assert rank == 2 and score == pytest.approx(2 + math.log(0.2 / 0.03) / math.log(10))
    # the first gain already below: interpolated from gain 1 at R = 0
    rank, score = estimate_rank(np.array([0.01, 0.005]), 0.03)
    assert rank == 0 and score == pytest.approx(math.log(1 / 0.03) / math.log(100))
    # a gain exactly at the threshold counts; a later rise does not bring components back
    assert estimate_rank(np.array([0.5, 0.03, 0.01, 0.2]), 0.03) == (2, 2.0)
    assert estimate_rank(np.array([0.5, 0.2]), 0.03) == (2, 2.0)  # saturated


def test_identifiable_diagnostics_on_planted_cp():
    blocks = planted(2, n=60, nonnegative=True, noise=0.01)
    # nonnegative uncentered data put most energy in the first (mean-like) component
    p = rank_profile(blocks, 3, model="nonnegative", threshold=0.01, n_restarts=2,
                     max_iter=200, tol=1e-6, progress=False)
    assert p.estimated_rank == 2
    # the true rank is reproducible across restarts and halves; one too many is not
    assert p.stability[1] > 0.95 and p.split_half[1] > 0.95
    assert p.stability[2] < 0.9 and p.split_half[2] < 0.9
    assert p.core_consistency["conv"][1] > 90 > p.core_consistency["conv"][2]
    assert p.model_fit[1] > 0.99
    assert p.degenerate.shape == (3,) and p.converged.shape == (3,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("model", ["ls", "nonnegative"])
def test_profile_on_cuda_matches_the_cpu(model):
    blocks = planted(2, n=60, nonnegative=True, noise=0.01)
    kwargs = dict(model=model, threshold=0.01, n_restarts=2, max_iter=200, tol=1e-6,
                  progress=False)
    cpu = rank_profile(blocks, 3, **kwargs)
    gpu = rank_profile(blocks, 3, device="cuda", **kwargs)
    assert gpu.estimated_rank == cpu.estimated_rank == 2
    np.testing.assert_allclose(gpu.fit, cpu.fit, atol=1e-4)
    np.testing.assert_allclose(gpu.block_fit, cpu.block_fit, atol=1e-4)
    if model == "nonnegative":
        np.testing.assert_allclose(gpu.model_fit, cpu.model_fit, atol=1e-3)
        assert gpu.stability[1] > 0.95 and gpu.split_half[1] > 0.95


def test_bad_inputs_give_clear_errors():
    blocks = planted(2, n=30)
    with pytest.raises(ValueError, match="max_rank must be an integer >= 1, got 0"):
        rank_profile(blocks, 0)
    with pytest.raises(ValueError, match="larger than the number of samples"):
        rank_profile(blocks, 31)
    with pytest.raises(ValueError, match="model must be one of"):
        rank_profile(blocks, 3, model="pca")
    with pytest.raises(ValueError, match="center=False"):
        rank_profile(blocks, 3, model="nonnegative", center=True)
    matrices = blocks.select(["input", "hidden"])
    with pytest.raises(ValueError, match="needs at least one tensor block"):
        rank_profile(matrices, 3, model="cp")
    signal = np.random.default_rng(0).standard_normal((200, 50)).astype(np.float32)
    for value in (1.0, 0.1, 3.7):  # centering leaves rounding of some constants, not of all
        with pytest.raises(ValueError, match="'c' is constant over the samples"):
            rank_profile({"x": signal, "c": np.full((200, 10), value, np.float32)}, 2,
                         center=True, progress=False)
    with pytest.raises(ValueError, match="empty list"):
        rank_profile([], 2)
    with pytest.raises(KeyError, match="unknown blocks"):
        rank_profile(blocks, 2, block_weights={"nope": 2.0}, progress=False)


def test_a_list_of_blocks_gives_the_profile_of_blocks():
    blocks = planted(3, n=60)
    listed = rank_profile(list(blocks), 5, progress=False)
    np.testing.assert_array_equal(listed.fit, rank_profile(blocks, 5, progress=False).fit)


# --------------------------------------------------------------------------- checkpoints
class Tiny(nn.Module):
    def __init__(self, width=6):
        super().__init__()
        self.fc1 = nn.Linear(5, width)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(width, 3)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


def checkpoints(n=3, width=6):
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(Tiny(width).state_dict())
    return out


def test_compare_checkpoints_table_labels_and_model_untouched():
    x = torch.randn(60, 5, generator=torch.Generator().manual_seed(0))
    labels = np.arange(60) % 3
    model = Tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plain = compare_checkpoints(model, checkpoints(), x, max_rank=5, progress=False)
    labelled = compare_checkpoints(model, checkpoints(), x, labels=labels, max_rank=5,
                                   progress=False)
    np.testing.assert_array_equal(plain.scores, labelled.scores)  # labels change no score
    assert plain.accuracy is None and "accuracy" not in plain.table()
    assert labelled.accuracy.shape == (3,) and "accuracy" in labelled.table()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert [r["checkpoint"] for r in plain.records()] == [f"checkpoint {i}" for i in range(3)]
    assert plain.fits.shape == (3, 5)
    # a factory and a named dict give the same profiles
    named = compare_checkpoints(Tiny, dict(zip("abc", checkpoints())), x, max_rank=5,
                                progress=False)
    assert named.names == ["a", "b", "c"]
    np.testing.assert_allclose(named.scores, plain.scores)


def test_compare_checkpoints_reads_training_dicts_and_files(tmp_path):
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(0))
    states = checkpoints(3)
    torch.save({"model_state_dict": states[2], "epoch": 9}, tmp_path / "epoch9.pt")
    forms = [{"state_dict": states[0], "epoch": 3}, states[1], tmp_path / "epoch9.pt"]
    comp = compare_checkpoints(Tiny(), forms, x, max_rank=4, progress=False)
    plain = compare_checkpoints(Tiny(), states, x, max_rank=4, progress=False)
    np.testing.assert_array_equal(comp.scores, plain.scores)
    assert comp.names == ["checkpoint 0", "checkpoint 1", "epoch9"]
    with pytest.raises(TypeError, match=r"'checkpoint 0' must be .*state_dict.*keys \['epoch'\]"):
        compare_checkpoints(Tiny(), [{"epoch": 3}], x, max_rank=4, progress=False)
    with pytest.raises(ValueError, match=r"checkpoint 'gone': no such file"):
        compare_checkpoints(Tiny(), [str(tmp_path / "gone.pt")], x, max_rank=4, progress=False)
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(ValueError, match=r"'notes' is not a state_dict torch can read \(it is "
                       r"not a file that torch.save wrote, or it is damaged\)"):
        compare_checkpoints(Tiny(), [tmp_path / "notes.pt"], x, max_rank=4, progress=False)
    torch.save(Tiny(), tmp_path / "pickled.pt")  # a whole model: not loaded (it runs code)
    with pytest.raises(ValueError, match=r"'pickled' is not a state_dict torch can read"):
        compare_checkpoints(Tiny(), [tmp_path / "pickled.pt"], x, max_rank=4, progress=False)


def test_checkpoint_names_differ(tmp_path):
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(0))
    for run, state in zip(("runA", "runB"), checkpoints(2)):
        (tmp_path / run).mkdir()
        torch.save(state, tmp_path / run / "best.pt")
    paths = [tmp_path / "runA" / "best.pt", tmp_path / "runB" / "best.pt"]
    comp = compare_checkpoints(Tiny(), paths, x, max_rank=3, progress=False)
    assert comp.names == ["runA/best", "runB/best"]
    again = compare_checkpoints(Tiny(), [paths[0], paths[0]], x, max_rank=3, progress=False)
    assert again.names == ["best (0)", "best (1)"]
    with pytest.raises(ValueError, match=r"names gives \['x'\] to more than one checkpoint"):
        compare_checkpoints(Tiny(), checkpoints(3), x, names=["x", "y", "x"], progress=False)


def test_a_diverged_checkpoint_or_a_failing_one_is_named(monkeypatch):
    import peekwidgets.analysis.checkpoints as checkpoints_module

    x = torch.randn(30, 5)
    states = checkpoints(3)
    states[1]["fc2.weight"][0, 0] = float("nan")
    captured = []
    monkeypatch.setattr(checkpoints_module, "capture", lambda *a, **k: captured.append(1))
    with pytest.raises(ValueError, match=r"checkpoint 'checkpoint 1' has NaN or Inf weights "
                       r"\(fc2.weight\): its training diverged; leave it out"):
        compare_checkpoints(Tiny(), states, x, max_rank=3, progress=False)
    assert not captured  # found before any work
    monkeypatch.undo()
    flat = checkpoints(2)
    flat[1] = {k: torch.zeros_like(v) for k, v in flat[1].items()}  # constant blocks
    with pytest.raises(ValueError, match=r"^checkpoint 'b': "):
        compare_checkpoints(Tiny(), dict(zip("ab", flat)), x, max_rank=3, progress=False)


def test_a_model_whose_hooks_cannot_be_copied_is_compared_with_a_warning():
    class Logger:
        def __init__(self):
            self.lock, self.calls = threading.Lock(), 0

        def hook(self, module, args, output):
            self.calls += 1

    model, logger = Tiny(), Logger()
    model.relu.register_forward_hook(logger.hook)
    x = torch.randn(30, 5)
    with pytest.warns(RuntimeWarning, match=r"hooks cannot be copied \(TypeError: cannot "
                      r"pickle '_thread.lock' object\), so its working copy shares them"):
        comp = compare_checkpoints(model, checkpoints(2), x, max_rank=3, progress=False)
    plain = compare_checkpoints(Tiny, checkpoints(2), x, max_rank=3, progress=False)
    np.testing.assert_array_equal(comp.scores, plain.scores)
    assert len(model.relu._forward_hooks) == 1 and logger.calls > 0


def test_compare_checkpoints_rejects_mixed_architectures():
    x = torch.randn(20, 5)
    mixed = checkpoints(2) + checkpoints(1, width=7)
    with pytest.raises(ValueError, match="'checkpoint 2' does not fit the architecture"):
        compare_checkpoints(Tiny(), mixed, x, max_rank=3, progress=False)
    with pytest.raises(ValueError, match="one architecture"):
        compare_checkpoints(Tiny(), [Tiny(), nn.Linear(5, 3)], x, max_rank=3, progress=False)
    with pytest.raises(TypeError, match="single state dict"):
        compare_checkpoints(Tiny(), Tiny().state_dict(), x, progress=False)
    with pytest.raises(ValueError, match="max_rank must be an integer >= 1"):
        compare_checkpoints(Tiny(), checkpoints(1), x, max_rank=0, progress=False)


def test_compare_checkpoints_keeps_finished_rows_on_interrupt(monkeypatch):
    import peekwidgets.analysis.checkpoints as checkpoints_module

    x = torch.randn(30, 5)
    calls = []
    real = checkpoints_module.rank_profile

    def interrupted_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoints_module, "rank_profile", interrupted_on_second)
    with pytest.warns(RuntimeWarning, match="interrupted after 1 of 3"):
        comp = compare_checkpoints(Tiny(), checkpoints(), x, max_rank=3, progress=False)
    assert comp.interrupted and comp.names == ["checkpoint 0"] and len(comp.profiles) == 1


def test_rank_zero_warns():
    rng = np.random.default_rng(0)
    noise = {f"b{i}": rng.standard_normal((200, 100)).astype(np.float32) for i in range(2)}
    with pytest.warns(RuntimeWarning, match="estimated rank is 0"):
        p = rank_profile(noise, 3, center=True, progress=False)
    assert p.estimated_rank == 0 and 0 <= p.score <= 1


def test_restart_fits_record_convergence_without_warning(recwarn):
    from sklearn.exceptions import ConvergenceWarning

    blocks = planted(2, n=40, nonnegative=True)
    p = rank_profile(blocks, 2, model="nonnegative", max_iter=2, n_restarts=2, split_half=True,
                     progress=False)
    assert np.all(p.converged == 0.0)
    assert not [w for w in recwarn if issubclass(w.category, ConvergenceWarning)]


def test_compare_checkpoints_reuses_the_model_profile(monkeypatch):
    import peekwidgets.analysis.checkpoints as checkpoints_module
    from peekwidgets.capture import capture

    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(1))
    model = Tiny()
    model.load_state_dict(checkpoints()[-1])  # the model is the last checkpoint
    own = rank_profile(capture(model, x, progress=False), 4, progress=False)
    fresh = compare_checkpoints(model, checkpoints(), x, max_rank=4, progress=False)
    calls = []
    monkeypatch.setattr(checkpoints_module, "rank_profile",
                        lambda *args, **kwargs: calls.append(1) or rank_profile(*args, **kwargs))
    reused = compare_checkpoints(model, checkpoints(), x, max_rank=4, progress=False,
                                 model_profile=own)
    assert len(calls) == 2 and reused.profiles[-1] is own  # the last one was not profiled
    np.testing.assert_array_equal(reused.fits, fresh.fits)
    # it is still captured, for its baselines
    np.testing.assert_array_equal(reused.rankme, fresh.rankme)
    np.testing.assert_array_equal(reused.logits_energy_rank, fresh.logits_energy_rank)
    assert reused.layers == fresh.layers
    with pytest.raises(ValueError, match="max_rank 4, the comparison max_rank 3"):
        compare_checkpoints(model, checkpoints(), x, max_rank=3, model_profile=own)
    with pytest.raises(ValueError, match="not a factory"):
        compare_checkpoints(Tiny, checkpoints(), x, max_rank=4, model_profile=own)


def test_compare_checkpoints_accuracy_reads_dict_and_tuple_batches():
    """Accuracy reads the batches capture reads: tensors, tuples and dicts give the same."""
    from torch.utils.data import TensorDataset

    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(50, 5, generator=gen), torch.randint(0, 3, (50,), generator=gen)
    states = checkpoints(2)
    by_hand = []
    for state in states:
        net = Tiny()
        net.load_state_dict(state)
        by_hand.append(float((net(x).argmax(-1) == y).float().mean()))
    dicts = [{"image": x[i:i + 16], "label": y[i:i + 16]} for i in range(0, 50, 16)]
    tuples = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 50, 16)]
    for inputs in (x, TensorDataset(x, y), dicts, tuples):
        comp = compare_checkpoints(Tiny(), states, inputs, labels=y.numpy(), max_rank=3,
                                   progress=False)
        np.testing.assert_allclose(comp.accuracy, by_hand, err_msg=type(inputs).__name__)
    # input_fn and batch_size of capture_kwargs reach the accuracy pass too
    wrapped = [{"pixels": x[i:i + 7]} for i in range(0, 50, 7)]
    comp = compare_checkpoints(Tiny(), states, wrapped, labels=y.numpy(), max_rank=3,
                               capture_kwargs={"input_fn": lambda b: b["pixels"]},
                               progress=False)
    np.testing.assert_allclose(comp.accuracy, by_hand)
    assert dicts[0]["image"] is not None and len(dicts) == 4  # the user's batches kept
    with pytest.raises(TypeError, match="iterator .* read only once"):
        compare_checkpoints(Tiny(), states, iter(tuples), labels=y.numpy(), progress=False)


def test_bad_settings_fail_up_front_with_the_reason(monkeypatch):
    import peekwidgets.analysis.profile as profile_module

    def no_work(*args, **kwargs):
        raise AssertionError("the profile started computing before checking its settings")

    monkeypatch.setattr(profile_module, "randomized_svd", no_work)
    blocks = planted(2, n=30)
    with pytest.raises(ValueError, match=r"split-half fits allow.*each half of the 30 samples, "
                       r"15 samples each.*max_rank <= 15, split_half=False"):
        rank_profile(blocks, 16, model="cp")
    with pytest.raises(ValueError, match="split-half"):
        rank_profile(blocks, 16, model="nonnegative")
    for bad in (2.5, True, "5", None):
        with pytest.raises(TypeError, match=f"max_rank must be an integer >= 1, got {bad!r}"):
            rank_profile(blocks, bad)
    for bad in ("0.03", True, None):
        with pytest.raises(TypeError, match=f"threshold must be a number in \\(0, 1\\), got "
                           f"{bad!r}"):
            rank_profile(blocks, 3, threshold=bad)
    for bad in (0, 1.5, float("nan"), -0.1):
        with pytest.raises(ValueError, match=f"threshold must be in \\(0, 1\\), got {bad!r}"):
            rank_profile(blocks, 3, threshold=bad)
    with pytest.raises(TypeError, match="threshold must be a number"):
        estimate_rank(np.array([0.5, 0.1]), "3%")
    with pytest.raises(ValueError, match="n_restarts must be an integer >= 1, got True"):
        rank_profile(blocks, 3, model="cp", n_restarts=True)
    with pytest.raises(TypeError, match="max_rank must be an integer"):
        compare_checkpoints(Tiny(), checkpoints(1), torch.randn(8, 5), max_rank=2.0)


def test_split_half_off_allows_ranks_up_to_the_samples():
    blocks = planted(2, n=12, nonnegative=True)
    p = rank_profile(blocks, 7, model="nonnegative", split_half=False, n_restarts=1,
                     max_iter=20, progress=False)
    assert np.all(np.isnan(p.split_half)) and not np.any(np.isnan(p.model_fit))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_blocks_are_named_before_any_work(bad, monkeypatch):
    import peekwidgets.analysis.profile as profile_module

    def no_work(*args, **kwargs):
        raise AssertionError("the profile started computing on non-finite blocks")

    monkeypatch.setattr(profile_module, "randomized_svd", no_work)
    blocks = planted(2, n=40)
    data = {b.name: b.numpy().copy() for b in blocks}
    data["hidden"][7, 3] = bad
    before = data["hidden"].copy()
    kind = "NaN" if np.isnan(bad) else "Inf"
    for model in ("ls", "nonnegative"):
        with pytest.raises(ValueError, match=rf"block 'hidden' contains NaN or Inf values in 1 "
                           rf"of 40 samples, first in sample 7 \({kind}\); drop those samples"):
            rank_profile(data, 3, model=model, progress=False)
    np.testing.assert_array_equal(data["hidden"], before)  # the user's array is untouched


def test_labels_are_keyword_only_and_checked_up_front(monkeypatch):
    import peekwidgets.analysis.checkpoints as checkpoints_module

    x, labels = torch.randn(20, 5), np.arange(20) % 3
    with pytest.raises(TypeError, match="3 positional arguments"):
        compare_checkpoints(Tiny(), checkpoints(1), x, labels)  # labels in layers' place
    monkeypatch.setattr(checkpoints_module, "capture", lambda *a, **k: pytest.fail("captured"))
    with pytest.raises(ValueError, match=r"labels has shape \(19,\) for 20 inputs; pass one "
                       r"label per input, shape \(20,\)"):
        compare_checkpoints(Tiny(), checkpoints(1), x, labels=labels[:19], progress=False)
    with pytest.raises(ValueError, match=r"labels are strings \(\['0', '1', '2'\], \.\.\.\), and "
                       r"accuracy compares them with the model's argmax"):
        compare_checkpoints(Tiny(), checkpoints(1), x, labels=labels.astype(str),
                            progress=False)


def planted_logits_checkpoints():
    """Two Tiny checkpoints: logits of rank 1 (fc2 a rank-one map, no bias) and of full rank."""
    low, full = Tiny(), Tiny()
    with torch.no_grad():
        low.fc2.weight.copy_(torch.outer(torch.tensor([1.0, -2.0, 0.5]), torch.ones(6)))
        low.fc2.bias.zero_()
        full.fc1.weight.copy_(torch.eye(6, 5) * 3)
        full.fc1.bias.zero_()
        full.fc2.weight.copy_(torch.eye(3, 6))  # logits = relu(x[:, :3] * 3)
        full.fc2.bias.zero_()
    return {"low": low.state_dict(), "full": full.state_dict()}


def test_baselines_sit_next_to_the_indicator():
    from scipy.stats import spearmanr

    from peekwidgets.analysis import CRITERIA, energy_rank, rankme
    from peekwidgets.capture import capture

    x = torch.randn(80, 5, generator=torch.Generator().manual_seed(3))
    labels = np.arange(80) % 3
    states = {**planted_logits_checkpoints(), **dict(zip("ab", checkpoints(2)))}
    comp = compare_checkpoints(Tiny(), states, x, labels=labels, max_rank=4, progress=False)
    assert (comp.logits_block, comp.penultimate_block) == ("fc2", "relu")
    assert comp.logits_energy_rank[0] == 1  # rank-one logits: one component holds all
    # the full-rank checkpoint: by hand from the logits relu(3 x[:, :3])
    s = np.linalg.svd(torch.relu(3 * x[:, :3]).numpy().astype(float), compute_uv=False)
    by_hand = int(np.searchsorted(np.cumsum(s**2) / np.sum(s**2), 0.95) + 1)
    assert comp.logits_energy_rank[1] == by_hand
    for i, state in enumerate(states.values()):
        net = Tiny()
        net.load_state_dict(state)
        blocks = capture(net, x, progress=False)
        assert comp.rankme[i] == pytest.approx(rankme(blocks["relu"]))
        assert comp.logits_energy_rank[i] == energy_rank(blocks["fc2"])
    np.testing.assert_allclose(comp.first_shares, [p.fit[0] for p in comp.profiles])
    rows = comp.records()
    assert json.loads(json.dumps(rows)) == rows  # plain values
    assert set(CRITERIA) <= set(rows[0]) and rows[0]["logits_energy_rank"] == 1
    assert isinstance(rows[0]["logits_energy_rank"], int)
    rho = comp.spearman()
    assert list(rho) == list(CRITERIA)
    assert rho["rankme"] == pytest.approx(spearmanr(comp.rankme, comp.accuracy)[0])
    table = comp.table()
    assert "logits95" in table and "RankMe" in table and "share1" in table
    assert f"RankMe {rho['rankme']:+.3f}" in table
    # the baselines may read other blocks, named; the input block is never read by default
    with pytest.warns(RuntimeWarning, match="no block for the penultimate_block baseline"):
        named = compare_checkpoints(Tiny(), states, x, logits_block="relu", max_rank=3,
                                    progress=False)
    assert (named.logits_block, named.penultimate_block) == ("relu", None)
    both = compare_checkpoints(Tiny(), states, x, logits_block="relu",
                               penultimate_block="input", max_rank=3, progress=False)
    assert (both.logits_block, both.penultimate_block) == ("relu", "input")
    assert named.spearman() is None  # no labels, no correlation
    with pytest.raises(KeyError, match=r"penultimate_block='fc9' is not a captured block; "
                       r"the blocks are \['input', 'relu', 'fc2'\]"):
        compare_checkpoints(Tiny(), states, x, penultimate_block="fc9", max_rank=3,
                            progress=False)


def test_a_baseline_without_its_block_is_nan_with_a_warning():
    x = torch.randn(30, 5)
    with pytest.warns(RuntimeWarning, match=r"no block for the penultimate_block baseline "
                      r"\(the captured blocks are \['fc2'\].*pass penultimate_block="):
        comp = compare_checkpoints(Tiny(), checkpoints(2), x, layers=["fc2"],
                                   capture_kwargs={"include_input": False}, max_rank=3,
                                   progress=False)
    assert comp.logits_block == "fc2" and comp.penultimate_block is None
    assert np.all(np.isnan(comp.rankme)) and comp.records()[0]["rankme"] is None
    # the input block, a matrix here, stands for neither the logits nor the layer before them
    with pytest.warns(RuntimeWarning, match=r"no block for the logits_block and "
                      r"penultimate_block baseline .*capture the model's last layers"):
        inputs_only = compare_checkpoints(Tiny(), checkpoints(2), x, layers=[],
                                          max_rank=2, progress=False)
    assert (inputs_only.logits_block, inputs_only.penultimate_block) == (None, None)
    assert np.all(np.isnan(inputs_only.logits_energy_rank))
