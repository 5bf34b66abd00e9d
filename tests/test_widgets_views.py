"""Python-side tests of the linked views' honesty: what they state, mark and link.

The views are driven as the front end drives them: click handlers called with the events
bqplot sends, traits set as the browser sets them.
"""

from __future__ import annotations

import html

import bqplot as bq
import numpy as np
import pytest
from widget_fakes import make_blocks, planted_fit, rgb_blocks, stand_in

from peekwidgets.blocks import Blocks
from peekwidgets.engine import CoupledCP
from peekwidgets.session import Analysis
from peekwidgets.widgets import Peek, Traversal
from peekwidgets.widgets.component_map import short_names


def all_figures(peek) -> list:
    """Every bqplot Figure inside the dashboard's views (the layer response's boxes not on
    show included)."""
    layer = peek.views["layer_response"]
    out, stack = [], [*peek.views.values(), layer.matrix_box, layer.tensor_box, layer.image_box]
    while stack:
        widget = stack.pop()
        if isinstance(widget, bq.Figure):
            out.append(widget)
        stack.extend(getattr(widget, "children", ()))
    return out


def test_nothing_sits_over_the_marks_to_catch_their_clicks(peek):
    """bqplot's toolbar (pan/zoom, reset, save) sits over the top-right cells of a figure and
    catches their clicks; no view shows it, and no tooltip catches the mouse."""
    figures = all_figures(peek)
    assert len(figures) >= 6
    assert [f for f in figures if f.display_toolbar] == []
    # a tooltip pops up under the pointer: it must not catch the click meant for the cell
    tipped = [m for f in figures for m in f.marks if m.tooltip is not None]
    assert len(tipped) >= 5
    assert all(m.tooltip_style.get("pointer-events") == "none" for m in tipped)
    for name in ("component_map", "layer_response", "sample_map", "traversal"):
        guards, stack = [], [peek.views[name]]
        while stack:  # the figure's own tooltip container lets clicks through too
            widget = stack.pop()
            if "peek-styles" in getattr(widget, "_dom_classes", ()):
                guards.append(widget.value)
            stack.extend(getattr(widget, "children", ()))
        assert guards and ".bqplot_tooltip_div { pointer-events: none" in guards[0], name
        assert "--bq-axislabel-fill: var(--jp-ui-font-color1" in guards[0]  # not dark's orange


# -- 2. honest numbers -------------------------------------------------------------------------
def test_component_map_draws_the_reports_signed_shares_with_a_colour_bar(peek, est):
    from peekwidgets.report import plot_component_map

    cmap = peek.views["component_map"]
    shares = np.asarray(est.explained_variance_)
    assert (shares < 0).any()  # negatives are drawn as they are, not clipped or renormalized
    np.testing.assert_allclose(cmap.heatmap.color, shares)
    report = plot_component_map(peek.fitted).axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(np.asarray(report), shares)
    scale = cmap.heatmap.scales["color"]
    # symmetric limits put white (the middle colour) at 0; no `mid`: bqplot's colour bar
    # piles its ticks up on a scale with a mid point
    lim = np.abs(shares).max()
    assert scale.min == -scale.max == -lim and scale.mid is None
    assert f"{-lim:+.0%}" in cmap.color_bar.value and f"{lim:+.0%}" in cmap.color_bar.value
    assert "linear-gradient(to right, " + ", ".join(scale.colors) in cmap.color_bar.value
    layer = peek.views["layer_response"]
    peek.block = "conv"
    v = est.factors_["conv"][1][:, peek.component]
    m = np.abs(v).max()
    assert layer._map_colors.max == pytest.approx(m) == -layer._map_colors.min
    assert f"{m:+.2f}" in layer.map_bar.value and f"{-m:+.2f}" in layer.map_bar.value


