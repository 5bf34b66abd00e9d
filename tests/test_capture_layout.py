"""Block names and layouts: a module named 'input', dict outputs, sequence-first models."""

import warnings

import pytest
import torch
from test_capture_safety import assert_refused, assert_unchanged, rows, snapshot
from torch import nn
from torch.testing import assert_close

from peekwidgets.capture import capture


class NamedInput(nn.Module):
    """A model with a submodule called ``input``; counts its forward passes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.input, self.act = nn.Linear(8, 4), nn.ReLU()
        self.passes = 0

    def forward(self, x):
        self.passes += 1
        return self.act(self.input(x))


def test_a_module_named_input_is_refused_before_any_forward_pass_with_the_way_out():
    model, x = NamedInput(), rows()
    kept, before = x.clone(), snapshot(model)
    with pytest.raises(ValueError, match=r"module named 'input', whose block would clash with "
                       r"the input block.*include_input=False.*leave it out: layers=\['act'\]"):
        capture(model, x, ["input", "act"], progress=False)
    assert model.passes == 0  # checked before anything ran
    with pytest.raises(ValueError, match=r"clash with the input block.*include_input=False"):
        capture(model, x, progress=False)  # "auto" picks it: refused after the probe only
    assert model.passes == 1
    assert_unchanged(model, before)
    assert torch.equal(x, kept)

    blocks = capture(model, x, include_input=False, progress=False)
    assert blocks.names == ["input", "act"]
    with torch.no_grad():
        assert_close(blocks["input"].data, model.input(x))


class Heads(nn.Module):
    def forward(self, x):
        return {"aux": torch.zeros_like(x), "out": 2 * x}


class Pair(nn.Module):
    def forward(self, x):
        return x + 1, 3 * x


class DictModel(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.heads, self.pair, self.fc = Heads(), Pair(), nn.Linear(8, 2)

    def forward(self, x):
        out = self.heads(x)["out"]
        return self.fc(self.pair(out)[1])


def test_dict_outputs_need_a_key_and_record_it():
    model, x = DictModel(), rows()
    assert_refused(model, x, ValueError,
                   r"layer 'heads' returns a dict with tensors under the keys \['aux', 'out'\]; "
                   r"say which one to capture: output_keys=\{'heads': 'aux'\}", ["heads"])
    assert_refused(model, x, ValueError,
                   r"output_keys\['heads'\] = 'outs', but layer 'heads' returns a dict with the "
                   r"keys \['aux', 'out'\]", ["heads"], output_keys={"heads": "outs"})
    assert_refused(model, x, ValueError, r"output_keys names \['fc'\], which are not captured",
                   ["heads"], output_keys={"heads": "out", "fc": 0})

    blocks = capture(model, x, ["heads", "pair"], output_keys={"heads": "out", "pair": 1},
                     progress=False)
    assert_close(blocks["heads"].data, 2 * x)
    assert_close(blocks["pair"].data, 6 * x)
    assert blocks["heads"].meta["output_key"] == "out" and blocks["pair"].meta["output_key"] == 1
    assert "output['out']" in blocks.summary() and "output[1]" in blocks.summary()
    # a tuple defaults to its first tensor, and says so
    first = capture(model, x, ["pair"], progress=False)["pair"]
    assert_close(first.data, 2 * x + 1)
    assert first.meta["output_key"] == 0
    # repeating the capture (like=) takes the same items
    again = capture(model, rows(6, seed=1), like=blocks, progress=False)
    assert again["pair"].meta["output_key"] == 1
    assert_close(again["pair"].data, 6 * rows(6, seed=1))


def test_sequence_first_models_warn_and_name_batch_first():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=False)
    model = nn.Sequential(layer).eval()
    seq = torch.randn(12, 5, 8)  # (T, N, D): 5 sequences of 12 steps
    kept, before = seq.clone(), snapshot(model)
    with pytest.warns(UserWarning, match=r"module '0\.self_attn' \(MultiheadAttention\) has "
                      r"batch_first=False.*\(T, N, \.\.\.\).*here 12 of them.*build the model "
                      r"with batch_first=True.*\(N, T, \.\.\.\)"):
        capture(model, seq, ["0"], progress=False)
    assert_unchanged(model, before)
    assert torch.equal(seq, kept)

    # also when no layer can be laid out (an LSTM's last step feeds the head): the warning
    # comes before the error
    class LastStep(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.fc = nn.LSTM(8, 6), nn.Linear(6, 3)

        def forward(self, x):
            return self.fc(self.rnn(x)[0][-1])

    with pytest.warns(UserWarning, match=r"module 'rnn' \(LSTM\) has batch_first=False"), \
            pytest.raises(ValueError, match="one output per sample"):
        capture(LastStep().eval(), seq, ["rnn", "fc"], progress=False)

    # the fix: the same weights in a batch_first model, fed (N, T, D)
    fixed = nn.Sequential(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True))
    fixed.load_state_dict(model.state_dict())
    fixed.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        blocks = capture(fixed, seq.transpose(0, 1), ["0"], progress=False)
    assert blocks["0"].shape == (5, 12, 8)
    with torch.no_grad():
        assert_close(blocks["0"].data, model(seq).transpose(0, 1), rtol=1e-5, atol=1e-5)


def test_a_model_that_turns_its_inputs_around_itself_is_not_warned():
    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.lstm, self.fc = nn.LSTM(8, 6), nn.Linear(6, 2)

        def forward(self, x):  # x : (N, T, D)
            return self.fc(self.lstm(x.transpose(0, 1))[0].transpose(0, 1))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        blocks = capture(Tagger(), torch.randn(5, 12, 8), ["fc"], progress=False)
    assert blocks["fc"].shape == (5, 12, 2)
