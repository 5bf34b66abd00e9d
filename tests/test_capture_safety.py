"""Capture leaves the model untouched, keeps to its memory budget, and fails clearly."""

import gc
import os
import sys
import weakref

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.testing import assert_close
from torch.utils.data import DataLoader, TensorDataset

from peekwidgets.capture import capture
from peekwidgets.capture.storage import parse_bytes
from peekwidgets.demo.models import DigitsCNN


def digits_like(n=96, seed=0):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def digits_cnn():
    torch.manual_seed(0)
    return DigitsCNN().eval()


def snapshot(model):
    return {
        "state": {k: v.clone() for k, v in model.state_dict(keep_vars=True).items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "hooks": {n: (dict(m._forward_hooks), dict(m._forward_pre_hooks))
                  for n, m in model.named_modules()},
    }


def assert_unchanged(model, before):
    after = snapshot(model)
    assert after["state"].keys() == before["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key  # bit for bit
    for part in ("training", "grad", "hooks"):
        assert after[part] == before[part], part


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).eval()


def rows(n=20, seed=0):
    return torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))


def _copy(inputs):
    """A deep copy of the tensors and arrays in ``inputs`` (lists, DataLoaders, Datasets)."""
    if isinstance(inputs, (torch.Tensor, np.ndarray)):
        return inputs.copy() if isinstance(inputs, np.ndarray) else inputs.clone()
    if isinstance(inputs, DataLoader):
        return _copy(inputs.dataset)
    if isinstance(inputs, TensorDataset):
        return _copy(list(inputs.tensors))
    return [_copy(item) for item in inputs]


def _same(a, b) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(np.array_equal(a, b)) if isinstance(a, np.ndarray) else torch.equal(a, b)


def assert_refused(model, inputs, error, match, *args, **kwargs):
    """``capture(model, inputs, *args, **kwargs)`` raises ``error`` matching ``match``, and
    leaves the model (see :func:`assert_unchanged`) and the inputs as they were."""
    before, kept = snapshot(model), _copy(inputs)
    with pytest.raises(error, match=match):
        capture(model, inputs, *args, progress=False, **kwargs)
    assert_unchanged(model, before)
    assert _same(_copy(inputs), kept)


@pytest.fixture
def resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    model.train()  # a mix of flags that capture must give back
    model.layer2.eval()
    model.layer3[0].bn1.train()
    model.conv1.weight.requires_grad_(False)
    return model