def test_columns_are_by_weight_and_the_caption_states_it():
    from peekwidgets.engine import CoupledCP

    blocks = make_blocks(n=40)
    peek = Peek.from_fitted(blocks, CoupledCP(3, max_iter=30, random_state=0).fit(blocks))
    cmap = peek.views["component_map"]
    for rank in (3, 2, 4):
        if rank != peek.fitted.rank:
            peek.analysis.refit(rank=rank)
            peek._show(peek.analysis.view)
        f = peek.fitted
        assert np.all(np.diff(f.weights) <= 0)  # the order the axis states holds after a refit
        assert "by weight, largest first" in cmap.column_axis.label
        numbers = [c.split()[0] for c in cmap.heatmap.column]  # marks (μ, ✕, ...) follow
        assert numbers == [str(r) for r in range(rank)]
        peek.component = rank - 1
        assert f"weight {f.weights[rank - 1]:.3g} ({rank}" in cmap.caption.value
        assert f"explains {100 * f.total_share[rank - 1]:.0f}% of all blocks" in (
            cmap.caption.value)


def test_every_view_says_what_its_numbers_are(peek):
    for view in peek.views.values():
        assert len(view.subtitle) > 30 and html.escape(view.subtitle) in view.header.value


# -- 3. fit health -----------------------------------------------------------------------------
def visible_tiles(gallery) -> int:
    return len(gallery.top_grid.captions)


def test_a_dead_component_is_marked_on_the_map_and_in_the_gallery(blocks):
    est = stand_in(blocks)
    est.A_[:, 1] = 0.0  # dead: no sample loads on it (its weight stays nonzero)
    peek = Peek.from_fitted(blocks, est)
    cmap, gallery = peek.views["component_map"], peek.views["gallery"]
    assert list(cmap.heatmap.column) == ["0", "1 ✕", "2"]
    assert "dead component 1" in cmap.health.value and "refit at rank 2" in cmap.health.value
    assert "⚠ 1 problem with this fit, listed under the component map" in peek.header.value
    assert "dead component 1" not in peek.header.value  # once on the page, not twice
    peek.component = 1
    assert "component 1 is dead" in gallery.caption.value and "lower rank" in (
        gallery.caption.value)
    assert len(gallery.shown) == 0 and visible_tiles(gallery) == 0  # no made-up top inputs
    assert "component 1 is dead" in cmap.caption.value
    peek.component = 0
    assert visible_tiles(gallery) == 12 and "dead" not in gallery.caption.value


def test_near_duplicates_and_an_unfinished_fit_are_marked(blocks):
    est = stand_in(blocks, converged_=False, n_iter_=1000)
    est.A_[:, 2] = est.A_[:, 0]
    for fs in est.factors_.values():
        for f in fs:
            f[:, 2] = f[:, 0]
    peek = Peek.from_fitted(blocks, est)
    cmap = peek.views["component_map"]
    assert list(cmap.heatmap.column) == ["0 ≈", "1", "2 ≈"]
    text = cmap.health.value
    assert "components 0 and 2 are near-duplicates" in text
    assert "stopped at max_iter after 1000 sweeps" in text and "larger max_iter" in text
    peek.component = 2
    assert "nearly duplicates component 0" in peek.views["gallery"].caption.value
    healthy = Peek.from_fitted(blocks, stand_in(blocks))
    assert healthy.views["component_map"].health.value == ""
    assert "⚠" not in healthy.header.value


# -- 4. both directions of linking ---------------------------------------------------------
def test_a_selection_of_planted_samples_shows_them_and_marks_their_component():
    blocks, est = planted_fit()
    peek = Peek.from_fitted(blocks, est)
    planted = int(np.argmax(est.A_[:6].mean(axis=0)))  # the component the 6 samples carry
    other = 1 - planted
    peek.component = other
    peek.selected = np.arange(6)  # an integer array, as code would pass it
    gallery, cmap, smap = (peek.views[k] for k in ("gallery", "component_map", "sample_map"))
    assert sorted(gallery.selection_shown.tolist()) == list(range(6))
    assert len(gallery.selection_grid.captions) == 6 and gallery.selection_grid.kind == "gray"
    assert f"they load on component <b>{planted}</b>" in gallery.selection_label.value
    assert cmap.heatmap.column[planted] == f"{planted} ▲" and "▲" not in cmap.heatmap.column[
        other]
    assert f"loads on component <b>{planted}</b>" in cmap.selection.value
    z = peek.fitted.selection_z(range(6))
    np.testing.assert_allclose(smap.profile.y, z)
    assert z[planted] > 1 > z[other]
    assert smap.profile.colors[planted] != smap.profile.colors[other]
    peek.selected = []
    assert gallery.selection_grid.captions == [] and "▲" not in "".join(cmap.heatmap.column)
    assert cmap.selection.value == ""


