"""Layer choice: wrapped models, name suggestions, and what "auto" picks."""

from functools import partial

import pytest
import torch
from test_capture_safety import assert_unchanged, mlp, rows, snapshot
from torch import nn
from torch.testing import assert_close
from torchvision import models as tv

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


def _stages(prefix, indices):
    return [f"{prefix}{i}" for i in indices]


# family: (constructor, image side, the stages "auto" takes, then the rest, in forward order)
RESNET = ["layer1", "layer2", "layer3", "layer4"]
FAMILIES = {
    "resnet18": (tv.resnet18, 64, RESNET, ["fc"]),
    "resnext50_32x4d": (tv.resnext50_32x4d, 64, RESNET, ["fc"]),
    "wide_resnet50_2": (tv.wide_resnet50_2, 64, RESNET, ["fc"]),
    "vgg11": (tv.vgg11, 64, _stages("features.", (1, 4, 9, 14, 19)),
              ["classifier.1", "classifier.4", "classifier.6"]),
    "mobilenet_v2": (tv.mobilenet_v2, 64, _stages("features.", (1, 3, 6, 13, 18)),
                     ["classifier.1"]),
    "mobilenet_v3_small": (tv.mobilenet_v3_small, 64, _stages("features.", (0, 1, 3, 8, 12)),
                           ["classifier.1", "classifier.3"]),
    "efficientnet_b0": (tv.efficientnet_b0, 64, _stages("features.", (1, 2, 3, 5, 8)),
                        ["classifier.1"]),
    "efficientnet_v2_s": (tv.efficientnet_v2_s, 64, _stages("features.", (1, 2, 3, 5, 7)),
                          ["classifier.1"]),
    "regnet_y_400mf": (tv.regnet_y_400mf, 64, _stages("trunk_output.block", (1, 2, 3, 4)),
                       ["fc"]),
    "convnext_tiny": (tv.convnext_tiny, 64, _stages("features.", (1, 3, 5, 7)),
                      ["classifier.2"]),
    "densenet121": (tv.densenet121, 64, ["features.relu0", *_stages(
        "features.denseblock", (1, 2, 3)), "features.norm5"], ["classifier"]),
    "shufflenet_v2_x0_5": (tv.shufflenet_v2_x0_5, 64, ["stage2", "stage3", "stage4"],
                           ["conv5.2", "fc"]),  # conv5's ReLU: the head's hidden activation
    "squeezenet1_1": (tv.squeezenet1_1, 64, _stages("features.", (1, 4, 7, 12)),
                      ["classifier.3"]),  # no Linear: the last module gives the logits
    "googlenet": (partial(tv.googlenet, init_weights=False), 64,
                  ["conv1", "conv3", "inception3b", "inception4e", "inception5b"], ["fc"]),
    "inception_v3": (partial(tv.inception_v3, init_weights=False), 80,
                     ["Conv2d_2b_3x3", "Conv2d_4a_3x3", "Mixed_5d", "Mixed_6e", "Mixed_7c"],
                     ["fc"]),
    "swin_t": (tv.swin_t, 64, _stages("features.", (1, 3, 5, 7)), ["head"]),
    "maxvit_t": (tv.maxvit_t, 224, _stages("blocks.", (0, 1, 2, 3)),  # a ModuleList of stages
                 ["classifier.4", "classifier.5"]),
    "vit_b_16": (partial(tv.vit_b_16, image_size=32), 32,
                 _stages("encoder.layers.encoder_layer_", (2, 5, 8, 11)), ["heads.head"]),
}


