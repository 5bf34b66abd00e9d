"""Borrowing awkward models: compiled, meta-device, branching on batch size, odd outputs."""

from dataclasses import dataclass

import pytest
import torch
from test_capture_safety import Head, assert_refused, assert_unchanged, mlp, rows, snapshot
from torch import nn
from torch.testing import assert_close

from peekwidgets.capture import capture, resolve_layers


def assert_same_blocks(blocks, expected):
    assert blocks.names == expected.names
    for block in expected:
        assert_close(blocks[block.name].data, block.data)


def test_compiled_models_are_captured_through_the_original_module():
    model, x = mlp(), rows()
    compiled = torch.compile(model)  # compiled lazily: nothing is compiled until it is called
    kept, before = x.clone(), snapshot(compiled)
    eager = capture(model, x, progress=False)

    assert resolve_layers(compiled) == ["1", "2"]  # no "_orig_mod." prefix
    assert_same_blocks(capture(compiled, x, progress=False), eager)
    # the names that print(compiled) shows work as well
    assert_same_blocks(capture(compiled, x, ["_orig_mod.1", "2"], progress=False), eager)
    assert_unchanged(compiled, before)
    assert torch.equal(x, kept)

    model.compile()  # compiled in place: it runs eagerly while capture borrows it
    impl, before = model._compiled_call_impl, snapshot(model)
    assert_same_blocks(capture(model, x, progress=False), eager)
    assert model._compiled_call_impl is impl
    assert_unchanged(model, before)


@pytest.mark.slow
def test_a_compiled_model_that_ran_compiled_is_captured_eagerly():  # compiles: up to ~1 min
    model, x = mlp(), rows()
    compiled = torch.compile(model)
    with torch.no_grad():
        out = compiled(x)
    blocks = capture(compiled, x, progress=False)
    assert_close(blocks["2"].data, out, rtol=1e-5, atol=1e-5)
    assert_same_blocks(blocks, capture(model, x, progress=False))


def test_meta_device_models_say_to_load_weights_first():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(8, 4), nn.ReLU())
    x = rows()
    kept, params = x.clone(), list(model.parameters())
    flags = [(m.training, [p.requires_grad for p in m.parameters()]) for m in model.modules()]
    with pytest.raises(ValueError, match=r"2 parameters or buffers on the meta device "
                       r"\(for example '0\.weight'\).*model\.to_empty\(device='cpu'\) then "
                       r"model\.load_state_dict\(state_dict\)"):
        capture(model, x, progress=False)
    # meta tensors cannot be compared: the same parameters, still on meta, same flags, no hooks
    assert list(model.parameters()) == params and all(p.is_meta for p in params)
    assert [(m.training, [p.requires_grad for p in m.parameters()])
            for m in model.modules()] == flags
    assert not any(m._forward_hooks for m in model.modules())
    assert torch.equal(x, kept)

    state = {k: torch.randn(v.shape) for k, v in model.state_dict().items()}
    model.to_empty(device="cpu").load_state_dict(state)  # the fix the message names
    assert capture(model, x, progress=False).names == ["input", "0", "1"]


class BranchesOnBatchSize(nn.Module):
    """Runs ``wide`` only on batches of more than 4 samples."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc, self.wide = nn.Linear(8, 4), nn.ReLU()

    def forward(self, x):
        h = self.fc(x)
        return self.wide(h) if len(x) > 4 else h


class BranchesAround(BranchesOnBatchSize):
    """Skips ``fc`` on batches of more than 4 samples."""

    def forward(self, x):
        return self.wide(x[:, :4]) if len(x) > 4 else self.fc(x)


def test_a_model_that_branches_on_batch_size_is_probed_on_the_first_batch():
    model, x = BranchesOnBatchSize(), rows()
    before = snapshot(model)
    blocks = capture(model, x, ["wide"], batch_size=10, progress=False)
    with torch.no_grad():
        assert_close(blocks["wide"].data, model(x))
    assert_unchanged(model, before)
    # "auto" chose from the probe's two samples: the message says so, not "capture only ..."
    with pytest.raises(RuntimeError, match=r"layer 'fc' did not run .*layers='auto' chose it "
                       r"from a forward pass on the first 2 samples"):
        capture(BranchesAround(), x, batch_size=10, progress=False)
    # when the layer does not run on the first batch either, the message says on how many
    assert_refused(model, x, ValueError,
                   r"'wide' \(ReLU\) did not run in the forward pass \(tried on 3 samples of "
                   r"the first batch\)", ["wide"], batch_size=3)


def test_a_failing_model_is_told_the_shape_of_the_batch_it_failed_on():
    with pytest.raises(RuntimeError, match=r"the model failed on the first batch, of shape "
                       r"\(50, 64\) \(run on its first 2 samples to find the layers\): "
                       r".*conv2d.*pass batches of the shape"):
        capture(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()), torch.rand(50, 64),
                progress=False)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")  # torch's own
def test_nested_tensor_outputs_are_left_out_and_dataclass_outputs_have_fields():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True)

    class Encoder(nn.Module):  # eval mode and a padding mask: nested tensors inside
        def __init__(self):
            super().__init__()
            self.encoder = nn.TransformerEncoder(layer, 2)
            self.head = nn.Linear(16, 3)

        def forward(self, x, mask):
            return self.head(self.encoder(x, src_key_padding_mask=mask)[:, 0])

    x, mask = torch.randn(6, 5, 16), torch.zeros(6, 5, dtype=torch.bool)
    mask[:, 3:] = True
    model = Encoder().eval()
    with pytest.warns(UserWarning, match=r"'encoder.layers.0' \(TransformerEncoderLayer\) "
                      r"returned a nested tensor .*enable_nested_tensor=False"):
        blocks = capture(model, [(x, mask)], input_fn=lambda batch: batch, progress=False)
    with torch.no_grad():
        assert_close(blocks["head"].data, model(x, mask))

    @dataclass
    class Record:
        hidden: torch.Tensor
        note: str = "a record"

    class Recording(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return Record(self.fc(x))

    net = nn.Sequential(Recording(), Head(lambda r: r.hidden.relu()))
    x = torch.randn(6, 4)
    for keys in (None, {"0": "hidden"}):
        blocks = capture(net, x, ["0"], output_keys=keys, progress=False)
        with torch.no_grad():
            assert_close(blocks["0"].data, net[0].fc(x))
        assert blocks["0"].meta["output_key"] == "hidden"
