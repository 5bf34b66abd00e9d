"""Layer choice: wrapped models, name suggestions, and what "auto" picks."""

import pytest
import torch
from test_capture_safety import assert_unchanged, mlp, rows, snapshot
from torch import nn
from torch.testing import assert_close

from peekwidgets.capture import capture, resolve_layers


class Wrapper(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


def test_wrapped_models_take_the_inner_names_or_suggest_the_prefixed_ones():
    model, x = mlp(), rows()
    parallel = nn.DataParallel(model)
    kept, before = x.clone(), snapshot(parallel)
    eager = capture(model, x, ["1"], progress=False)
    for names in (["1"], ["module.1"]):  # DataParallel: with or without its prefix
        blocks = capture(parallel, x, names, progress=False)
        assert blocks.names == ["input", "1"]
        assert_close(blocks["1"].data, eager["1"].data)
    assert resolve_layers(parallel, "module.*") == ["0", "1", "2"]
    assert_unchanged(parallel, before)
    assert torch.equal(x, kept)

    wrapped = Wrapper(model)  # any other wrapper: the message names the prefixed module
    with pytest.raises(ValueError, match=r"Wrapper has no module named '1'; did you mean "
                       r"'net\.1'\?"):
        capture(wrapped, x, ["1"], progress=False)
    with pytest.raises(ValueError, match=r"no pattern '\[12\]'; did you mean 'net\.1'\? names "
                       r"that end in it: \['net\.1', 'net\.2'\]"):
        resolve_layers(wrapped, "[12]")
    assert_unchanged(parallel, before)