def test_selected_takes_integer_arrays_and_component_refuses_bools(peek):
    import traitlets

    peek.selected = np.arange(5, dtype=np.int32)
    assert peek.selected == [0, 1, 2, 3, 4] and peek.views["gallery"].selected == peek.selected
    peek.selected = [3, 3, 1, 3]  # each sample once
    assert peek.selected == [3, 1] and peek.views["gallery"].selected == [3, 1]
    peek.component = np.int64(2)
    assert peek.component == 2 and type(peek.component) is int
    with pytest.raises(traitlets.TraitError, match="component must be an integer") as info:
        peek.component = True
    assert peek.component == 2 and peek.errors.exceptions == []
    with pytest.raises(traitlets.TraitError, match="list of sample indices") as info:
        peek.selected = np.arange(300) * 0.5
    assert len(str(info.value)) < 160  # not the whole array


def test_hovering_a_point_shows_its_input_index_and_label(peek, blocks):
    smap = peek.views["sample_map"]
    assert smap.scatter.tooltip is smap.hover_box
    smap.scatter._hover_handlers(smap.scatter, {"event": "hover", "point": {"index": 7}})
    i = int(smap.shown[7])
    r = smap.renderer
    assert bytes(smap.hover_image.value) == r.png(r.to_uint8(blocks["input"].numpy([i])[0]))
    text = smap.hover_text.value
    assert f"#{i}</b>" in text and f"label {blocks.labels[i]}" in text
    assert peek.errors.exceptions == []
    # the hover tool draws no brush over the points (it would catch the hover), and a click
    # selects the point: bqplot's click-to-select sets the mark's selection
    assert smap.tool.value == "hover" and smap.figure.interaction is None
    smap.scatter.selected = np.array([7])
    assert peek.selected == [i]
    smap.tool.value = "brush"
    assert smap.figure.interaction is smap.brush


def test_points_are_coloured_by_label_prediction_or_loading_with_a_legend(blocks, est):
    from peekwidgets.palette import ACCENT, NEW
    from peekwidgets.widgets.sample_map import CATEGORY

    peek = Peek.from_fitted(blocks, est)
    smap = peek.views["sample_map"]
    assert [k for _, k in smap.color_pick.options] == ["label", "prediction", "loading", "none"]
    labels = blocks.labels[smap.shown]
    assert smap.scatter.colors == [CATEGORY[c] for c in labels]  # labels are 0, 1, 2
    assert all(f"{CATEGORY[k]};font-size:15px'>●</span>{k}" in smap.legend.value
               for k in range(3))
    assert "the fit never saw it" in smap.legend.value
    smap.color_pick.value = "prediction"
    pred = blocks["fc"].numpy().argmax(axis=1)  # the last matrix block with > 1 columns
    np.testing.assert_array_equal(peek.fitted.predictions, pred)
    codes = np.unique(pred[smap.shown], return_inverse=True)[1]
    assert smap.scatter.colors == [CATEGORY[c] for c in codes]
    assert "argmax of fc" in smap.legend.value
    smap.color_pick.value = "loading"
    values = est.A_[smap.shown, smap.x_component]
    np.testing.assert_allclose(smap.scatter.color, values)
    assert "peek-color-bar" in smap.legend.value and f"{values.max():+.2f}" in smap.legend.value
    smap.color_pick.value = "none"
    assert smap.scatter.color is None and smap.legend.value == ""

    def rgb(h):
        return np.array([int(h[k:k + 2], 16) for k in (1, 3, 5)])

    for special in (ACCENT, NEW):  # the selection and the folded-in inputs stand out
        assert min(np.abs(rgb(c) - rgb(special)).sum() for c in CATEGORY) > 90


