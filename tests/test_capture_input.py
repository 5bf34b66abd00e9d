"""The input block is pooled like the maps, by max_positions alone; views draw its thumbnails."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from peekwidgets.capture import capture
from peekwidgets.capture.layout import THUMBNAIL_POSITIONS, thumbnail_grid
from peekwidgets.engine import CoupledCP
from peekwidgets.images import InputImages
from peekwidgets.session import Analysis
from peekwidgets.viewmodel import ViewModel


def conv_net(channels=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 5)).eval()


def photos(n, channels=3, size=(96, 80), seed=0):
    """Smooth images (a planted low-frequency pattern plus noise), not all alike."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, channels, 6, 5, generator=g)
    x = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    return x + 0.05 * torch.randn(n, channels, *size, generator=g)


def test_a_large_input_is_pooled_to_max_positions_and_drawn_from_resized_thumbnails():
    x = photos(10)
    before = x.clone()
    blocks = capture(conv_net(), x, batch_size=4, progress=False)
    block = blocks["input"]
    grid = (17, 14)  # the largest grid of at most 256 positions with 96 x 80's aspect ratio
    assert block.meta["pooled_from"] == (96, 80) and block.spatial_shape == grid
    pooled = F.adaptive_avg_pool2d(x, grid)
    assert_close(block.data, pooled.reshape(10, 3, -1))
    assert block.sq_norm == pytest.approx(float(pooled.double().square().sum()), rel=1e-5)
    thumbs = blocks.thumbnails
    small = thumbnail_grid((96, 80))
    assert small == (70, 58) and np.prod(small) <= THUMBNAIL_POSITIONS
    assert thumbs.data.dtype == torch.float16 and thumbs.spatial_shape == small
    assert thumbs.shape == (10, 3, 70 * 58) and thumbs.meta["thumbnail_of"] == "input"
    assert_close(thumbs.data.float(), F.adaptive_avg_pool2d(x, small).reshape(10, 3, -1),
                 rtol=2e-3, atol=2e-3)
    assert "thumbnails" not in blocks.names  # never fitted
    assert blocks.select(["1"]).thumbnails is thumbs
    text = blocks.summary()
    assert "map 17x14, pooled from 96x80" in text and "3x70x58 thumbnails" in text
    assert torch.equal(x, before)


def test_small_images_are_their_own_thumbnails_and_stay_untouched():
    x = photos(6, channels=1, size=(40, 40)) * 1e5  # beyond float16: thumbnails clamp
    before = x.clone()
    blocks = capture(conv_net(1), x, progress=False)
    assert blocks["input"].shape == (6, 256) and blocks["input"].spatial_shape == (16, 16)
    assert blocks.thumbnails.shape == (6, 1600) and blocks.thumbnails.spatial_shape == (40, 40)
    assert_close(blocks.thumbnails.data.float(), x.reshape(6, -1).clamp(-65504, 65504),
                 rtol=1e-3, atol=1e-3)
    assert torch.equal(x, before)


def test_inputs_within_the_bound_and_max_positions_none_are_not_pooled():
    x = photos(4, size=(16, 16))
    blocks = capture(conv_net(), x, progress=False)
    assert blocks["input"].shape == (4, 3, 256) and "pooled_from" not in blocks["input"].meta
    assert blocks.thumbnails is None
    raw = capture(conv_net(), photos(4), max_positions=None, progress=False)
    assert raw["input"].shape == (4, 3, 96 * 80) and raw.thumbnails is None
    assert "thumbnails" not in raw.summary()


def test_volumes_are_pooled_without_thumbnails():
    net = nn.Sequential(nn.Conv3d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 216, 4)).eval()
    x = torch.rand(5, 2, 8, 8, 8)
    blocks = capture(net, x, progress=False)
    assert blocks["input"].meta["pooled_from"] == (8, 8, 8)
    assert_close(blocks["input"].data,
                 F.adaptive_avg_pool3d(x, (6, 6, 6)).reshape(5, 2, -1))
    assert blocks.thumbnails is None


