"""Inputs capture cannot take as they are get an error that names the problem and the fix."""

import numpy as np
import pytest
import torch
from test_capture_safety import assert_refused, mlp, rows
from torch import nn
from torch.testing import assert_close
from torch.utils.data import DataLoader, TensorDataset

from peekwidgets.capture import capture
from peekwidgets.capture.source import DEFAULT_BATCH_SIZE, Source


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


def test_source_batches_a_tensor_with_labels_from_tuples():
    x, y = rows(10), torch.arange(10)
    source = Source(TensorDataset(x, y), batch_size=4)
    batches = list(source)
    assert (source.n_rows, source.n_batches) == (10, 3)
    assert [len(b) for b, _ in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([b for b, _ in batches]), x)
    assert np.array_equal(np.concatenate([labels for _, labels in batches]), y.numpy())
    assert Source(x).n_batches == 1 and DEFAULT_BATCH_SIZE == 256


@pytest.mark.parametrize("make", [
    lambda x: list(x),  # a list of per-sample tensors
    lambda x: DataLoader(TensorDataset(x, torch.arange(len(x))), batch_size=None),
    lambda x: list(x.numpy()),  # numpy rows
], ids=["tensors", "loader-batch-size-none", "numpy-rows"])
def test_single_samples_instead_of_batches_say_to_stack_them(make):
    assert_refused(mlp(), make(rows()), ValueError,
                   r"first batch has shape \(8,\), the shape of one sample for the model's first "
                   r"layer '0' \(Linear\), which takes batches \(n, 8\).*capture expects "
                   r"batches.*stack the samples")


def test_single_images_instead_of_batches_say_to_stack_them():
    model, images = cnn(), torch.randn(5, 3, 8, 8)
    assert_refused(model, list(images), ValueError,
                   r"shape \(3, 8, 8\).*'0' \(Conv2d\).*batches \(n, 3, 8, 8\).*stack the samples")
    # stacked as the message says, they are captured
    assert capture(model, torch.stack(list(images)), progress=False).n_samples == 5


def test_uint8_images_say_how_to_convert_them():
    model = cnn()
    pixels = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    assert_refused(model, pixels, TypeError,
                   r"inputs are uint8 but the model's first layer '0' \(Conv2d\) computes in "
                   r"float32.*input_fn=lambda batch: batch\.float\(\) / 255")
    # the conversion the message names works, and the input block holds what the model saw
    blocks = capture(model, pixels, input_fn=lambda batch: batch.float() / 255, progress=False)
    assert torch.equal(blocks["input"].data.reshape(pixels.shape), pixels.float() / 255)
    # integer inputs that the model takes (token ids) are left out unless asked for
    torch.manual_seed(0)
    tokens = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
    ids = torch.randint(0, 10, (7, 3))
    assert capture(tokens, ids, progress=False).names == ["2"]  # ids name things, not sizes
    blocks = capture(tokens, ids, include_input=True, progress=False)
    assert blocks["input"].meta["dtype"] == "int64"
    assert torch.equal(blocks["input"].data, ids.float())
    with pytest.raises(ValueError, match=r"layers is empty and the inputs are torch.int64.*"
                       r"include_input=True"):
        capture(tokens, ids, [], progress=False)


def test_channels_last_images_say_to_move_the_channels_first():
    model = cnn()
    pixels = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    assert_refused(model, pixels, TypeError,
                   r"inputs are uint8.*input_fn=lambda batch: batch\.permute\(0, 3, 1, 2\)"
                   r"\.float\(\) / 255.*channels come last in the inputs \(6, 8, 8, 3\)")
    assert_refused(model, pixels.astype(np.float32), ValueError,
                   r"shape \(6, 8, 8, 3\), channels last, but the model's first layer '0' "
                   r"\(Conv2d\) takes 3 channels first.*input_fn=lambda batch: "
                   r"batch\.permute\(0, 3, 1, 2\)")
    # the conversion the message names works
    blocks = capture(model, pixels, input_fn=lambda batch: batch.permute(0, 3, 1, 2).float() / 255,
                     progress=False)
    assert torch.equal(blocks["input"].data.reshape(6, 3, 8, 8),
                       torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255)


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True, "64"])
def test_batch_size_must_be_a_positive_integer(batch_size):
    model, x = mlp(), rows(200)
    assert_refused(model, x, ValueError,
                   rf"batch_size must be a positive integer, got {batch_size!r}.*"
                   rf"batch_size=64, or leave it out for 256", batch_size=batch_size)
    assert capture(model, x, batch_size=np.int64(64), progress=False).n_samples == 200


