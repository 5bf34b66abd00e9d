"""``peekwidgets demo --headless``: the report runs end to end on digits and writes every file."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from peekwidgets import Analysis, capture, rank_profile
from peekwidgets.blocks import Block, Blocks
from peekwidgets.cli import main
from peekwidgets.demo import load_demo
from peekwidgets.engine import CoupledCP
from peekwidgets.images import InputImages
from peekwidgets.report import plot_layer_response, write_report
from peekwidgets.viewmodel import ViewModel

RANK, SAMPLES, MAX_RANK = 3, 120, 4

pytestmark = pytest.mark.slow  # the report fixture runs the whole demo (30 s)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Run the CLI once: ``(out folder, summary, stdout)``."""
    cache = tmp_path_factory.getbasetemp() / "peekwidgets-demo-cache"
    out = tmp_path_factory.mktemp("report")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["demo", "--headless", "--out", str(out), "--cache", str(cache),
                     "--rank", str(RANK), "--samples", str(SAMPLES),
                     "--max-rank", str(MAX_RANK)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    return out, summary, stdout.getvalue()


def test_every_promised_file_is_written_and_listed(report):
    out, summary, _ = report
    expected = {"component_map.png", "top_inputs.png", "rank_profiles.png",
                "checkpoint_criteria.png", "factors.npz", "summary.json"} | {
                    f"layer_responses/component_{r}.png" for r in range(RANK)}
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(summary["files"]) == expected == written


def test_figures_are_real_pngs(report):
    out, summary, _ = report
    for name in summary["files"]:
        if name.endswith(".png"):
            with Image.open(out / name) as image:
                assert image.format == "PNG"
                assert min(image.size) >= 100
                image.load()
                assert np.asarray(image).std() > 0, f"{name} is blank"


def test_summary_matches_the_saved_factorization(report):
    out, summary, _ = report
    cp = CoupledCP.load(out / "factors.npz")
    assert summary["rank"] == RANK == len(cp.weights_)
    assert summary["n_samples"] == SAMPLES == cp.A_.shape[0]
    names = [b["name"] for b in summary["blocks"]]
    assert names[0] == "input" and names == list(cp.block_names_)
    np.testing.assert_allclose(summary["weights"], cp.weights_, rtol=1e-6)
    assert summary["fit"] == pytest.approx(cp.fit_)
    for r in range(RANK):
        top = summary["top_inputs"][f"c{r}"]
        assert top == np.argsort(-cp.A_[:, r], kind="stable")[: len(top)].tolist()
    profile = summary["rank_profile"]
    assert profile["ranks"] == list(range(1, MAX_RANK + 1))
    assert np.all(np.diff(profile["fit"]) >= -1e-9), "fit cannot drop when R grows"
    assert 0 <= profile["estimated_rank"] <= MAX_RANK


def test_checkpoints_are_compared(report, tmp_path_factory):
    _, summary, _ = report
    accuracy = summary["checkpoint_accuracy"]
    assert len(accuracy) >= 3
    assert list(accuracy.values())[-1] > list(accuracy.values())[0]
    assert [row["checkpoint"] for row in summary["checkpoints"]] == list(accuracy)
    # the final checkpoint is the analysed model: its reused profile is the one an independent
    # capture and profile of that model on the same inputs gives
    run = load_demo(tmp_path_factory.getbasetemp() / "peekwidgets-demo-cache", progress=False)
    blocks = capture(run.model, run.inputs(SAMPLES), progress=False)
    own = rank_profile(blocks, MAX_RANK, progress=False)
    np.testing.assert_allclose(summary["checkpoints"][-1]["fit"], own.fit, rtol=1e-4)
    np.testing.assert_allclose(summary["rank_profile"]["fit"], own.fit, rtol=1e-4)


def test_progress_is_shown(report):
    _, summary, stdout = report
    assert "- capture inputs and layer outputs" in stdout and "report written to" in stdout
    assert "- compare " in stdout and "- write figures" in stdout
    for name in summary["files"]:
        assert name in stdout
    printed = [line[len("the fit: "):] for line in stdout.splitlines()
               if line.startswith("the fit: ")]
    assert printed == summary["problems"]  # also what the dashboard warns of


def test_layer_response_rejects_a_missing_component():
    analysis = Analysis(nn.Sequential(nn.Linear(6, 4)), torch.rand(30, 6), rank=2,
                        progress=False)
    with pytest.raises(ValueError, match="component must be in 0..1, got 2"):
        plot_layer_response(analysis.view, analysis.images, 2)


def test_report_on_flat_inputs_draws_bars(tmp_path):
    """A model on non-image inputs: the same files, inputs drawn as bar plots."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))
    analysis = Analysis(model, torch.randn(60, 12), rank=2, progress=False)
    summary = write_report(tmp_path, analysis, max_rank=3, top_k=4, progress=False)
    assert [b["name"] for b in summary["blocks"]][0] == "input"
    assert summary["blocks"][0]["spatial_shape"] is None
    assert summary["checkpoints"] is None
    assert summary["problems"] == analysis.view.health.problems(2)
    assert {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()} == (
        set(summary["files"]))
    with Image.open(tmp_path / "top_inputs.png") as image:
        assert np.asarray(image).std() > 0
    # written again at a lower rank: no figure of the earlier components is left behind
    summary = write_report(tmp_path, analysis.refit(rank=1), max_rank=3, progress=False)
    assert {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()} == (
        set(summary["files"]))


def test_report_draws_volumes_as_filmstrips_and_signals_as_values(tmp_path):
    """Video clips (a Conv3d model, 3-D maps) and 1-D signals get the same files, drawn."""
    torch.manual_seed(0)
    video = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1),
                          nn.Flatten(), nn.Linear(4, 2)).eval()
    analysis = Analysis(video, torch.randn(8, 3, 4, 8, 8), rank=2, progress=False)
    assert analysis.images.is_image and analysis.images.pixel_shape == (8, 4 * 8 + 3)
    summary = write_report(tmp_path / "video", analysis, max_rank=2, top_k=3, progress=False)
    assert summary["blocks"][1]["spatial_shape"] == [4, 8, 8]
    with Image.open(tmp_path / "video" / "layer_responses" / "component_0.png") as image:
        assert np.asarray(image).std() > 0

    signal = nn.Sequential(nn.Conv1d(1, 4, 9, stride=4), nn.ReLU(), nn.Flatten(),
                           nn.Linear(4 * 248, 2)).eval()
    analysis = Analysis(signal, torch.randn(10, 1, 1000), rank=2, progress=False)
    assert not analysis.images.is_image  # 1 x 1000: its values are plotted, not 1-px rows
    write_report(tmp_path / "signal", analysis, max_rank=2, top_k=3, progress=False)


def test_layer_responses_of_many_blocks_wrap_onto_rows():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((40, 2))
    blocks = Blocks.from_arrays({f"b{i}": (a @ rng.standard_normal((2, 5))).astype(np.float32)
                                 for i in range(19)})
    view = ViewModel(blocks, CoupledCP(rank=2, random_state=0).fit(blocks))
    fig = plot_layer_response(view, InputImages(), 0)
    assert tuple(fig.get_size_inches()) == pytest.approx((0.4 + 2.0 * 8, 0.6 + 1.8 * 3))
    assert len(fig.axes) == 19  # units only: no row is kept for channels none of them has
    tensors = Blocks([*blocks, Block("t", torch.rand(40, 3, 4), (2, 2))])
    fig = plot_layer_response(ViewModel(tensors, CoupledCP(rank=2, random_state=0).fit(
        tensors)), InputImages(), 0)
    assert len(fig.axes) == 21  # the last row: "b16".."b18" and "t", with t's channels below
    assert tuple(fig.get_size_inches())[1] == pytest.approx(0.6 + 1.8 * 4)
    sequence = Blocks([blocks["b0"], Block("tokens", torch.rand(40, 6, 30))])  # (N, T, D)
    fig = plot_layer_response(ViewModel(sequence, CoupledCP(rank=2, random_state=0).fit(
        sequence)), InputImages(), 0)
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("tokens\nfeatures (30)") for t in titles)
    assert "positions (6)" in titles


def test_a_loaded_analysis_is_reported_with_the_profile_it_holds(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))
    analysis = Analysis(model, torch.randn(50, 12), rank=2, progress=False)
    analysis.dump(tmp_path / "bare")
    analysis.rank_profile(3, progress=False)
    analysis.dump(tmp_path / "profiled")
    loaded = Analysis.load(tmp_path / "profiled")
    assert not loaded.holds_values and analysis.holds_values
    summary = write_report(tmp_path / "r1", loaded, progress=False)  # max_rank: the profile's
    assert summary["rank_profile"]["ranks"] == [1, 2, 3]
    assert (tmp_path / "r1" / "rank_profiles.png").is_file()
    summary = write_report(tmp_path / "r2", Analysis.load(tmp_path / "bare"), progress=False)
    assert summary["rank_profile"] is None and "rank_profiles.png" not in summary["files"]
    assert (tmp_path / "r2" / "component_map.png").is_file()
    with pytest.raises(ValueError, match=r"loaded without its blocks' values.*R = 1\.\.3.*"
                       "leave max_rank and checkpoints out"):
        write_report(tmp_path / "r3", loaded, max_rank=5, progress=False)
