"""capture(..., like=blocks) repeats an earlier capture's layout for new inputs (fold-in)."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from peekwidgets.blocks import Block, Blocks
from peekwidgets.capture import capture
from peekwidgets.demo.models import DigitsCNN
from peekwidgets.engine import CoupledCP

PLACE = ("storage", "memmap_path")  # where a block lives, not its layout


def digits_like(n, seed=0):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def digits_cnn(n_classes=10):
    torch.manual_seed(0)
    return DigitsCNN(n_classes).eval()


def layout(blocks):
    return [(b.name, b.mode_shape, b.spatial_shape,
             {k: v for k, v in b.meta.items() if k not in PLACE}) for b in blocks]


@pytest.fixture(autouse=True)
def tmpdir_for_memmaps(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))


@pytest.fixture(scope="module")
def pooled():
    """96 samples captured under a 1 kB budget: relu1 and relu2 pooled to 2 x 2."""
    kwargs = dict(layers=["relu1", "relu2", "fc2"], memory_budget="1kB", max_positions=6,
                  batch_size=32, progress=False)
    x, new = digits_like(96), digits_like(5, seed=1)
    union = capture(digits_cnn(), torch.cat([x, new]), **kwargs)
    return capture(digits_cnn(), x, **kwargs), new, union


def test_like_pools_a_small_batch_as_the_earlier_capture(pooled):
    blocks, new, union = pooled
    assert blocks["relu1"].meta["pooled_from"] == (8, 8) and blocks["relu1"].spatial_shape == (2, 2)
    plain = capture(digits_cnn(), new, ["relu1"], progress=False)
    assert plain["relu1"].spatial_shape == (8, 8)  # fits the budget: not pooled without like=

    again = capture(digits_cnn(), new, like=blocks, progress=False)
    assert again.n_samples == 5 and again.sample_shape == blocks.sample_shape
    assert layout(again) == layout(blocks)
    assert again["relu1"].meta["storage"] == "host"  # the budget still places it
    for block in again:
        assert_close(block.data, union[block.name].data[96:])
        assert block.sq_norm == pytest.approx(float(block.data.double().square().sum()), rel=1e-5)


def test_coupled_cp_folds_in_blocks_captured_like_the_fit(pooled):
    blocks, new, union = pooled
    model = CoupledCP(3, max_iter=20, random_state=0).fit(blocks)
    again = capture(digits_cnn(), new, like=blocks, progress=False)
    A_new = model.transform(again)
    assert A_new.shape == (5, 3)
    assert_close(A_new, model.transform(union)[96:], rtol=1e-4, atol=1e-6)
    plain = capture(digits_cnn(), new, ["relu1", "relu2", "fc2"], progress=False)
    with pytest.raises(ValueError, match="mode shape"):
        model.transform(plain)


def test_like_repeats_flatten_and_leaves_out_the_input():
    kwargs = dict(layers=["conv2", "fc2"], flatten=True, include_input=False,
                  memory_budget="1kB", max_positions=4, progress=False)
    x, new = digits_like(40), digits_like(3, seed=2)
    blocks = capture(digits_cnn(), x, **kwargs)
    assert blocks.names == ["conv2", "fc2"]
    conv2 = blocks["conv2"]
    assert conv2.meta["pooled_from"] == (4, 4) and conv2.meta["flattened_from"] == (16, 2, 2)
    assert conv2.kind == "matrix" and conv2.spatial_shape is None

    again = capture(digits_cnn(), new, like=blocks, progress=False)
    assert layout(again) == layout(blocks)
    union = capture(digits_cnn(), torch.cat([x, new]), **kwargs)
    for block in again:
        assert_close(block.data, union[block.name].data[40:])
    # explicit arguments that agree with like= are accepted
    same = capture(digits_cnn(), new, ["fc2", "conv2"], like=blocks, flatten=True,
                   include_input=False, progress=False)
    assert layout(same) == layout(blocks)


def test_like_without_raw_shape_still_works(pooled):
    """Blocks from before meta['raw_shape'] was recorded are repeated from their layout."""
    blocks, new, union = pooled
    old = Blocks([Block(b.name, b.data, b.spatial_shape,
                        {k: v for k, v in b.meta.items() if k != "raw_shape"}) for b in blocks],
                 sample_shape=blocks.sample_shape)
    again = capture(digits_cnn(), new, like=old, progress=False)
    for block in again:
        assert_close(block.data, union[block.name].data[96:])


def test_like_conflicting_arguments_raise(pooled):
    blocks, new, _ = pooled
    model = digits_cnn()
    with pytest.raises(ValueError, match=r"selects \['relu1'\], but like= has the layer blocks "
                                         r"\['relu1', 'relu2', 'fc2'\]"):
        capture(model, new, ["relu1"], like=blocks, progress=False)
    with pytest.raises(ValueError, match="flatten=True, but like= was captured with flatten=False"):
        capture(model, new, like=blocks, flatten=True, progress=False)
    with pytest.raises(ValueError, match="include_input=False, but like= has input block"):
        capture(model, new, like=blocks, include_input=False, progress=False)
    with pytest.raises(TypeError, match="like must be the Blocks of an earlier capture"):
        capture(model, new, like={"relu1": blocks["relu1"].data}, progress=False)
    renamed = Blocks([Block("conv9", blocks["fc2"].data)])
    with pytest.raises(ValueError, match=r"like= has blocks \['conv9'\] that are not modules"):
        capture(model, new, like=renamed, progress=False)


def test_like_rejects_a_changed_model_or_input_shape(pooled):
    blocks, new, _ = pooled
    with pytest.raises(ValueError, match=r"block 'fc2' no longer matches.*now be \(5,\).*"
                                         r"earlier block is \(10,\).*without like="):
        capture(digits_cnn(n_classes=5), new, like=blocks, progress=False)
    with pytest.raises(ValueError, match=r"per-sample shape \(1, 6, 6\), the earlier capture "
                                         r"\(like=\) had \(1, 8, 8\); resize or crop"):
        capture(digits_cnn(), torch.rand(2, 1, 6, 6), like=blocks, progress=False)
    with pytest.raises(ValueError, match=r"the first batch is one sample.*x\.unsqueeze\(0\)"):
        capture(digits_cnn(), torch.rand(1, 8, 8), like=blocks, progress=False)  # unbatched

    def net(padding):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=padding), nn.ReLU()).eval()

    x = digits_like(20)
    small = capture(net(1), x, ["1"], include_input=False, memory_budget="1kB",
                    max_positions=4, progress=False)
    assert small["1"].meta["pooled_from"] == (8, 8)
    # a 6 x 6 map would pool to the same 2 x 2 grid: caught by pooled_from
    with pytest.raises(ValueError, match=r"block '1'.*pooled from 6x6.*pooled from 8x8"):
        capture(net(0), x[:2], like=small, progress=False)