class TwoInputs(nn.Module):
    """``forward(a, b)``: two inputs of 4 and 6 features."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fa, self.fb, self.fc = nn.Linear(4, 8), nn.Linear(6, 8), nn.Linear(8, 2)

    def forward(self, a, b):
        return self.fc(torch.relu(self.fa(a) + self.fb(b)))


def test_input_fn_passes_several_inputs_as_arguments():
    model = TwoInputs().eval()
    a, b = rows(10)[:, :4], rows(10, seed=1)[:, :6]
    with torch.no_grad():
        expected = {"fa": model.fa(a), "fb": model.fb(b), "fc": model(a, b)}
    pairs = [(a[:4], b[:4]), (a[4:], b[4:])]
    for inputs, input_fn in [(pairs, lambda batch: (batch[0], batch[1])),  # positional
                             ([{"a": a, "b": b}], lambda batch: batch),  # keyword
                             ([{"b": b, "a": a.numpy()}], lambda d: {"a": d["a"], "b": d["b"]})]:
        blocks = capture(model, inputs, ["fa", "fb", "fc"], input_fn=input_fn, progress=False)
        for name, values in expected.items():
            assert_close(blocks[name].data, values)
        assert torch.equal(blocks["input"].data, a)  # the first tensor holds the samples

    # a model that takes a dict as its one argument gets it through a 1-tuple
    class DictIn(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, d):
            return self.fc(d["x"]) * d["mask"]

    mask = torch.ones(10, 1)
    blocks = capture(DictIn(), [{"x": a, "mask": mask}], input_fn=lambda d: (d,), progress=False)
    assert blocks.names == ["input", "fc"] and torch.equal(blocks["input"].data, a)


def test_a_model_of_several_inputs_given_one_says_how_to_pass_them():
    model, a, b = TwoInputs().eval(), rows(6)[:, :4], rows(6, seed=1)[:, :6]
    with pytest.warns(UserWarning, match=r"second item, a tensor of shape \(6, 6\), is not "
                      r"passed to the model.*nor kept as labels.*input_fn=lambda batch: "
                      r"\(batch\[0\], batch\[1\]\)"):
        assert_refused(model, [(a, b)], TypeError,
                       r"takes more inputs than the one tensor.*missing 1 required positional "
                       r"argument: 'b'.*input_fn=lambda batch: \(batch\[0\], batch\[1\]\)")


@pytest.mark.parametrize("as_numpy", [False, True])
def test_a_model_that_writes_into_its_inputs_leaves_them_as_they_were(as_numpy):
    class Doubles(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            x.mul_(2)  # an in-place normalization, say
            return self.fc(x)

    model, x = Doubles().eval(), rows(10)
    inputs = x.numpy().copy() if as_numpy else x.clone()
    with torch.no_grad():
        expected = model.fc(2 * x)
    blocks = capture(model, inputs, ["fc"], batch_size=4, progress=False)
    assert torch.equal(torch.as_tensor(inputs), x)  # the probe and every batch ran on copies
    assert torch.equal(blocks["input"].data, x)
    assert_close(blocks["fc"].data, expected)  # every sample once, the probe's two included

    class DoublesLargeBatches(Doubles):  # the probe's two samples see no write
        def forward(self, x):
            if len(x) > 2:
                x.mul_(2)
            return self.fc(x)

    inputs = x.clone()
    capture(DoublesLargeBatches().eval(), inputs, ["fc"], batch_size=5, progress=False)
    assert torch.equal(inputs, x)
