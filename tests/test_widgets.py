"""Python-side tests of the linked views and the Peek dashboard.

Views are driven the way the front end drives them: by calling the marks'
click handlers, clicking buttons, and setting brush traits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import traitlets
from widget_fakes import RANK, N, make_blocks, planted_fit, rgb_blocks, stand_in

from peekwidgets.blocks import Block, Blocks
from peekwidgets.engine import CoupledCP
from peekwidgets.viewmodel import ViewModel
from peekwidgets.widgets import (
    ComponentMap,
    InputGallery,
    InputRenderer,
    LayerResponse,
    Peek,
    SampleMap,
)


def click_cell(view, row, col):
    view.heatmap._element_click_handlers(
        view.heatmap, {"event": "element_click", "data": {"rowNum": row, "columnNum": col}})


def test_gallery_shows_exactly_top_k_of_each_component(blocks, est):
    gallery = InputGallery.from_fitted(blocks, est, top_k=5)
    renderer, grid = gallery.renderer, gallery.top_grid
    for r in range(RANK):
        gallery.component = r
        want = np.argsort(-est.A_[:, r])[:5]
        np.testing.assert_array_equal(gallery.shown, want)
        assert grid.kind == "gray" and len(grid.pixels) == 5 * 64  # one buffer, 5 tiles
        for slot, i in enumerate(want):
            assert grid.captions[slot] == f"#{i}  {est.A_[i, r]:+.3f}"
            expected = renderer.to_uint8(blocks["input"].numpy([i])[0])
            np.testing.assert_array_equal(grid.image(slot), expected)


def test_component_map_click_selects_component_and_block_in_every_view(peek, est):
    cmap, layer = peek.views["component_map"], peek.views["layer_response"]
    gallery, smap = peek.views["gallery"], peek.views["sample_map"]
    before = (gallery.shown.copy(), layer.mode)
    click_cell(cmap, 1, 2)  # row 1 = "conv", column 2
    assert (peek.component, peek.block) == (2, "conv")
    assert all((v.component, v.block) == (2, "conv") for v in peek.views.values())
    np.testing.assert_array_equal(cmap.heatmap.selected, [[1, 2]])
    np.testing.assert_array_equal(gallery.shown, np.argsort(-est.A_[:, 2])[:12])
    assert (gallery.shown.tolist(), layer.mode) != (before[0].tolist(), before[1])
    U, V = est.factors_["conv"]
    assert layer.mode == "tensor"
    np.testing.assert_allclose(layer.channel_bars.y, U[:, 2])
    np.testing.assert_allclose(layer.spatial_map.color, V[:, 2].reshape(4, 4))
    np.testing.assert_allclose(smap.scatter.x, est.A_[smap.shown, 2])


def test_setting_traits_from_python_updates_views(peek, est):
    layer, smap = peek.views["layer_response"], peek.views["sample_map"]
    peek.block = "fc"
    peek.component = 1
    assert layer.mode == "matrix"
    B = est.factors_["fc"][0]
    np.testing.assert_allclose(layer.unit_bars.y, B[:, 1])
    strongest = np.argsort(-np.abs(B[:, 1]))[:5]
    assert list(layer.unit_labels.text) == [str(i) for i in strongest]
    assert smap.x_component == 1 and smap.x_pick.value == 1
    assert smap.profile.colors[1] != smap.profile.colors[0]
    peek.block = "input"
    assert layer.mode == "image" and bytes(layer.pattern_image.value).startswith(b"\x89PNG")


def test_each_view_works_alone(blocks, est):
    for cls in (ComponentMap, InputGallery, LayerResponse, SampleMap):
        view = cls.from_fitted(blocks, est)
        view.component = RANK - 1
        assert view.errors in view.children  # a standalone view shows its own errors
        assert view.errors.exceptions == []
    cmap = ComponentMap.from_fitted(blocks, est)
    click_cell(cmap, 2, 0)
    assert (cmap.component, cmap.block) == (0, "fc")
    f = cmap.fitted
    np.testing.assert_allclose(cmap.heatmap.color, f.shares)
    np.testing.assert_allclose(f.shares, est.explained_variance_)  # signed, not renormalized


def test_a_sequence_block_shows_positions_and_features_not_a_map():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(40, 2, generator=g)
    tokens = torch.einsum("nr,tr,dr->ntd", a, torch.rand(6, 2, generator=g),
                          torch.rand(80, 2, generator=g))  # (N, T, D), no spatial shape
    blocks = Blocks.from_arrays({"x": a @ torch.rand(2, 5, generator=g), "tokens": tokens})
    est = CoupledCP(2, max_iter=50, random_state=0).fit(blocks)
    layer = LayerResponse.from_fitted(blocks, est)
    layer.block, layer.component = "tokens", 1
    U, V = est.factors_["tokens"]
    assert layer.mode == "sequence"
    np.testing.assert_allclose(layer.positions.bars.y, U[:, 1])
    assert list(layer.positions.bars.x) == [f"t{i}" for i in range(6)]
    strongest = np.argsort(-np.abs(V[:, 1]))[:32]  # 80 features: the strongest, sorted
    np.testing.assert_allclose(layer.features.bars.y, V[strongest, 1])
    assert list(layer.features.labels.text) == [str(strongest[0])]  # sorted: the first only
    assert len(layer.positions.labels.text) == 5  # in order: the 5 strongest
    assert set(layer.figures) == {"layer_positions", "layer_features"}
    assert "(positions x features)" in layer.caption.value
    # a map: cell borders while the cells are large, none on a 30 x 30 map (a mesh, else)
    maps = Blocks([blocks["x"], Block("small", torch.rand(40, 3, 16), (4, 4)),
                   Block("large", torch.rand(40, 3, 900), (30, 30))])
    layer = LayerResponse.from_fitted(maps, CoupledCP(2, tol=-1, max_iter=5).fit(maps))
    layer.block = "small"
    assert layer.mode == "tensor" and layer.spatial_map.stroke == "white"
    layer.block = "large"
    assert layer.spatial_map.stroke is None


def test_brush_selection_highlights_gallery_and_sets_profile(peek, est):
    smap, gallery = peek.views["sample_map"], peek.views["gallery"]
    peek.component = 0
    x, y = est.A_[:, 0], est.A_[:, 1]
    lo, hi = np.quantile(x, 0.7), x.max()
    smap.brush.brushing = True
    smap.brush.selected_x = np.array([lo, hi])
    smap.brush.selected_y = np.array([y.min(), y.max()])
    smap.brush.brushing = False
    want = np.flatnonzero((x >= lo) & (x <= hi)).tolist()
    assert peek.selected == want and gallery.selected == want
    np.testing.assert_allclose(smap.profile.y, peek.fitted.selection_z(want))
    np.testing.assert_allclose(smap.highlight.x, est.A_[want, 0])
    outlined = [int(i) for i, on in zip(gallery.shown, gallery.top_grid.outlined) if on]
    assert outlined and set(outlined) <= set(want)
    smap.clear_button.click()
    assert peek.selected == []


def test_layer_response_block_pick_is_the_block_on_show(peek, est):
    layer = peek.views["layer_response"]
    assert list(layer.block_pick.options) == peek.fitted.names
    layer.block_pick.value = "conv"  # the dropdown, by mouse or keyboard
    assert all(v.block == "conv" for v in peek.views.values()) and layer.mode == "tensor"
    np.testing.assert_allclose(layer.channel_bars.y, est.factors_["conv"][0][:, peek.component])
    peek.block = "fc"  # a block chosen elsewhere (a component map cell) shows in the dropdown
    assert layer.block_pick.value == "fc" and layer.mode == "matrix"


def test_points_are_recoloured_only_when_their_colouring_changes(peek, est, monkeypatch):
    smap = peek.views["sample_map"]
    colourings = []  # a colour list set again, even unchanged, is validated point by point
    recolour = smap._color_points
    monkeypatch.setattr(smap, "_color_points", lambda: colourings.append(1) or recolour())
    assert smap.color_by == "label"
    for r in (1, 2, 0):
        peek.component = r
    assert colourings == []  # the labels' colours stay
    smap.color_pick.value = "loading"
    np.testing.assert_allclose(smap.scatter.color, est.A_[smap.shown, 0])
    peek.component = 2  # a loading colouring follows the component
    np.testing.assert_allclose(smap.scatter.color, est.A_[smap.shown, 2])
    smap.color_pick.value = "label"
    assert smap.scatter.color is None and len(smap.scatter.colors) == len(smap.shown)


def test_sample_map_x_pick_is_the_component_on_show_and_new_axes_drop_the_brush(peek, est):
    smap, layer = peek.views["sample_map"], peek.views["layer_response"]
    peek.component, peek.block = 0, "fc"
    smap.brush.brushing = True
    smap.brush.selected_x = np.array([0.0, 0.2])
    smap.brush.selected_y = np.array([-0.2, 0.2])
    smap.brush.brushing = False
    assert peek.selected and smap.brush.selected_x is not None
    selected = list(peek.selected)
    smap.x_pick.value = 2  # the dropdown, by mouse or keyboard
    assert peek.component == 2 and all(v.component == 2 for v in peek.views.values())
    np.testing.assert_allclose(layer.unit_bars.y, est.factors_["fc"][0][:, 2])
    np.testing.assert_allclose(smap.scatter.x, est.A_[smap.shown, 2])
    assert smap.brush.selected_x is None and smap.brush.selected_y is None  # outline gone
    assert peek.selected == selected  # the selection stays, drawn on the new axes
    np.testing.assert_allclose(smap.highlight.x, est.A_[selected, 2])
    smap.y_pick.value = 0  # y alone moves no other view
    assert peek.component == 2 and smap.y_component == 0


def test_lasso_selects_drawn_samples(peek):
    smap = peek.views["sample_map"]
    smap.tool.value = "lasso"
    assert smap.figure.interaction is smap.lasso
    smap.scatter.selected = np.array([5, 0, 2])
    assert peek.selected == sorted(int(i) for i in smap.shown[[0, 2, 5]])
    smap.tool.value = "brush"
    smap.scatter.selected = np.array([1])  # the brush's own mark selection is ignored
    assert len(peek.selected) == 3 and smap.figure.interaction is smap.brush


def test_gallery_click_selects_input(peek):
    gallery = peek.views["gallery"]
    assert gallery.top_grid.clickable  # the selection and new inputs rows have no action
    assert not gallery.selection_grid.clickable and not gallery.new_grid.clickable
    gallery.top_grid.clicked = 3  # what the front end sends for a click on the fourth tile
    assert peek.selected == [int(gallery.shown[3])]
    assert gallery.top_grid.outlined[3] and gallery.top_grid.clicked == -1
    peek.selected = []
    gallery.top_grid.clicked = 3  # a second click on the same tile counts too
    assert peek.selected == [int(gallery.shown[3])]


def test_profile_bar_click_selects_component(peek):
    smap = peek.views["sample_map"]
    smap.profile._element_click_handlers(smap.profile, {"data": {"index": 2}})
    assert peek.component == 2


def test_callback_errors_land_in_the_error_area(peek, monkeypatch):
    layer = peek.views["layer_response"]
    assert peek.errors.layout.display == "none"

    def broken(changed=None):
        raise RuntimeError("layer response exploded")

    monkeypatch.setattr(layer, "update", broken)
    click_cell(peek.views["component_map"], 0, 1)
    assert [str(e) for e in peek.errors.exceptions] == ["layer response exploded"]
    assert peek.errors.layout.display is None
    assert "layer response exploded" in peek.errors._html.value
    assert peek.component == 1  # the other views still followed
    peek.errors.clear()
    peek.views["component_map"].heatmap._element_click_handlers(
        peek.views["component_map"].heatmap, {"data": {"index": 99}})
    assert len(peek.errors.exceptions) == 1


def test_bad_state_raises_clear_errors(peek):
    with pytest.raises(traitlets.TraitError, match="component 7 is out of range"):
        peek.component = 7
    with pytest.raises(traitlets.TraitError, match="no fitted block 'nope'"):
        peek.block = "nope"
    with pytest.raises(traitlets.TraitError, match=r"selected samples \[65\] out of range"):
        peek.selected = [N + 5]
    with pytest.raises(traitlets.TraitError, match="list of sample indices"):
        peek.selected = [0.5]
    with pytest.raises(ValueError, match="not fitted"):
        ViewModel(make_blocks(), object())


# -- real engine: refit, fold-in, save ----------------------------------------------------------
@pytest.fixture
def fitted_peek():
    blocks = make_blocks(n=40)
    est = CoupledCP(3, max_iter=15, random_state=0).fit(blocks)
    return Peek.from_fitted(blocks, est)


def test_refit_updates_all_views(fitted_peek):
    peek = fitted_peek
    peek.component = 2
    peek.block = "conv"
    peek.refit(rank=2, nonnegative=True, blocks=["input", "fc"])
    f = peek.fitted
    assert (f.rank, f.names, f.nonnegative) == (2, ["input", "fc"], True)
    assert peek.rank == 2 and peek.component == 0 and peek.block == "input"
    for view in peek.views.values():
        assert view.fitted is f
    assert peek.views["component_map"].heatmap.color.shape == (2, 2)
    assert "captured but not in this fit: conv" in peek.views["component_map"].legend.value
    assert len(peek.views["sample_map"].profile.y) == 2
    np.testing.assert_array_equal(peek.views["gallery"].shown, np.argsort(-f.A[:, 0])[:12])
    c = peek.controls
    assert (c.rank_slider.value, c.method.value, c.chosen_blocks()) == (
        2, "nonnegative", ["input", "fc"])
    peek.rank = 3  # setting the trait refits, in the background
    assert peek.wait(60)
    assert peek.fitted.rank == 3 and peek.views["gallery"].fitted.rank == 3
    c.block_boxes["input"].value = False
    c.block_boxes["fc"].value = False
    c.block_boxes["conv"].value = False
    c.refit_button.click()
    assert peek.wait(60)
    assert "no blocks chosen" in str(peek.errors.exceptions[-1])
    assert peek.fitted.rank == 3  # the previous fit stays on show


def test_fold_in_shows_new_inputs_without_refit(fitted_peek):
    peek = fitted_peek
    before = peek.estimator
    new = make_blocks(n=4, seed=5)
    A_new = peek.add_inputs(new)
    np.testing.assert_allclose(A_new, before.transform(new))
    assert peek.estimator is before
    smap, gallery = peek.views["sample_map"], peek.views["gallery"]
    assert len(smap.folded.x) == 4
    assert len(gallery.new_grid.captions) == 4
    r = gallery.renderer
    np.testing.assert_array_equal(gallery.new_grid.image(0), r.to_uint8(new["input"].numpy()[0]))
    peek.component = 1
    np.testing.assert_allclose(smap.folded.x, A_new[:, 1])
    assert gallery.new_grid.captions[2] == f"new 2  {A_new[2, 1]:+.3f}"
    with pytest.raises(ValueError, match="no model"):
        peek.add_inputs(torch.zeros(2, 1, 8, 8))
    peek.refit(rank=2)  # folded-in inputs stay, projected onto the new fit
    np.testing.assert_allclose(peek.fitted.folded_A, peek.estimator.transform(new))
    assert len(smap.folded.x) == 4 and len(gallery.new_grid.captions) == 4


def test_save_offers_the_file_for_download(fitted_peek, tmp_path):
    peek = fitted_peek
    path = peek.save(tmp_path / "factors")
    loaded = CoupledCP.load(path)
    np.testing.assert_allclose(loaded.A_, peek.estimator.A_)
    peek.controls.save_path.value = str(tmp_path / "from_button.npz")
    peek.controls.save_button.click()
    assert peek.errors.exceptions == []
    np.testing.assert_allclose(CoupledCP.load(tmp_path / "from_button.npz").A_, loaded.A_)
    link = peek.controls.download.value
    assert "download='from_button.npz'" in link and "base64," in link


def test_peek_from_model_captures_and_fits():
    from peekwidgets.demo.models import DigitsCNN

    torch.manual_seed(0)
    model = DigitsCNN().eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(50, 1, 8, 8)
    peek = Peek(model, x, rank=2, progress=False, engine_kwargs={"max_iter": 10})
    assert peek.fitted.names[0] == "input" and peek.fitted.rank == 2
    assert peek.views["gallery"].renderer.is_image
    A_new = peek.add_inputs(torch.rand(3, 1, 8, 8))
    assert A_new.shape == (3, 2) and len(peek.fitted.folded_A) == 3
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_add_inputs_captures_like_a_pooled_fit(tmp_path, monkeypatch):
    """A fit whose conv maps were pooled to fit the budget folds in a few raw inputs."""
    from peekwidgets.capture import capture
    from peekwidgets.demo.models import DigitsCNN

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    torch.manual_seed(0)
    model = DigitsCNN().eval()
    x = torch.rand(50, 1, 8, 8)
    peek = Peek(model, x, rank=2, progress=False, engine_kwargs={"max_iter": 10},
                capture_kwargs={"memory_budget": "20kB", "max_positions": 6})
    assert peek.blocks["relu1"].meta["pooled_from"] == (8, 8)
    new = torch.rand(3, 1, 8, 8)  # 3 samples' maps fit in 20 kB: pooled only because of like=
    A_new = peek.add_inputs(new)
    like = capture(model, new, like=peek.blocks, progress=False)
    assert like["relu1"].spatial_shape == peek.blocks["relu1"].spatial_shape == (2, 2)
    np.testing.assert_allclose(A_new, peek.estimator.transform(like), rtol=1e-5, atol=1e-7)
    assert len(peek.fitted.folded_A) == 3 and len(peek.views["sample_map"].folded.x) == 3


# -- renderer ------------------------------------------------------------------------------------
def test_renderer_denormalizes_and_caches():
    r = InputRenderer((3, 2, 2), mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    x = np.zeros((3, 4))
    x[0] = 2.0  # red channel: 2 * 0.25 + 0.5 = 1.0
    px = r.to_uint8(x)
    assert px.shape == (2, 2, 3)
    assert (px[..., 0] == 255).all() and (px[..., 1] == 128).all()
    first = r.sample_png(7, x)
    assert r.sample_png(7, x + 1) is first  # cached by key, not re-encoded
    gray = InputRenderer((8, 8))
    assert gray.is_image and gray.to_uint8(np.ones(64)).shape == (8, 8)
    with pytest.raises(ValueError, match="does not match sample_shape"):
        gray.to_uint8(np.ones(10))
    with pytest.raises(ValueError, match="both mean and std"):
        InputRenderer((8, 8), mean=0.5)


def test_rgb_inputs_and_patterns():
    blocks = rgb_blocks()
    est = stand_in(blocks, rank=2)
    gallery = InputGallery.from_fitted(blocks, est, top_k=4)
    assert gallery.top_grid.kind == "rgb" and gallery.top_grid.image(0).shape == (4, 4, 3)
    layer = LayerResponse.from_fitted(blocks, est)
    layer.component = 1
    assert layer.mode == "image"
    U, V = est.factors_["input"]
    pattern = np.outer(U[:, 1], V[:, 1])
    expected = layer.renderer.png(layer.renderer.pattern_uint8(pattern), size=200)
    assert bytes(layer.pattern_image.value) == expected


def test_non_image_inputs_draw_line_plots():
    rng = np.random.default_rng(0)
    blocks = Blocks([Block("input", torch.from_numpy(rng.random((30, 5), dtype=np.float32))),
                     Block("h", torch.from_numpy(rng.random((30, 6), dtype=np.float32)))])
    gallery = InputGallery.from_fitted(blocks, stand_in(blocks, rank=2), top_k=3)
    assert not gallery.renderer.is_image and gallery.top_grid.kind == "line"
    np.testing.assert_allclose(gallery.top_grid.image(0),
                               blocks["input"].numpy([gallery.shown[0]])[0])
    layer = LayerResponse.from_fitted(blocks, stand_in(blocks, rank=2))
    layer.block = "input"
    assert layer.mode == "matrix"


def test_rank_profile_panel_offers_the_estimated_rank(fitted_peek):
    peek = fitted_peek
    profile = peek.compute_rank_profile(max_rank=3, progress=False)
    c = peek.controls
    (fig,) = c.profile_box.children  # a figure of its own, drawn from the profile
    np.testing.assert_allclose(fig.marks[0].y, profile.fit)
    assert fig.legend_location == "bottom-right"
    assert c.use_rank_button.description == f"use rank {profile.estimated_rank}"
    c.use_rank_button.click()
    assert peek.errors.exceptions == []
    assert peek.fitted.rank == profile.estimated_rank == peek.rank


def test_gallery_finds_planted_samples_with_the_real_engine():
    """Samples 0-5 carry a pattern nobody else has: one component's gallery shows exactly them."""
    blocks, est = planted_fit()
    gallery = InputGallery.from_fitted(blocks, est, top_k=6)
    found = []
    for r in range(2):
        gallery.component = r
        found.append(set(gallery.shown.tolist()))
    assert set(range(6)) in found
