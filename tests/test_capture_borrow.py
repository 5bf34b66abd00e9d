"""Borrowing awkward models: compiled ones, meta-device ones, ones that branch on batch size."""

import pytest
import torch
from test_capture_safety import assert_refused, assert_unchanged, mlp, rows, snapshot
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


def test_a_model_that_branches_on_batch_size_is_probed_on_the_first_batch():
    model, x = BranchesOnBatchSize(), rows()
    before = snapshot(model)
    blocks = capture(model, x, ["wide"], batch_size=10, progress=False)
    with torch.no_grad():
        assert_close(blocks["wide"].data, model(x))
    assert_unchanged(model, before)
    # when the layer does not run on the first batch either, the message says on how many
    assert_refused(model, x, ValueError,
                   r"'wide' \(ReLU\) did not run in the forward pass \(tried on 3 samples of "
                   r"the first batch\)", ["wide"], batch_size=3)
