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


class ConvClassifier(nn.Module):
    """A ``features`` trunk and a ``classifier = Sequential(Flatten, Linear, ReLU, Linear)``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8 * 2 * 2, 16), nn.ReLU(),
                                        nn.Dropout(), nn.Linear(16, 3), nn.Softmax(dim=1))

    def forward(self, x):
        return self.classifier(self.features(x))


def test_auto_takes_the_hidden_activations_of_a_classifier_head():
    model, x = ConvClassifier().eval(), torch.randn(5, 3, 8, 8)
    names = ["features.1", "features.4", "classifier.2", "classifier.4"]
    assert resolve_layers(model) == names  # the Softmax after the logits is not hidden
    blocks = capture(model, x, progress=False)
    assert blocks.names == ["input", *names]
    with torch.no_grad():
        hidden = model.classifier[:3](model.features(x))
        assert_close(blocks["classifier.2"].data, hidden)
        assert_close(blocks["classifier.4"].data, model.classifier[3:5](hidden))