def outputs_of(model, names, x):
    """The outputs of the modules ``names`` in a plain forward pass, by hooks of the test's own."""
    out = {}

    def keep(name, module, args, output):  # returns None: the output stays the module's
        out[name] = output.clone()

    handles = [model.get_submodule(n).register_forward_hook(partial(keep, n)) for n in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return out


@pytest.mark.slow  # 18 torchvision networks: up to 16 s each
@pytest.mark.parametrize("family", list(FAMILIES))
def test_auto_takes_the_stages_of_every_torchvision_family(family):
    make, side, stages, rest = FAMILIES[family]
    expected = stages + rest
    torch.manual_seed(0)
    model = make(weights=None, num_classes=10).eval()
    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    before = snapshot(model)
    blocks = capture(model, x, progress=False)
    assert_unchanged(model, before)
    assert blocks.names == ["input", *expected]
    assert all(f"  {name} " in blocks.summary() for name in expected)

    if family != "vit_b_16":  # one block per resolution, finer to coarser
        sides = [blocks[n].spatial_shape[0] for n in stages]
        assert sides == sorted(set(sides), reverse=True)
    assert blocks[expected[-1]].mode_shape[0] == 10  # the logits
    for name, y in outputs_of(model, expected, x).items():
        block = blocks[name]
        if block.meta.get("channels_last"):  # Swin's stages: (N, H, W, C) stored as (N, C, H*W)
            y = y.permute(0, 3, 1, 2)
        if block.meta.get("output_key") == 0:  # ViT: the class token of each block
            assert family == "vit_b_16" and block.kind == "matrix"
            y = y[:, 0]
        assert_close(block.data, y.reshape(block.shape), rtol=1e-4, atol=1e-5)


def test_vit_token_blocks_are_reachable_as_tensors():
    torch.manual_seed(0)
    model = tv.vit_b_16(weights=None, num_classes=10, image_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    last = "encoder.layers.encoder_layer_11"
    named = capture(model, x, [last], progress=False)  # a named layer: all its tokens
    assert named[last].shape == (2, 5, 768) and "output_key" not in named[last].meta
    auto = capture(model, x, output_keys={last: None}, progress=False)
    assert auto[last].kind == "tensor" and auto["encoder.layers.encoder_layer_2"].kind == "matrix"
    assert_close(auto[last].data, named[last].data)


def test_auto_takes_the_trunk_of_a_backbone_and_the_main_head_not_an_auxiliary_one():
    # torchvision's segmentation models: a MobileNet backbone is a ModuleDict of its features,
    # and with aux_loss=True the auxiliary head runs in eval mode too, after the main one
    torch.manual_seed(0)
    model = tv.segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, aux_loss=True, num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    blocks = capture(model, x, progress=False)
    assert blocks.names == ["input", "backbone.1", "backbone.3", "backbone.6", "backbone.16",
                            "classifier.4"]
    with torch.no_grad():
        logits = model.classifier(model.backbone(x)["out"])  # before the upsampling
    assert_close(blocks["classifier.4"].data, logits.flatten(2))


def test_without_a_linear_the_logits_are_the_module_that_returned_last():
    # LRASPP's head adds a low- and a high-resolution classifier: the sum, the head's output,
    # is the logits; neither classifier alone (the last leaf) is
    torch.manual_seed(0)
    model = tv.segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    blocks = capture(model, x, progress=False)
    assert blocks.names[-1] == "classifier"
    with torch.no_grad():
        features = model.backbone(x)
        logits = model.classifier(features)  # before the upsampling
    assert_close(blocks["classifier"].data, logits.flatten(2))


def test_auto_takes_the_stages_of_1d_and_3d_nets_and_recurrent_layers():
    torch.manual_seed(0)
    audio = nn.Sequential(nn.Conv1d(1, 8, 5, stride=2), nn.ReLU(), nn.Conv1d(8, 16, 3, stride=2),
                          nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(16, 4))
    video = nn.Sequential(nn.Conv3d(1, 8, 3, stride=2), nn.ReLU(), nn.Conv3d(8, 16, 3, stride=2),
                          nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(16, 4))
    for net, x in ((audio, torch.randn(6, 1, 100)), (video, torch.randn(4, 1, 16, 16, 16))):
        blocks = capture(net, x, progress=False)
        assert blocks.names == ["input", "1", "3", "6"]  # the ReLUs, not the global pool

    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm, self.head = nn.LSTM(8, 16, batch_first=True), nn.Linear(16, 3)

        def forward(self, x):
            return self.head(self.lstm(x)[0][:, -1])

    net = Recurrent()
    blocks = capture(net, torch.randn(6, 5, 8), progress=False)
    assert blocks.names == ["input", "lstm", "head"]
    assert blocks["lstm"].data.shape == (6, 5, 16)  # the output sequence
