"""Capture on real architectures: block layout, values equal a manual forward pass."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.testing import assert_close
from torch.utils.data import DataLoader, Subset, TensorDataset

from peekwidgets.capture import capture, resolve_layers
from peekwidgets.demo.datasets import load_digits
from peekwidgets.demo.models import DigitsCNN


def close(block, expected):
    """The block's data equals ``expected : (N, ...)`` laid out as the block."""
    assert_close(block.data, expected.reshape(block.shape).float(), rtol=1e-5, atol=1e-5)
    assert block.sq_norm == pytest.approx(float(expected.double().square().sum()), rel=1e-4)


def images(n, size=32, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def digits():
    return Subset(load_digits(), range(300))


def digits_cnn():
    torch.manual_seed(0)
    return DigitsCNN().eval()


def test_digits_cnn_auto_blocks_equal_manual_forward(digits):
    model = digits_cnn()
    loader = DataLoader(digits, batch_size=64)
    blocks = capture(model, loader, progress=False)
    x = torch.stack([digits[i][0] for i in range(len(digits))])
    labels = torch.tensor([int(digits[i][1]) for i in range(len(digits))])

    assert blocks.names == ["input", "relu1", "relu2", "relu3", "fc2"]
    assert blocks.n_samples == 300 and blocks.sample_shape == (1, 8, 8)
    assert (blocks.labels == labels.numpy()).all()
    with torch.no_grad():
        relu1 = model.relu1(model.conv1(x))
        relu2 = model.relu2(model.conv2(model.pool1(relu1)))
        relu3 = model.relu3(model.fc1(relu2.flatten(1)))
        expected = {"input": x, "relu1": relu1, "relu2": relu2, "relu3": relu3,
                    "fc2": model.fc2(relu3)}
    layout = {"input": ("matrix", (300, 64), (8, 8)), "relu1": ("tensor", (300, 8, 64), (8, 8)),
              "relu2": ("tensor", (300, 16, 16), (4, 4)), "relu3": ("matrix", (300, 64), None),
              "fc2": ("matrix", (300, 10), None)}
    for block in blocks:
        assert (block.kind, block.shape, block.spatial_shape) == layout[block.name]
        assert block.meta["storage"] == "host"
        close(block, expected[block.name])
    assert blocks["relu1"].meta["module_type"] == "ReLU"


def test_flatten_makes_every_block_a_matrix(digits):
    model = digits_cnn()
    blocks = capture(model, digits, ["conv2"], flatten=True, progress=False)
    assert [b.kind for b in blocks] == ["matrix", "matrix"]
    assert blocks["conv2"].shape == (300, 16 * 4 * 4)
    assert blocks["conv2"].meta["flattened_from"] == (16, 4, 4)
    x = torch.stack([digits[i][0] for i in range(len(digits))])
    with torch.no_grad():
        close(blocks["conv2"], model.conv2(model.pool1(model.relu1(model.conv1(x)))))


def test_resnet18_stages_equal_manual_forward():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = images(6)
    blocks = capture(model, x, batch_size=4, progress=False)
    assert blocks.names == ["input", "layer1", "layer2", "layer3", "layer4", "fc"]
    # 32 x 32 inputs exceed max_positions (256): pooled to 16 x 16, drawn from thumbnails
    assert blocks["input"].shape == (6, 3, 256) and blocks["input"].spatial_shape == (16, 16)
    assert blocks["input"].meta["pooled_from"] == (32, 32)
    assert_close(blocks.thumbnails.data.float(), x.reshape(6, 3, -1), rtol=1e-3, atol=1e-3)
    with torch.no_grad():
        h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        close(blocks["input"], F.adaptive_avg_pool2d(x, 16))
        for i, size in zip(range(1, 5), (8, 4, 2, 1)):
            h = getattr(model, f"layer{i}")(h)
            close(blocks[f"layer{i}"], h)
            assert blocks[f"layer{i}"].spatial_shape == (size, size)
        close(blocks["fc"], model.fc(torch.flatten(model.avgpool(h), 1)))


def test_resnet_reused_relu_is_refused_with_the_enclosing_block():
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    assert "layer1.0.relu" not in resolve_layers(model)
    with pytest.raises(ValueError, match=r"'layer1\.0\.relu'.*2 times.*'layer1\.0'"):
        capture(model, images(2), ["layer1.0.relu"], progress=False)
    # a type selector that catches the reused ReLUs is refused as well
    with pytest.raises(ValueError, match="times per forward pass"):
        capture(model, images(2), [nn.ReLU], progress=False)


def run_sequential(seq, h, prefix, out):
    for name, module in seq.named_children():
        h = module(h.clone())  # clone: in-place ReLUs must not rewrite recorded outputs
        out[f"{prefix}.{name}"] = h
    return h


@pytest.fixture(scope="module")
def vgg11():
    torch.manual_seed(0)
    return torchvision.models.vgg11(weights=None, num_classes=10).eval()


def test_vgg11_relu_before_each_pool_and_logits(vgg11):
    model = vgg11
    names = resolve_layers(model)
    features = list(model.features)
    for name in names[:5]:
        i = int(name.split(".")[1])
        assert isinstance(features[i], nn.ReLU) and isinstance(features[i + 1], nn.MaxPool2d)
    # the classifier's hidden ReLUs, then the logits
    assert names[5:] == ["classifier.1", "classifier.4", "classifier.6"]
    x = images(3)
    blocks = capture(model, x, progress=False)
    out = {}
    with torch.no_grad():
        h = run_sequential(model.features, x, "features", out)
        run_sequential(model.classifier, torch.flatten(model.avgpool(h), 1), "classifier", out)
    for name in names:
        close(blocks[name], out[name])


def test_inplace_relu_does_not_overwrite_the_captured_conv_output(vgg11):
    model = vgg11
    assert model.features[1].inplace
    x = images(3)
    blocks = capture(model, x, ["features.0", "features.1"], progress=False)
    with torch.no_grad():
        conv = model.features[0](x)
    close(blocks["features.0"], conv)
    close(blocks["features.1"], conv.relu())
    assert (blocks["features.0"].data < 0).any()


def test_mobilenet_v3_small_feature_stages():
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=10).eval()
    x = images(4)
    blocks = capture(model, x, progress=False)
    stages = [n for n in blocks.names if n.startswith("features.")]
    assert stages[0] == "features.0" and stages[-1] == f"features.{len(model.features) - 1}"
    sides = [blocks[n].spatial_shape[0] for n in stages]
    assert sides == sorted(set(sides), reverse=True)  # one block per resolution
    assert blocks.names[-1] == "classifier.3"
    out = {}
    with torch.no_grad():
        h = run_sequential(model.features, x, "features", out)
        run_sequential(model.classifier, torch.flatten(model.avgpool(h), 1), "classifier", out)
    for name in blocks.names[1:]:
        close(blocks[name], out[name])