def test_clearing_the_selection_clears_the_brush_and_lasso_marks(peek, monkeypatch):
    smap = peek.views["sample_map"]
    resets = []
    monkeypatch.setattr(smap.brush, "reset", lambda: resets.append("brush"))
    monkeypatch.setattr(smap.lasso, "reset", lambda: resets.append("lasso"))
    smap.brush.brushing = True
    smap.brush.selected_x = np.array([0.0, 1.0])
    smap.brush.selected_y = np.array([0.0, 1.0])
    smap.brush.brushing = False
    assert peek.selected and resets == []  # the brush's own selection keeps its rectangle
    smap.clear_button.click()
    assert peek.selected == [] and resets == ["brush", "lasso"]
    assert smap.brush.selected_x is None and smap.scatter.selected is None
    smap.tool.value = "lasso"
    smap.scatter.selected = np.array([1, 2])
    assert len(peek.selected) == 2 and len(resets) == 4  # switching tools cleared the brush
    peek.views["gallery"].top_grid.clicked = 0  # a selection made elsewhere (a tile click)
    assert peek.selected == [int(peek.views["gallery"].shown[0])] and len(resets) == 6


# -- 5. patterns drawn on the inputs -------------------------------------------------------
def test_overlay_map_upsamples_and_colours_the_map():
    from peekwidgets.widgets.overlay import OVERLAY_ALPHA, overlay_map

    gray = np.full((2, 8, 8), 128, dtype=np.uint8)
    out = overlay_map(gray, np.array([[1.0, 0.0], [0.0, -1.0]]))
    assert out.shape == (2, 8, 8, 3)
    top_left, top_right, bottom_right = out[0, 0, 0], out[0, 0, 7], out[0, 7, 7]
    assert top_left[2] > 128 > top_left[0]  # blue where the map is positive
    assert bottom_right[0] > 128 > bottom_right[2]  # red where it is negative
    np.testing.assert_array_equal(top_right, [128, 128, 128])  # clear where it is 0
    blue = np.array([24, 100, 171])  # the palette's end, reached with the full opacity
    np.testing.assert_allclose(top_left, 128 * (1 - OVERLAY_ALPHA) + blue * OVERLAY_ALPHA,
                               atol=1)


def test_the_gallery_draws_a_conv_components_spatial_map_over_its_inputs(peek, blocks, est):
    from peekwidgets.widgets.overlay import overlay_map

    gallery = peek.views["gallery"]
    r = gallery.renderer
    assert gallery.overlay_box.layout.display == "none"  # the input block: no map to draw
    peek.component, peek.block = 1, "conv"
    assert gallery.overlay_box.layout.display is None and gallery.overlay_toggle.value
    V = est.factors_["conv"][1][:, 1].reshape(4, 4)
    i = int(gallery.shown[0])
    x = blocks["input"].numpy([i])[0]
    assert gallery.top_grid.kind == "rgb"
    np.testing.assert_array_equal(gallery.top_grid.image(0),
                                  overlay_map(r.to_uint8(x)[None], V)[0])
    assert "component 1 in <b>conv</b> (4x4, upsampled to the 8x8 images drawn" in \
        gallery.overlay_caption.value
    gallery.overlay_toggle.value = False
    assert gallery.top_grid.kind == "gray"
    np.testing.assert_array_equal(gallery.top_grid.image(0), r.to_uint8(x))
    peek.block = "fc"
    assert gallery.overlay_box.layout.display == "none"


def test_rgb_patterns_are_drawn_in_colour_under_a_matching_caption():
    import io

    from PIL import Image

    from peekwidgets.widgets import LayerResponse

    blocks = rgb_blocks()
    est = stand_in(blocks, rank=2)
    est.factors_["input"][0][:, 1] = [1.0, 0.0, -1.0]  # red up, blue down
    layer = LayerResponse.from_fitted(blocks, est)
    layer.component = 1
    image = np.asarray(Image.open(io.BytesIO(bytes(layer.pattern_image.value))))
    assert image.ndim == 3 and (image[..., 0] != image[..., 2]).any()  # not grey
    caption = layer.pattern_caption.value
    assert "mid-grey is 0" in caption and "R +1.00 · G +0.00 · B -1.00" in caption
    assert "red</span> negative" not in caption
    gray = LayerResponse.from_fitted(make_blocks(), stand_in(make_blocks()))
    assert "red</span> negative" in gray.pattern_caption.value
    from peekwidgets.widgets import InputGallery  # no map over colour photographs by default

    assert not InputGallery.from_fitted(blocks, est).overlay_toggle.value


