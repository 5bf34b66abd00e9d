import gzip

import numpy as np
import pytest
import torch

from peekwidgets.demo.datasets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_digits,
    load_mnist,
    load_photo_crops,
)
from peekwidgets.demo.models import DigitsCNN, LeNet5, accuracy, train_classifier


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_load_digits_is_images_in_unit_range():
    images, labels = load_digits().tensors
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0
    assert set(labels.tolist()) == set(range(10))


def test_load_mnist_reads_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28))
    labels = np.array([3, 1, 4, 1, 5])
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    x, y = load_mnist(tmp_path).tensors
    assert x.shape == (5, 1, 28, 28)
    np.testing.assert_allclose(x[:, 0].numpy(), images / 255.0, rtol=1e-6)
    assert y.tolist() == labels.tolist()


def test_load_mnist_missing_files_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_mnist(tmp_path)


def test_photo_crops_are_pixels_of_the_photographs():
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    x, y = load_photo_crops(6, size=427, normalize=False).tensors  # side 427: no resizing
    assert x.shape == (6, 3, 427, 427) and x.dtype == torch.float32
    for crop, label in zip(x, y.tolist()):
        photo = torch.tensor(photos[label]).permute(2, 0, 1).float() / 255
        lefts = [i for i in range(640 - 427 + 1) if torch.equal(photo[:, 0, i:i + 427],
                                                                  crop[:, 0])]
        assert lefts and torch.equal(photo[:, :, lefts[0]:lefts[0] + 427], crop)


def test_photo_crops_are_seeded_normalized_and_checked():
    x, y = load_photo_crops(40, size=32).tensors
    raw, y_raw = load_photo_crops(40, size=32, normalize=False).tensors
    assert x.shape == (40, 3, 32, 32) and set(y.tolist()) == {0, 1}
    assert torch.equal(y, y_raw) and float(raw.min()) >= 0 and float(raw.max()) <= 1
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    torch.testing.assert_close(x, (raw - mean) / std)
    assert torch.equal(load_photo_crops(40, size=32).tensors[0], x)
    assert not torch.equal(load_photo_crops(40, size=32, seed=1).tensors[0], x)
    assert len({c.numpy().tobytes() for c in raw}) == 40  # no two crops alike
    for bad in ({"n": 0}, {"size": 428}, {"size": 22.5}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))}="):
            load_photo_crops(**bad)


def test_training_is_deterministic_and_keeps_checkpoints():
    dataset = torch.utils.data.TensorDataset(*(t[:256] for t in load_digits().tensors))
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = DigitsCNN()
        checkpoints = train_classifier(
            model, dataset, epochs=8, lr=5e-3, seed=1, checkpoint_steps=[0, 3]
        )
        runs.append((model, checkpoints))
    (m1, c1), (m2, c2) = runs
    assert [c.step for c in c1] == [0, 3]
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    assert not torch.equal(c1[0].state_dict["conv1.weight"], c1[1].state_dict["conv1.weight"])
    assert not m1.training
    assert accuracy(m1, dataset) > 0.3


def test_lenet5_shapes():
    assert LeNet5()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