def test_mlp_on_tabular_dict_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(),
                          nn.Linear(16, 3))
    x, y = torch.randn(50, 20), torch.arange(50) % 3
    batches = [{"features": x[i:i + 16], "target": y[i:i + 16]} for i in range(0, 50, 16)]
    blocks = capture(model, batches, progress=False)
    assert blocks.names == ["input", "1", "3", "4"]
    assert blocks["input"].kind == "matrix" and blocks["input"].spatial_shape is None
    assert blocks.sample_shape == (20,) and (blocks.labels == y.numpy()).all()
    with torch.no_grad():
        h1 = model[1](model[0](x))
        h3 = model[3](model[2](h1))
        for name, expected in {"input": x, "1": h1, "3": h3, "4": model[4](h3)}.items():
            close(blocks[name], expected)


def test_sequence_outputs_are_tensor_blocks_and_lstm_tuples_use_their_first_tensor():
    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(5, 7, batch_first=True)
            self.head = nn.Linear(7, 2)

        def forward(self, x):
            return self.head(self.lstm(x)[0])

    torch.manual_seed(0)
    model = Tagger()
    x = torch.randn(9, 4, 5)
    blocks = capture(model, x, ["lstm", "head"], progress=False)
    assert blocks["input"].shape == (9, 4, 5) and blocks["lstm"].shape == (9, 4, 7)
    assert blocks["head"].kind == "tensor"
    with torch.no_grad():
        out = model.lstm(x)[0]
        close(blocks["lstm"], out)
        close(blocks["head"], model.head(out))


