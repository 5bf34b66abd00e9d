"""The dashboard's lifecycle: background refits with progress and cancel, rank limits, close,
exports."""

from __future__ import annotations

import gc
import html
import json
import subprocess
import sys
import time
import weakref
import zipfile

import bqplot as bq
import ipywidgets as w
import numpy as np
import pytest
import torch

from peekwidgets import Analysis
from peekwidgets.blocks import Block, Blocks
from peekwidgets.engine import CoupledCP
from peekwidgets.widgets import Peek, standalone
from peekwidgets.widgets import dashboard as dashboard_module


def image_blocks(n=300, seed=0):
    """An 8x8 input block of a rank-4 nonnegative mixture and a wide matrix block."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 4, generator=g)
    return Blocks([
        Block("input", a @ torch.rand(4, 64, generator=g), (8, 8)),
        Block("fc", a @ torch.rand(4, 400, generator=g) + 0.1 * torch.rand(n, 400, generator=g)),
    ], sample_shape=(1, 8, 8))


@pytest.fixture
def peek():
    blocks = image_blocks()
    return Peek.from_fitted(blocks, CoupledCP(2, random_state=0).fit(blocks))


def slow_refit(peek, rank=6):
    """Start a background refit that runs until cancelled (tol < 0: a fixed sweep count)."""
    peek.analysis.estimator.set_params(tol=-1.0, max_iter=100_000)
    peek.refit(rank=rank, background=True)
    deadline = time.monotonic() + 30
    while "sweep" not in peek.controls.status.value and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "sweep" in peek.controls.status.value, peek.controls.status.value


def test_views_answer_during_a_background_refit_and_cancel_keeps_its_best_factors(peek):
    old = peek.fitted
    slow_refit(peek)
    assert peek.controls.cancel_button.layout.display is None  # Cancel on show while fitting
    assert peek.controls.progress_bar.layout.display is None
    peek.component = 1  # answered at once, on the old fit still on show
    assert peek.views["layer_response"].component == 1 and peek.fitted is old
    np.testing.assert_array_equal(peek.views["gallery"].shown, old.top(1, 12))
    peek.cancel()
    assert peek.wait(60)
    assert peek.fitted.rank == 6 and peek.estimator.interrupted_
    assert "interrupted after" in peek.controls.status.value
    assert "best factors so far kept" in peek.controls.status.value
    assert peek.controls.cancel_button.layout.display == "none"
    assert peek.errors.exceptions == []


def test_progress_is_throttled_and_ends_at_the_sweeps_done(peek, monkeypatch):
    drawn = []
    real = peek.controls.show_progress
    monkeypatch.setattr(peek.controls, "show_progress",
                        lambda value, text: (drawn.append(value), real(value, text)))
    peek.analysis.estimator.set_params(tol=-1.0, max_iter=400)
    peek.refit(rank=3, background=True)
    assert peek.wait(120)
    assert peek.estimator.n_iter_ == 400 and "stopped at max_iter=400" in (
        peek.controls.status.value)
    assert 1 <= len(drawn) < 100  # a few updates a second, not one per sweep
    bar = peek.controls.progress_bar
    assert bar.value == bar.max == 400
    peek.refit(rank=2, background=True, tol=1e-4, max_iter=5000)  # converges early
    assert peek.wait(120)
    assert peek.estimator.converged_ and peek.estimator.n_iter_ < 5000
    assert bar.value == bar.max == 5000


def test_a_refit_asked_for_while_one_runs_waits_and_the_latest_wins(peek):
    slow_refit(peek, rank=5)
    peek.refit(rank=3, background=True, tol=1e-6, max_iter=1000)
    peek.refit(rank=4, background=True, tol=1e-6, max_iter=1000)  # replaces rank 3
    time.sleep(0.3)
    assert peek.fitted.rank == 2  # nothing interleaved: the running fit is not done yet
    peek._worker._cancel.set()  # stop the running fit only, not the waiting one
    assert peek.wait(120)
    assert peek.fitted.rank == 4 and not peek.estimator.interrupted_


def test_a_failed_refit_rolls_the_rank_trait_back(peek):
    with pytest.raises(Exception, match="rank must be between 1 and 64"):
        peek.rank = 10**6
    assert peek.rank == 2 and peek.fitted.rank == 2
    with pytest.raises(Exception, match="rank must be an integer, got True"):
        peek.rank = True
    peek.controls.block_boxes["input"].value = False
    peek.controls.block_boxes["fc"].value = False
    peek.controls.refit_button.click()
    assert peek.wait(30)
    assert "no blocks chosen" in str(peek.errors.exceptions[-1])
    assert peek.rank == 2 and "failed" in peek.controls.status.value


def test_rank_profile_in_the_background_is_shown_when_ready(peek):
    assert peek.compute_rank_profile(4, background=True) is None
    assert peek.wait(60)
    assert peek.analysis.profile.max_rank == 4
    assert len(peek.controls.profile_box.children) >= 1
    assert "estimated rank" in peek.controls.status.value


def test_close_closes_every_widget_and_releases_the_blocks():
    blocks = image_blocks()
    ref = weakref.ref(blocks)
    peek = Peek.from_fitted(blocks, CoupledCP(2, random_state=0).fit(blocks))
    widgets = dashboard_module._descendants(peek)
    assert len(widgets) > 50
    del blocks
    peek.close()
    gc.collect()
    assert ref() is None, "the blocks are still referenced after close()"
    assert all(widget.comm is None for widget in widgets)  # every widget closed
    open_ids = set(dashboard_module._open_widgets())
    assert not open_ids & {widget.model_id for widget in widgets if widget.comm is not None}


def test_a_dashboard_whose_views_fail_to_build_raises_and_closes_cleanly(monkeypatch):
    from peekwidgets.widgets.layer_response import LayerResponse

    def broken(self, changed=None):
        raise RuntimeError("a view could not draw")

    monkeypatch.setattr(LayerResponse, "update", broken)
    blocks = image_blocks(60)
    before = set(dashboard_module._open_widgets())
    with pytest.raises(RuntimeError, match="a view could not draw"):
        Peek.from_fitted(blocks, CoupledCP(2, random_state=0).fit(blocks))
    (half,) = [widget for key, widget in dashboard_module._open_widgets().items()
               if key not in before and isinstance(widget, Peek)]
    half.close()  # as its __del__ does: without an error
    assert half.comm is None


def test_a_script_that_builds_a_dashboard_exits_quietly():
    script = (
        "import numpy as np, torch\n"
        "from peekwidgets.blocks import Block, Blocks\n"
        "from peekwidgets.engine import CoupledCP\n"
        "from peekwidgets.widgets import Peek\n"
        "x = torch.rand(30, 16)\n"
        "blocks = Blocks([Block('input', x, (4, 4)), Block('fc', x[:, :5] * 2)])\n"
        "peek = Peek.from_fitted(blocks, CoupledCP(2, random_state=0).fit(blocks))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Exception ignored" not in done.stderr  # the widgets close at exit without errors


def test_running_the_cell_again_closes_the_earlier_dashboard(monkeypatch):
    monkeypatch.setattr(dashboard_module, "_cell_id", lambda: "cell-7")
    blocks = image_blocks(n=60)
    cp = CoupledCP(2, random_state=0).fit(blocks)
    first = Peek.from_fitted(blocks, cp)
    second = Peek.from_fitted(blocks, cp)
    assert first.analysis is None and first.comm is None
    assert second.analysis is not None and second.comm is not None


def test_export_writes_every_promised_file(peek, tmp_path):
    peek.compute_rank_profile(3, progress=False)
    peek.component, peek.selected = 1, [3, 5]
    folder, archive = peek.export(tmp_path / "out", archive=True)
    state = json.loads((folder / "state.json").read_text())
    expected = {"dashboard.html", "component_map.png", "component_map.svg", "top_inputs.png",
                "layer_response.png", "layer_response.svg", "rank_profiles.png", "factors.npz",
                "state.json"}
    assert set(state["files"]) == expected == {p.name for p in folder.iterdir()}
    assert (state["component"], state["selected"], state["rank"]) == (1, [3, 5], 2)
    assert state["params"]["rank"] == 2 and "converged" in state["fit_status"]
    svg = (folder / "layer_response.svg").read_text()
    assert ">Layer responses to component c1 (weight" in svg  # text as text, not as paths
    page = (folder / "dashboard.html").read_text()
    assert "application/vnd.jupyter.widget-state+json" in page and peek.model_id in page
    for view in peek.views.values():
        assert view.model_id in page
    # every script is in the page (tests/browser/test_export_browser.py opens it offline)
    assert "<script src" not in page
    for module in ("bqplot", "bqscales", "anywidget"):
        assert f'peekEmbed.definer("{module}")' in page
    with zipfile.ZipFile(archive) as z:
        assert set(z.namelist()) == expected
    np.testing.assert_allclose(CoupledCP.load(folder / "factors.npz").A_, peek.estimator.A_)


def test_export_page_loads_from_the_cdn_when_a_library_ships_no_local_bundle(
        peek, tmp_path, monkeypatch):
    installed = standalone.amd_bundle
    assert 'define(["@jupyter-widgets/base"]' in installed("bqplot").read_text()[:200]
    assert installed("no-such-widget-library") is None
    monkeypatch.setattr(standalone, "amd_bundle",
                        lambda module: None if module == "bqplot" else installed(module))
    with pytest.warns(UserWarning, match="loads the scripts of bqplot from the internet"):
        folder = peek.export(tmp_path / "out")
    page = (folder / "dashboard.html").read_text()
    assert "@jupyter-widgets/html-manager" in page and peek.model_id in page
    assert "peekEmbed" not in page


def test_export_button_offers_the_archive_for_download(peek, tmp_path):
    peek.controls.export_folder.value = str(tmp_path / "exported")
    button = next(c for row in peek.controls.children if isinstance(row, w.HBox)
                  for c in row.children if "peek-export" in getattr(c, "_dom_classes", ()))
    button.click()
    assert peek.errors.exceptions == []
    assert "download='exported.zip'" in peek.controls.download.value


def test_export_and_save_write_where_peekwidgets_output_says(blocks, est, tmp_path,
                                                              monkeypatch):
    assert Peek.from_fitted(blocks, est).controls.export_folder.value == "peek-export"
    monkeypatch.setenv("PEEKWIDGETS_OUTPUT", str(tmp_path))  # as `peekwidgets demo` sets it
    controls = Peek.from_fitted(blocks, est).controls
    assert controls.export_folder.value == str(tmp_path / "peek-export")
    assert controls.save_path.value == str(tmp_path / "peek_factors.npz")


def test_analysis_is_the_one_behind_the_dashboard():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    analysis = Analysis(model, torch.rand(40, 10), rank=2, progress=False)
    peek = Peek(analysis)
    assert peek.analysis is analysis and peek.fitted is analysis.view
    with pytest.raises(ValueError, match="pass new inputs to peek.add_inputs"):
        Peek(analysis, torch.rand(3, 10))


def test_the_dashboard_follows_the_analysis_changed_in_a_cell(tmp_path):
    # the README's order: the dashboard, then analysis.refit(...) and fold_in(...) in cells
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    analysis = Analysis(model, torch.rand(40, 10), rank=2, progress=False)
    peek = Peek(analysis)
    analysis.refit(rank=3, blocks="2")  # one block, named alone
    assert analysis.estimator.block_names_ == ["2"]
    assert peek.rank == 3 and peek.fitted is analysis.view and peek.component < 3
    assert peek.views["component_map"].fitted.rank == 3
    analysis.fold_in(torch.rand(5, 10))
    assert len(peek.fitted.folded_A) == 5 and "5 folded in" in peek.header.value
    peek.component = 2  # in range of the fit on show
    state = json.loads((peek.export(tmp_path / "out") / "state.json").read_text())
    assert state["rank"] == state["params"]["rank"] == 3  # the export holds one fit
    assert CoupledCP.load(tmp_path / "out" / "factors.npz").rank == 3
    with pytest.raises(ValueError, match="max_rank must be an integer >= 1"):
        peek.compute_rank_profile(0)  # was taken as "the default"


def test_closing_stops_a_background_refit_and_keeps_the_fit_it_had(peek):
    analysis, before = peek.analysis, peek.analysis.estimator
    slow_refit(peek)
    peek.close()
    assert analysis.estimator is before and analysis.view.rank == 2
    for use in (lambda: peek.refit(rank=3), lambda: peek.add_inputs(torch.rand(2, 1, 8, 8)),
                lambda: peek.export("x"), lambda: peek.compute_rank_profile(3),
                lambda: setattr(peek, "rank", 3)):
        with pytest.raises(RuntimeError, match=r"dashboard was closed.*Peek\(analysis\)"):
            use()


def test_checkpoint_comparison_shows_the_indicator_and_the_baselines():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    peek = Peek(model, torch.rand(60, 10), rank=2, progress=False)
    other = torch.nn.Sequential(torch.nn.Linear(10, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    comparison = peek.compare_checkpoints({"other": other, "final": model}, max_rank=3,
                                          progress=False)
    fig, legend, note, _ = peek.controls.profile_box.children
    labels = {label for mark in fig.marks for label in (mark.labels or [])}
    assert any("score" in label for label in labels)
    assert any("95% of the logits" in label for label in labels), labels
    assert all(html.escape(label) in legend.value for label in labels)  # named below the plot
    # a click on a checkpoint's point shows its rank profile below
    checkpoint = peek.controls.profile_box.children[-1]
    assert checkpoint.children == ()
    points = next(m for m in fig.marks if isinstance(m, bq.Scatter))
    points._element_click_handlers(points, {"event": "element_click", "data": {"index": 0}})
    caption, profile_fig = checkpoint.children
    assert "<b>other</b>: estimated rank" in caption.value
    gains = profile_fig.marks[1].y
    np.testing.assert_allclose(gains, np.maximum(comparison.profiles[0].gain, 1e-6))
    assert "logits95" in note.value and comparison.names == ["other", "final"]