def test_video_inputs_and_3d_maps_are_drawn_as_filmstrips():
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1),
                          nn.Flatten(), nn.Linear(4, 2)).eval()
    peek = Peek(Analysis(model, torch.randn(8, 3, 4, 8, 8), rank=2, progress=False),
                progress=False)
    gallery, layer = peek.views["gallery"], peek.views["layer_response"]
    assert gallery.top_grid.kind == "rgb"
    assert gallery.top_grid.image(0).shape == (8, 4 * 8 + 3, 3)  # 4 frames, 1-px gaps
    peek.block = "1"
    heat = np.asarray(layer.spatial_map.color)
    v = peek.analysis.estimator.factors_["1"][1][:, peek.component].reshape(4, 8, 8)
    np.testing.assert_allclose(heat, np.concatenate(list(v), axis=1))  # frames side by side
    assert "(map 4x8x8, 4 frames side by side)" in layer.caption.value
    assert gallery.overlay_box.layout.display == "none"  # no 2-D map to draw over the clips
    peek.close()


# -- 6. the traversal view -----------------------------------------------------------------
def test_the_traversal_draws_the_maps_values_in_forward_order(peek, est):
    trav, cmap = peek.views["traversal"], peek.views["component_map"]
    assert list(trav.lines.x) == peek.fitted.names == ["input", "conv", "fc"]
    np.testing.assert_allclose(trav.lines.y, np.asarray(cmap.heatmap.color).T)  # same numbers
    np.testing.assert_allclose(trav.lines.y, est.explained_variance_.T)
    peek.component = 2
    np.testing.assert_allclose(trav.selected_line.y, est.explained_variance_[:, 2])
    assert trav.selected_line.stroke_width > trav.lines.stroke_width
    trav.points._element_click_handlers(trav.points, {"data": {"index": 1 * 3 + 2}})
    assert (peek.component, peek.block) == (1, "fc")
    np.testing.assert_array_equal(cmap.heatmap.selected, [[2, 1]])  # the map follows



def test_the_traversal_follows_a_refit(blocks):
    from peekwidgets.engine import CoupledCP

    peek = Peek.from_fitted(blocks, CoupledCP(3, max_iter=30, random_state=0).fit(blocks))
    peek.analysis.refit(rank=2)
    peek._show(peek.analysis.view)
    trav = peek.views["traversal"]
    assert np.asarray(trav.lines.y).shape == (2, 3)
    np.testing.assert_allclose(trav.lines.y, peek.estimator.explained_variance_.T)
    assert len(trav.points.y) == 6


def test_path_summary_says_where_a_component_is_born_and_fades():
    from peekwidgets.widgets.traversal import path_summary

    names = ["input", "relu1", "relu2", "fc2"]
    text = path_summary(names, np.array([0.02, 0.30, 0.20, 0.05]))
    assert "peaks in <b>relu1</b> (30%)" in text and "from relu1 to relu2" in text
    assert "only in input" in path_summary(names, np.array([0.5, 0.1, 0.0, -0.2]))
    assert "explains no block" in path_summary(names, np.array([-0.1, 0.0, -0.2, 0.0]))


# -- 7. the gallery as one widget ----------------------------------------------------------
def test_the_gallery_is_a_few_widgets_whatever_its_size():
    import ipywidgets

    from peekwidgets.widgets import InputGallery

    blocks = make_blocks(n=300)
    est = stand_in(blocks)
    made = {}
    for top_k in (12, 100):
        before = len(ipywidgets.Widget.widgets)
        gallery = InputGallery.from_fitted(blocks, est, top_k=top_k)
        made[top_k] = len(ipywidgets.Widget.widgets) - before
    assert made[12] == made[100] < 50  # with ipywidgets tiles: 109 and 725
    assert len(gallery.top_grid.captions) == 100
    assert len(gallery.top_grid.pixels) == 100 * 64  # all 100 images in one buffer


