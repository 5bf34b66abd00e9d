"""Inputs capture cannot take as they are get an error that names the problem and the fix."""

import numpy as np
import pytest
import torch
from test_capture_safety import assert_refused, mlp, rows
from torch import nn
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
    # integer inputs that the model takes (token ids) are captured as they are
    torch.manual_seed(0)
    tokens = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
    ids = torch.randint(0, 10, (7, 3))
    assert capture(tokens, ids, progress=False)["input"].meta["dtype"] == "int64"


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True, "64"])
def test_batch_size_must_be_a_positive_integer(batch_size):
    model, x = mlp(), rows(200)
    assert_refused(model, x, ValueError,
                   rf"batch_size must be a positive integer, got {batch_size!r}.*"
                   rf"batch_size=64, or leave it out for 256", batch_size=batch_size)
    assert capture(model, x, batch_size=np.int64(64), progress=False).n_samples == 200