@pytest.fixture
def tmpdir_for_memmaps(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    return tmp_path


def test_model_unchanged_after_success(resnet):
    before = snapshot(resnet)
    blocks = capture(resnet, torch.randn(8, 3, 32, 32), batch_size=4, progress=False)
    assert blocks.n_samples == 8
    assert_unchanged(resnet, before)


class Boom(Exception):
    pass


def hook_raising(error, on_call):
    calls = []

    def hook(module, args, output):
        calls.append(1)
        if len(calls) == on_call:
            raise error

    return hook


@pytest.mark.parametrize("error", [Boom("from a forward hook"), KeyboardInterrupt()])
def test_model_unchanged_after_an_error_in_a_forward_hook(resnet, error, tmpdir_for_memmaps):
    user_hook = resnet.layer3.register_forward_hook(hook_raising(error, on_call=3))
    before = snapshot(resnet)
    with pytest.raises(type(error)):  # mid-way: the third batch, memory-mapped blocks open
        capture(resnet, torch.randn(16, 3, 32, 32), batch_size=4, memory_budget=0,
                progress=False)
    assert_unchanged(resnet, before)  # the user's own hook is still there, ours are gone
    user_hook.remove()
    gc.collect()
    assert list(tmpdir_for_memmaps.rglob("*")) == []  # no memory-mapped file left behind


def test_model_unchanged_after_keyboard_interrupt_from_the_inputs(resnet):
    def batches():
        yield torch.randn(4, 3, 32, 32)
        yield torch.randn(4, 3, 32, 32)
        raise KeyboardInterrupt

    before = snapshot(resnet)
    with pytest.raises(KeyboardInterrupt):
        capture(resnet, batches(), progress=False)
    assert_unchanged(resnet, before)


def test_buffers_that_a_forward_pass_changes_are_restored():
    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.register_buffer("seen", torch.zeros(()))

        def forward(self, x):
            self.seen += len(x)
            return self.fc(x)

    model = Counting()
    before = snapshot(model)
    capture(model, torch.randn(10, 4), progress=False)
    assert_unchanged(model, before)


def test_a_parameter_that_the_forward_pass_writes_into_is_named():
    class Averaging(nn.Module):  # state that should be a buffer
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.mean = nn.Parameter(torch.zeros(4), requires_grad=False)

        def forward(self, x):
            self.mean.mul_(0.9).add_(0.1 * x.mean(0))
            return self.fc(x)

    with pytest.warns(RuntimeWarning, match=r"wrote into its parameters \['mean'\].*"
                      r"register_buffer"):
        capture(Averaging(), torch.randn(10, 4), progress=False)


def capture_digits(**kwargs):
    return capture(digits_cnn(), digits_like(), ["relu1", "relu2", "fc2"], batch_size=32,
                   progress=False, **kwargs)


def test_host_and_memmap_storage_give_the_same_values(tmpdir_for_memmaps):
    host = capture_digits()
    mapped = capture_digits(memory_budget=0, max_positions=None)
    mixed = capture_digits(memory_budget={"host": host["input"].size * 4 + 100})
    for block in host:
        assert block.meta["storage"] == "host"
        assert mapped[block.name].meta["storage"] == "memmap"
        assert mixed[block.name].meta["storage"] == ("host" if block.name == "input" else "memmap")
        assert_close(mapped[block.name].data, block.data, rtol=0, atol=0)
        assert mapped[block.name].sq_norm == pytest.approx(block.sq_norm)
        assert "pooled_from" not in mapped[block.name].meta
    paths = [b.meta["memmap_path"] for b in mapped]
    assert all(os.path.dirname(p).startswith(str(tmpdir_for_memmaps)) for p in paths)
    assert all(os.path.exists(p) for p in paths)
    del mapped, mixed
    gc.collect()
    assert not any(os.path.exists(p) for p in paths)
    assert list(tmpdir_for_memmaps.iterdir()) == []  # the folder goes with its last file


def resident_kb(path) -> int:
    """Resident kB of this process' mappings of the file ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if not line[0].isupper():  # a mapping's header: its address range
                inside = line.rstrip().endswith(path)
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_rows_written_to_disk_do_not_stay_in_memory(tmpdir_for_memmaps):
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(64, 4096)).eval(), torch.randn(64, 64)
    blocks = capture(model, x, ["0"], memory_budget=0, batch_size=16, progress=False)
    block = blocks["0"]  # 1 MiB on disk
    assert block.meta["storage"] == "memmap" and resident_kb(block.meta["memmap_path"]) == 0
    with torch.no_grad():
        assert_close(block.data, model(x), rtol=0, atol=0)  # reading maps the rows again
    assert resident_kb(block.meta["memmap_path"]) >= 1024


def test_capture_holds_no_batch_it_has_written():
    refs = []

    def batches():
        for i in range(4):
            if i >= 2:  # the batch before the last one is let go, the first one too
                assert refs[i - 2]() is None, f"batch {i - 2} is still referenced"
            x = torch.rand(8, 1, 8, 8)
            refs.append(weakref.ref(x))
            yield x

    assert capture(digits_cnn(), batches(), progress=False).n_samples == 32


def test_maps_too_large_for_the_budget_are_pooled(tmpdir_for_memmaps):
    x = digits_like()
    blocks = capture(digits_cnn(), x, ["relu1", "relu2", "fc2"], batch_size=32, progress=False,
                     memory_budget="1kB", max_positions=6)
    model = digits_cnn()
    with torch.no_grad():
        relu1 = model.relu1(model.conv1(x))
        relu2 = model.relu2(model.conv2(model.pool1(relu1)))
    for name, full, grid in (("relu1", relu1, (2, 2)), ("relu2", relu2, (2, 2))):
        block = blocks[name]
        assert block.meta["pooled_from"] == full.shape[2:] and block.spatial_shape == grid
        pooled = F.adaptive_avg_pool2d(full, grid)
        assert_close(block.data, pooled.reshape(block.shape))
        assert block.sq_norm == pytest.approx(float(pooled.square().sum()), rel=1e-5)
    # the input is pooled by the bound alone, and drawn from thumbnails: itself (8 x 8 is small)
    assert blocks["input"].shape == (96, 4) and blocks["input"].meta["pooled_from"] == (8, 8)
    assert_close(blocks["input"].data, F.adaptive_avg_pool2d(x, (2, 2)).reshape(96, 4))
    assert_close(blocks.thumbnails.data.float(), x.reshape(96, 64), rtol=1e-3, atol=1e-3)
    roomy = capture(digits_cnn(), x, ["relu1"], progress=False, max_positions=6)
    assert roomy["relu1"].spatial_shape == (8, 8)  # fits in memory: not pooled


def test_sizes_unknown_in_advance_grow_the_blocks():
    x = digits_like(100)
    expected = capture_digits()
    blocks = capture(digits_cnn(), (x[i:i + 3] for i in range(0, 100, 3)),
                     ["relu1", "relu2", "fc2"], progress=False)  # 34 batches > 16 first guess
    assert blocks.n_samples == 100
    for block in blocks:
        assert_close(block.data[:96], expected[block.name].data[:96])


# ----------------------------------------------------------------------------- bad input

def test_empty_inputs():
    model = digits_cnn()
    empty = TensorDataset(torch.zeros(0, 1, 8, 8))
    for inputs in (DataLoader(empty, batch_size=4), [], torch.zeros(0, 1, 8, 8)):
        with pytest.raises(ValueError, match="no batches"):
            capture(model, inputs, progress=False)


def test_batches_without_a_tensor():
    model = digits_cnn()
    with pytest.raises(TypeError, match=r"holds no tensor \(its items are \['str', 'int'\]\)"):
        capture(model, [("a", 1)], progress=False)
    with pytest.raises(TypeError, match=r"keys are \['pix'\].*input_fn"):
        capture(model, [{"pix": digits_like(4)}], progress=False)
    with pytest.raises(TypeError, match="input_fn returned list, which holds no tensor.*a "
                       "tensor, a tuple of the model's positional arguments, or a dict"):
        capture(model, [digits_like(4)], input_fn=lambda b: ["pixels"], progress=False)


def test_unknown_layer_names_list_the_closest():
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    with pytest.raises(ValueError, match=r"no module named 'layer5'; closest names: \['layer"):
        capture(model, torch.randn(2, 3, 32, 32), ["layer5"], progress=False)
    with pytest.raises(ValueError, match=r"no pattern 'blocks\.\*'"):
        capture(model, torch.randn(2, 3, 32, 32), "blocks.*", progress=False)
    with pytest.raises(ValueError, match="no module of type LSTM"):
        capture(model, torch.randn(2, 3, 32, 32), nn.LSTM, progress=False)


class Head(nn.Module):
    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x):
        return self.out(x)


def test_scalar_outputs_are_refused_naming_the_layer():
    model = nn.Sequential(nn.Linear(4, 3), Head(lambda h: h.sum()))
    with pytest.raises(ValueError, match=r"layer '1' \(Head\) returned shape \(\) for a batch"):
        capture(model, torch.randn(6, 4), ["1"], progress=False)
    model = nn.Sequential(nn.Linear(4, 3), Head(lambda h: float(h.sum())))
    with pytest.raises(TypeError, match=r"layer '1' \(Head\) returned float, not a tensor"):
        capture(model, torch.randn(6, 4), ["1"], progress=False)


def test_nan_and_inf_activations_name_the_layer():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    x = torch.rand(40, 4)
    with pytest.raises(ValueError, match=r"layer '2' has NaN or Inf values \(first at sample 0"):
        capture(model, x, batch_size=8, progress=False)
    x[21, 3] = float("inf")
    with pytest.raises(ValueError, match=r"the input has NaN or Inf values \(first at sample 21\)"
                       r"; clean the inputs, or .*include_input=False"):
        capture(model, x, ["1"], batch_size=8, progress=False)


def test_outputs_with_other_row_counts_name_the_layer_and_the_batch():
    squeezes = nn.Sequential(nn.Linear(4, 3), Head(lambda h: h.squeeze()))
    with pytest.raises(ValueError, match=r"block '1': the batch starting at sample 8 has "
                       r"per-sample shape \(\), .*one sample, and the model squeezes"):
        capture(squeezes, torch.randn(9, 4), ["1"], batch_size=4, progress=False)
    repeats = nn.Sequential(nn.Linear(4, 3), Head(lambda h: h.repeat(1 + (len(h) > 2), 1)))
    with pytest.raises(ValueError, match=r"block '1': the batch starting at sample 0 has 4 "
                       r"samples, but the output has 8 rows"):
        capture(repeats, torch.randn(8, 4), ["1"], batch_size=4, progress=False)


def test_norms_of_large_batches_and_of_huge_values_are_right():
    # 256 maps of 64 x 32 x 32 (16.8M values a batch): one float32 reduction ran 2e-3 low
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU())
    x = torch.rand(256, 3, 32, 32, generator=torch.Generator().manual_seed(0)) + 1
    block = capture(model, x, ["0"], max_positions=None, progress=False)["0"]
    assert block.sq_norm == pytest.approx(float(block.data.double().square().sum()), rel=1e-6)
    # float32 values whose squares overflow float32: the norm comes from float64
    huge = capture(nn.Sequential(nn.Linear(4, 3), Head(lambda h: h * 1e25)), torch.randn(10, 4),
                   ["1"], progress=False)["1"]
    exact = float(huge.data.double().square().sum())
    assert np.isfinite(exact) and huge.norm() ** 2 == pytest.approx(exact, rel=1e-9)
    # finite float64 outputs that float32 storage cannot hold are not called NaN or Inf
    big = nn.Sequential(nn.Linear(4, 3), Head(lambda h: h * 1e40)).double()
    with pytest.raises(ValueError, match=r"layer '1' has float64 values beyond float32's range"):
        capture(big, torch.randn(10, 4, dtype=torch.float64), ["1"], progress=False)


def test_inputs_on_another_device_are_moved_or_refused_clearly():
    model = digits_cnn()
    double = capture(model, digits_like(8).double(), ["fc2"], progress=False)  # cast to float32
    assert_close(double["fc2"].data, capture(model, digits_like(8), ["fc2"],
                                             progress=False)["fc2"].data)
    with pytest.raises(RuntimeError, match="could not move a batch from meta to cpu"):
        capture(model, torch.empty(8, 1, 8, 8, device="meta"), progress=False)


def test_samples_of_different_shapes_are_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    batches = [torch.randn(2, 1, 8, 8), torch.randn(2, 1, 10, 10)]
    with pytest.raises(ValueError, match=r"per-sample shape \(1, 10, 10\).*\(1, 8, 8\)"):
        capture(model, batches, progress=False)


def test_a_model_without_submodules_is_told_how_to_be_captured():
    with pytest.raises(ValueError, match=r"no submodules.*wrap it, nn\.Sequential\(model\)"):
        capture(nn.Linear(4, 2), torch.randn(8, 4), progress=False)
    assert capture(nn.Sequential(nn.Linear(4, 2)), torch.randn(8, 4),
                   progress=False).names == ["input", "0"]


def test_modules_that_do_not_run_are_refused():
    class Skipping(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(4, 2), nn.Linear(4, 2)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(ValueError, match=r"'unused' \(Linear\) did not run"):
        capture(Skipping(), torch.randn(3, 4), ["unused"], progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_model_with_host_data_and_every_storage_tier(tmpdir_for_memmaps):
    model = digits_cnn().cuda()
    x = digits_like(200)
    loader = DataLoader(TensorDataset(x), batch_size=64, pin_memory=True)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # cuDNN's default TF32
        on_device = capture(model, loader, progress=False)  # convolutions round to 1e-3
        host = capture(model, x, progress=False, memory_budget={"device": 0})
        mapped = capture(model, x, progress=False, memory_budget=0, max_positions=None)
    assert {b.meta["storage"] for b in on_device} == {"device"}
    assert all(b.data.is_cuda for b in on_device)
    assert all(b.data.is_pinned() for b in host)
    cpu = capture(digits_cnn(), x, progress=False)
    for block in cpu:
        for other in (on_device, host, mapped):
            assert_close(other[block.name].data.cpu(), block.data, rtol=1e-4, atol=1e-5)
    moved = capture(digits_cnn(), x, device="cuda", progress=False)
    assert moved["fc2"].data.is_cuda


@pytest.mark.parametrize("budget", ["lots", "-5MB", "1..5MB", ".", float("nan"), float("inf"),
                                    -1, True])
def test_bad_memory_budgets_name_the_form(budget):
    with pytest.raises(ValueError, match=r"memory_budget must be (a number of bytes|>= 0)"):
        parse_bytes(budget)


def test_memory_budgets_in_any_number_type_or_unit():
    assert parse_bytes(np.int64(10**6)) == parse_bytes("1MB") == parse_bytes(".001 GB") == 10**6
    assert parse_bytes("2 GiB") == 2 * 2**30 and parse_bytes(1.5e3) == 1500