def test_tile_grid_ships_its_front_end_and_reports_hovers(peek):
    from pathlib import Path

    from peekwidgets.widgets.tiles import TileGrid

    grid = peek.views["gallery"].top_grid
    static = Path(__file__).parents[1] / "peekwidgets" / "widgets" / "static"
    assert "export default { render }" in (static / "tiles.js").read_text()
    assert ".peek-tiles" in (static / "tiles.css").read_text()
    assert "export default" in str(grid._esm)  # the module's source, read at import
    grid.hovered = 2  # the front end: the mouse entered the third tile
    assert peek.views["gallery"].hovered == int(peek.views["gallery"].shown[2])
    grid.hovered = -1
    assert peek.views["gallery"].hovered == -1
    with pytest.raises(ValueError, match="2 tiles of data for 3 captions"):
        TileGrid().show(np.zeros((2, 4, 4), np.uint8), ["a", "b", "c"])
    lines = TileGrid()
    lines.show(np.arange(6.0).reshape(2, 3), ["a", "b"])
    assert lines.kind == "line" and lines.tile_shape == [3]
    np.testing.assert_array_equal(lines.image(1), [3.0, 4.0, 5.0])


# -- 8. opening view and readable charts ---------------------------------------------------
def test_the_dashboard_opens_past_the_mean_like_component_and_says_so(blocks):
    est = stand_in(blocks)
    est.A_[:, 0] = 1 / np.sqrt(len(est.A_))  # the same loading for every sample
    peek = Peek.from_fitted(blocks, est)
    cmap = peek.views["component_map"]
    assert peek.component == 1 and all(v.component == 1 for v in peek.views.values())
    assert cmap.heatmap.column[0] == "0 μ"
    assert "component 0: mean-like" in cmap.legend.value.replace("μ ", "")
    assert "<b>share</b>" in cmap.legend.value and "<b>weight</b>" in cmap.legend.value
    assert Peek.from_fitted(blocks, stand_in(blocks)).component == 0


def test_nice_ticks_are_round_even_and_inside_the_data():
    from peekwidgets.widgets.ticks import nice_ticks, tick_format

    for lo, hi in ((-0.013, 0.22), (0.0, 63.0), (0.031, 0.061), (-1.52, 2.31), (0.0, 9.0)):
        ticks = nice_ticks(lo, hi, 4)
        assert lo <= ticks.min() and ticks.max() <= hi and 3 <= len(ticks) <= 9
        np.testing.assert_allclose(np.diff(ticks), np.diff(ticks)[0])  # even
        labels = [format(t, tick_format(ticks)[1:]) for t in ticks]
        assert len(set(labels)) == len(labels)  # no repeated labels
    np.testing.assert_allclose(nice_ticks(0, 9, 5, integer=True), [0, 2, 4, 6, 8])
    assert tick_format(np.array([0.0, 0.1, 0.2]), percent=True) == ".0%"