def test_thumbnails_take_room_in_the_budget(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    x = photos(8)
    blocks = capture(conv_net(), x, progress=False, memory_budget="30kB")
    assert blocks["input"].meta["storage"] == "host"  # 8 x 3 x 238 floats fit
    assert blocks.thumbnails.meta["storage"] == "memmap"  # 8 x 3 x 4060 halves do not
    assert_close(blocks.thumbnails.data.float(),
                 F.adaptive_avg_pool2d(x, (70, 58)).reshape(8, 3, -1), rtol=2e-3, atol=2e-3)
    # room for the thumbnails or the input block, not both: the fitted block is served first
    blocks = capture(conv_net(), x, ["1"], progress=False, memory_budget="200kB")
    assert blocks["input"].meta["storage"] == "host"
    assert blocks.thumbnails.meta["storage"] == "memmap"


def test_like_repeats_the_input_pooling_and_keeps_thumbnails():
    model, x = conv_net(), photos(12)
    blocks = capture(model, x, progress=False)
    new = photos(3, seed=1)
    like = capture(model, new, like=blocks, progress=False, memory_budget="1TB")
    assert like["input"].spatial_shape == (17, 14) and like["input"].meta["pooled_from"] == (
        96, 80)
    assert_close(like["input"].data, F.adaptive_avg_pool2d(new, (17, 14)).reshape(3, 3, -1))
    assert like.thumbnails.spatial_shape == (70, 58)
    raw = capture(model, x, max_positions=None, progress=False)
    again = capture(model, new, like=raw, progress=False)  # not pooled then: not pooled now
    assert again["input"].shape == (3, 3, 96 * 80) and again.thumbnails is None


def test_views_draw_thumbnails_and_patterns_at_the_pooled_grid():
    model, x = conv_net(), photos(20)
    blocks = capture(model, x, progress=False)
    est = CoupledCP(2, max_iter=30, random_state=0).fit(blocks)
    view = ViewModel(blocks, est)
    rows = view.input_rows([3, 7])
    assert rows.shape == (2, 3, 70 * 58)  # laid out as the input block would be
    assert_close(torch.from_numpy(rows), blocks.thumbnails.data[[3, 7]].float())
    images = InputImages.for_blocks(blocks)
    assert images.is_image and images.sample_shape == (3, 70, 58)
    assert images.pattern_shape == (3, 17, 14)
    assert images.to_uint8(rows[0]).shape == (70, 58, 3)
    U, V = est.factors_["input"]
    assert images.pattern_uint8(np.outer(U[:, 0], V[:, 0])).shape == (17, 14, 3)
    assert images.params()["pattern_shape"] == (3, 17, 14)  # renderers made from it agree
    thumbs = blocks.thumbnails.data.float()
    assert images.vmin == pytest.approx(float(thumbs.min())) and images.vmax == pytest.approx(
        float(thumbs.max()))


def test_a_normalization_on_another_scale_or_of_other_channels_is_named():
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    pixels = photos(8).clamp(0, 1)
    normalized = (pixels - torch.tensor(mean).view(1, 3, 1, 1).float()) / torch.tensor(
        std).view(1, 3, 1, 1).float()
    blocks = capture(conv_net(), normalized, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images = InputImages.for_blocks(blocks, mean=mean, std=std)  # the right one: silent
    drawn = images.to_uint8(blocks.thumbnails.data[0].float().numpy()).astype(float)
    thumbs = F.adaptive_avg_pool2d(pixels[:1], (70, 58))[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(drawn - thumbs).mean() < 2  # the photograph as it was
    with pytest.warns(UserWarning, match=r"drawn from \[0, 1\], so they show clipped \(they "
                      r"look like the 0-255 scale: divide them by 255\)"):
        InputImages.for_blocks(blocks, mean=mean * 255, std=std * 255)
    with pytest.raises(ValueError, match=r"mean has 2 values for inputs of 3 channels"):
        InputImages.for_blocks(blocks, mean=mean[:2], std=std)


def test_folded_inputs_are_drawn_from_their_thumbnails():
    model, x = conv_net(), photos(20)
    analysis = Analysis(model, x, rank=2, progress=False, engine_kwargs={"max_iter": 30})
    new = photos(3, seed=2)
    analysis.fold_in(new)
    folded = analysis.view.folded_inputs
    assert folded.shape == (3, 3, 70 * 58)
    assert_close(torch.from_numpy(folded), F.adaptive_avg_pool2d(new, (70, 58)).flatten(2),
                 rtol=2e-3, atol=2e-3)
    assert analysis.images.to_uint8(folded[0]).shape == (70, 58, 3)


def test_a_flattened_pooled_input_still_draws_its_patterns():
    blocks = capture(conv_net(), photos(6), flatten=True, progress=False)
    assert blocks["input"].shape == (6, 3 * 17 * 14) and blocks.thumbnails is not None
    images = InputImages.for_blocks(blocks)
    assert images.pattern_shape == (3, 17, 14) and images.sample_shape == (3, 70, 58)
    assert images.pattern_uint8(np.ones(3 * 17 * 14)).shape == (17, 14, 3)
