"""The dashboard and the headless report show the same top inputs, shares and images for the
same Analysis (both draw from its view model and image scaling)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from peekwidgets import Analysis, Peek
from peekwidgets.demo.models import DigitsCNN
from peekwidgets.report import plot_component_map, plot_layer_response, plot_top_inputs
from peekwidgets.widgets.layer_response import PATTERN_SIZE

TOP_K = 5


@pytest.fixture(scope="module")
def analysis():
    torch.manual_seed(0)
    x = torch.rand(80, 1, 8, 8) * 3 - 1  # values outside [0, 1]: the scaling matters
    return Analysis(DigitsCNN().eval(), x, rank=3, progress=False,
                    engine_kwargs={"max_iter": 50})


@pytest.fixture(scope="module")
def peek(analysis):
    return Peek(analysis, top_k=TOP_K)


def _axes_images(fig):
    """The pixel arrays of every image drawn in a figure, axes in order."""
    return [np.asarray(im.get_array()) for ax in fig.axes for im in ax.get_images()]


def test_same_shares(analysis, peek):
    cmap = peek.views["component_map"]
    drawn = np.asarray(cmap.heatmap.color, dtype=float)
    fig = plot_component_map(analysis.view)
    (report,) = _axes_images(fig)[:1]
    np.testing.assert_allclose(drawn, analysis.view.shares)
    np.testing.assert_allclose(report, analysis.view.shares)
    assert cmap._color_scale.min == -cmap._color_scale.max  # centred diverging scale


def test_same_top_inputs_and_pixels(analysis, peek):
    gallery = peek.views["gallery"]
    fig = plot_top_inputs(analysis.view, analysis.images, top_k=TOP_K)
    report_pixels = _axes_images(fig)
    for r in range(analysis.view.rank):
        peek.component = r
        top = analysis.view.top(r, TOP_K)
        np.testing.assert_array_equal(gallery.shown, top)
        rows = analysis.view.input_rows(top)
        for j in range(TOP_K):
            pixels = analysis.images.to_uint8(rows[j])
            np.testing.assert_array_equal(report_pixels[r * TOP_K + j], pixels)
            np.testing.assert_array_equal(gallery.top_grid.image(j), pixels)
    # one global scaling: the darkest pixel of one image is not stretched to black
    assert min(int(p.min()) for p in report_pixels) == 0
    assert max(int(p.min()) for p in report_pixels) > 0


def test_same_input_pattern(analysis, peek):
    layer = peek.views["layer_response"]
    peek.block, peek.component = "input", 1
    fig = plot_layer_response(analysis.view, analysis.images, 1)
    (pattern,) = _axes_images(fig)[:1]
    U = analysis.estimator.factors_["input"]
    expected = analysis.images.pattern_uint8(np.outer(*[f[:, 1] for f in U]) if len(U) == 2
                                             else U[0][:, 1])
    np.testing.assert_array_equal(pattern, expected)
    assert layer.pattern_image.value == layer.renderer.png(expected, size=PATTERN_SIZE)