def test_labels_with_none_or_mixed_types_are_drawn_by_their_text(blocks, est):
    from peekwidgets.widgets.sample_map import CATEGORY

    mixed = np.array([None, "cat", 3] * (blocks.n_samples // 3 + 1), dtype=object)
    labelled = Blocks(list(blocks), labels=mixed[: blocks.n_samples])
    smap = Peek.from_fitted(labelled, est).views["sample_map"]
    order = {"3": 0, "None": 1, "cat": 2}  # sorted as text
    assert smap.scatter.colors == [CATEGORY[order[str(v)]] for v in labelled.labels[smap.shown]]
    assert all(f"●</span>{text}</span>" in smap.legend.value for text in order)
    with pytest.raises(ValueError, match=r"one label per sample.*labels\.argmax\(1\)"):
        Blocks(list(blocks), labels=np.zeros((blocks.n_samples, 3)))


def test_bars_keep_their_labels_inside_and_wide_layers_show_the_strongest():
    from peekwidgets.widgets.layer_response import TOP_BARS, LoadingBars

    bars = LoadingBars("unit")
    values = np.array([0.5, -0.4, 0.1, 0.0, 0.2])
    bars.draw(values, [str(i) for i in range(5)], 2)
    scale, labels = bars.scale, bars.labels
    assert scale.min < -0.4 and scale.max > 0.5  # room for the labels above and below
    assert all(scale.min <= y <= scale.max for y in labels.y)
    assert list(labels.text) == ["0", "1"] and labels.y[1] < -0.4 < 0.5 < labels.y[0]
    assert bars.x_scale.domain == ["0", "1", "2", "3", "4"]  # in unit order, labels or not
    ticks = bars.y_axis.tick_values
    assert -0.4 <= ticks.min() and ticks.max() <= 0.5
    rng = np.random.default_rng(0)
    wide = rng.standard_normal(256)
    bars.draw(wide, [str(i) for i in range(256)], 5)
    order = np.argsort(-np.abs(wide))[:TOP_BARS]
    assert list(bars.bars.x) == [str(i) for i in order]  # sorted, strongest first
    rest = np.sum(wide[np.argsort(-np.abs(wide))[TOP_BARS:]] ** 2) / np.sum(wide ** 2)
    assert f"the other {256 - TOP_BARS} hold {rest:.0%}" in bars.note.value
    assert "strongest, sorted" in bars.x_axis.label
    assert bars.x_axis.num_ticks == 9  # 32 names: about 9 of them, evenly spaced
    bars.draw(values, [str(i) for i in range(5)], 2)
    assert bars.x_axis.num_ticks is None  # few bars: every name


def test_class_names_name_the_logits_units_and_the_categories(blocks, est):
    names = [f"class {k}" for k in range(10)]
    peek = Peek(Analysis.from_fitted(blocks, est), class_names=names)
    layer, smap = peek.views["layer_response"], peek.views["sample_map"]
    peek.block = "fc"  # the prediction block (10 units)
    assert list(layer.unit_bars.x) == names
    assert "class 0" in smap.legend.value and "class 2" in smap.legend.value
    smap.show_hover(4)
    assert f"label class {blocks.labels[4]}" in smap.hover_text.value
    peek.block = "conv"
    assert list(layer.channel_bars.x) == ["c0", "c1", "c2", "c3"]


def test_sample_map_axes_have_round_ticks_inside_the_points(peek, est):
    smap = peek.views["sample_map"]
    for axis, scale, r in ((smap.x_axis, smap._xs, smap.x_component),
                           (smap.y_axis, smap._ys, smap.y_component)):
        values = est.A_[smap.shown, r]
        ticks = axis.tick_values
        assert values.min() <= ticks.min() and ticks.max() <= values.max()
        assert scale.min < values.min() and scale.max > values.max()
        labels = [format(t, axis.tick_format[1:]) for t in ticks]
        assert len(set(labels)) == len(labels)


def test_set_ticks_sends_the_format_before_the_values_and_the_limits_last():
    """The front end redraws an axis when its scale's limits change; a format sent after the
    values stayed unused (ticks of 0.5 read "1" under the earlier ".0f")."""
    from contextlib import nullcontext

    from peekwidgets.widgets.ticks import set_ticks

    sent = []

    class Recorder:
        def __setattr__(self, name, value):
            sent.append(name)
            object.__setattr__(self, name, value)

        def hold_sync(self):
            return nullcontext()

    axis, scale = Recorder(), Recorder()
    set_ticks(axis, scale, -0.65, 0.76)
    assert sent == ["tick_format", "tick_values", "min", "max"]
    assert axis.tick_format == ".1f" and list(axis.tick_values) == [-0.5, 0.0, 0.5]
    assert scale.min < -0.65 and scale.max > 0.76


def test_long_block_names_are_shortened_in_the_component_map_while_they_differ():
    vit = ["input", "encoder.layers.encoder_layer_2", "encoder.layers.encoder_layer_11",
           "heads.head"]
    assert short_names(vit) == ["input", "…encoder_layer_2", "…encoder_layer_11",
                                "heads.head"]
    g = np.random.default_rng(0)
    a = g.random((30, 2))
    vit6 = [vit[0], *(f"encoder.layers.encoder_layer_{i}" for i in (2, 5, 8, 11)), vit[-1]]
    blocks = Blocks.from_arrays({n: (a @ g.random((2, 4))).astype(np.float32) for n in vit6})
    trav = Traversal.from_fitted(blocks, CoupledCP(2, max_iter=20, random_state=0).fit(blocks))
    assert list(trav.lines.x) == short_names(vit6) and trav.x_axis.tick_rotate < 0
    trav._on_click(None, {"data": {"index": 4}})
    assert trav.block == "encoder.layers.encoder_layer_11"  # the full name
    clash = ["a.very_long_branch_one.output_layer", "b.very_long_branch_two.output_layer"]
    assert short_names(clash) == clash  # shortened, they would read alike
    assert all(len(n) <= 21 for n in short_names(["x" * 40]))