def test_inputs_of_every_kind_give_the_same_blocks(digits):
    model = digits_cnn()
    x = torch.stack([digits[i][0] for i in range(len(digits))])
    y = torch.tensor([int(digits[i][1]) for i in range(len(digits))])
    dataset = TensorDataset(x, y)
    reference = capture(model, dataset, ["relu2"], batch_size=50, progress=False)

    def stream():  # a generator: the number of samples is unknown until the end
        for i in range(0, 300, 7):
            yield x[i:i + 7], y[i:i + 7]

    variants = {
        "tensor": dict(inputs=x, batch_size=32),
        "numpy": dict(inputs=x.numpy()),
        "dataset": dict(inputs=digits, batch_size=100),
        "loader": dict(inputs=DataLoader(dataset, batch_size=40)),
        "generator": dict(inputs=stream()),
        "dicts": dict(inputs=[{"pixels": x[i:i + 64], "digit": y[i:i + 64]}
                              for i in range(0, 300, 64)],
                      input_fn=lambda b: b["pixels"], label_fn=lambda b: b["digit"]),
    }
    for kind, kwargs in variants.items():
        blocks = capture(model, layers=["relu2"], progress=False, **kwargs)
        assert blocks.n_samples == 300, kind
        for block in reference:
            assert_close(blocks[block.name].data, block.data, rtol=1e-5, atol=1e-6)
        if kind in ("tensor", "numpy"):
            assert blocks.labels is None
        else:
            assert (blocks.labels == y.numpy()).all(), kind


def test_host_blocks_share_one_allocation_without_overlap_and_hold_their_own_rows(digits):
    model = digits_cnn()
    x = torch.stack([digits[i][0] for i in range(100)])
    shared = capture(model, x, batch_size=30, progress=False)
    batches = (x[i:i + 30] for i in range(0, 100, 30))  # the same batches, of unknown number
    apart = capture(model, batches, progress=False)
    assert len({b.data.untyped_storage().data_ptr() for b in shared}) == 1
    assert len({b.data.untyped_storage().data_ptr() for b in apart}) == len(apart)
    spans = sorted((b.data.data_ptr(), b.data.data_ptr() + b.data.nbytes) for b in shared)
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))
    for block in shared:
        assert block.data.is_contiguous() and block.data.data_ptr() % 64 == 0
        assert_close(block.data, apart[block.name].data, rtol=0, atol=0)
        assert block.sq_norm == pytest.approx(apart[block.name].sq_norm, rel=1e-6)


def test_host_blocks_beyond_the_shared_bound_are_allocated_apart(digits, monkeypatch):
    from peekwidgets.capture import storage

    model = digits_cnn()
    x = torch.stack([digits[i][0] for i in range(100)])
    total = sum(b.data.nbytes for b in capture(model, x, progress=False))
    monkeypatch.setattr(storage, "SHARED_BYTES", total // 2)  # no reuse to gain beyond it
    blocks = capture(model, x, progress=False)
    assert len({b.data.untyped_storage().data_ptr() for b in blocks}) == len(blocks)


def test_half_precision_models_are_captured_as_float32(digits):
    model = digits_cnn().to(torch.bfloat16)
    x = torch.stack([digits[i][0] for i in range(64)])
    blocks = capture(model, x, ["conv1", "fc2"], progress=False)
    assert all(b.data.dtype == torch.float32 for b in blocks)
    assert_close(blocks["input"].data, x.reshape(64, 64))  # the raw input, not its bf16 cast
    with torch.no_grad():
        conv1 = model.conv1(x.to(torch.bfloat16))
    assert_close(blocks["conv1"].data, conv1.float().reshape(64, 8, 64))
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


def test_resolve_layers_names_patterns_and_types():
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    assert resolve_layers(model, "layer2.1.conv1") == ["layer2.1.conv1"]
    assert resolve_layers(model, ["layer?", "fc"]) == ["layer1", "layer2", "layer3", "layer4",
                                                       "fc"]
    convs = resolve_layers(model, nn.Conv2d)
    assert len(convs) == 20 and all(isinstance(model.get_submodule(n), nn.Conv2d) for n in convs)
    assert "layer3.1.bn2" in resolve_layers(model, "layer3.*")
