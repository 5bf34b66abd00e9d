"""bqplot figures of rank profiles and checkpoint comparisons: new on every call, from the data."""

import html
import subprocess
import sys

import bqplot as bq
import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_hex

from peekwidgets.analysis import CheckpointComparison, rank_profile
from peekwidgets.blocks import Blocks
from peekwidgets.widgets.rank_figures import (
    checkpoint_colors,
    checkpoint_gains_figure,
    checkpoint_scores_figure,
    legend_html,
    rank_profile_figure,
    with_legend,
)


def profile_of(rank, seed=0, n=80):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, rank))
    blocks = Blocks.from_arrays({
        "x": (a @ rng.standard_normal((rank, 12))).astype(np.float32),
        "y": (a @ rng.standard_normal((rank, 9))).astype(np.float32),
    })
    return rank_profile(blocks, 5, progress=False)


def comparison(accuracy=None, rankme=(4.0, 9.0, 6.0)):
    profiles = [profile_of(r, seed=r) for r in (1, 2, 3)]
    return CheckpointComparison(["init", "mid", "end"], profiles, accuracy, ["x", "y"],
                                logits_energy_rank=np.array([1.0, 2.0, 2.0]),
                                rankme=np.array(rankme), logits_block="y",
                                penultimate_block="x")


def test_rank_profile_figure_is_new_each_call_and_shows_the_profile():
    p = profile_of(2)
    a, b = rank_profile_figure(p), rank_profile_figure(p)
    assert a is not b and a.marks[0] is not b.marks[0]
    a.legend_location, a.fig_margin = "top-left", {"top": 1, "bottom": 1, "left": 1, "right": 1}
    assert b.legend_location == "bottom-right" and b.fig_margin["top"] == 50  # a restyled only
    # the two curves are named by their axes, in their colours, not by a legend over the plot
    assert not b.marks[0].display_legend and not b.marks[1].display_legend
    assert [ax.label_color for ax in b.axes[1:]] == [b.marks[0].colors[0], b.marks[1].colors[0]]
    np.testing.assert_allclose(b.marks[0].y, p.fit)
    np.testing.assert_allclose(b.marks[1].y, np.maximum(p.gain, 1e-6))
    np.testing.assert_allclose(b.marks[-1].y, p.block_fit)  # one line per block
    assert list(b.marks[-1].labels) == ["x", "y"]
    assert len(rank_profile_figure(p, blocks=False).marks) == len(b.marks) - 1
    assert b.title == f"estimated rank 2 (score {p.score:.2f})"
    gain = b.axes[2]  # a few round ticks inside the log scale (d3's crowd a short range)
    ticks = np.asarray(gain.tick_values)
    assert 1 <= len(ticks) <= 6 and gain.scale.min <= ticks.min() <= ticks.max() <= gain.scale.max
    mantissa = ticks / 10.0 ** np.floor(np.log10(ticks))
    assert np.isin(np.round(mantissa, 9), [1, 2, 5]).all()


def test_report_rank_profiles_mark_each_estimated_rank_and_the_fitted_one():
    from peekwidgets.report import plot_rank_profiles

    profiles = {"early": profile_of(1, seed=1), "late": profile_of(3, seed=3)}
    ax = plot_rank_profiles(profiles, fitted_rank=4).axes[0]
    squares = [line.get_xdata().tolist() for line in ax.lines if line.get_marker() == "s"]
    assert squares == [[p.estimated_rank] for p in profiles.values()] == [[1], [3]]
    dotted = [line.get_xdata() for line in ax.lines if line.get_linestyle() == ":"]
    assert len(dotted) == 1 and set(dotted[0]) == {4}
    assert "dotted: the fitted rank, 4" in ax.get_title()
    plain = plot_rank_profiles(profiles).axes[0]
    assert not [line for line in plain.lines if line.get_linestyle() == ":"]
    assert "fitted" not in plain.get_title()


def test_log_ticks_are_round_and_few():
    from peekwidgets.widgets.ticks import log_ticks

    np.testing.assert_allclose(log_ticks(0.012, 0.7), [0.02, 0.05, 0.1, 0.2, 0.5])
    np.testing.assert_allclose(log_ticks(1e-6, 0.9), [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1])
    np.testing.assert_allclose(log_ticks(1e-8, 0.9), [1e-8, 1e-6, 1e-4, 1e-2])  # every 2nd
    assert len(log_ticks(0.031, 0.045)) == 1


def test_checkpoint_gains_figure_colours_checkpoints_in_order():
    comp = comparison()
    fig = checkpoint_gains_figure(comp)
    assert fig is not checkpoint_gains_figure(comp)
    curves = fig.marks[0]
    np.testing.assert_allclose(curves.y, np.maximum(np.stack([p.gain for p in comp.profiles]),
                                                    1e-6))
    viridis = colormaps["viridis"]
    assert list(curves.colors) == [to_hex(viridis(0.0)), to_hex(viridis(0.4)),
                                   to_hex(viridis(0.8))]  # green last: yellow is too pale
    assert checkpoint_colors(3) == list(curves.colors)
    assert [label.split(" (")[0] for label in curves.labels] == ["init", "mid", "end"]


def lines_of(fig):
    return [m for m in fig.marks if isinstance(m, bq.Lines)]


def test_checkpoint_scores_figure_shows_every_criterion_scaled_to_its_range():
    plain = checkpoint_scores_figure(comparison())
    assert len(lines_of(plain)) == 4 and len(plain.axes) == 2  # no accuracy without labels
    comp = comparison(np.array([0.1, 0.5, 0.9]))
    fig = checkpoint_scores_figure(comp)
    assert fig is not checkpoint_scores_figure(comp)
    score, energy, rankme, share, accuracy = lines_of(fig)
    s = comp.scores
    np.testing.assert_allclose(score.y, (s - s.min()) / (s.max() - s.min()))
    np.testing.assert_allclose(energy.y, [0.0, 1.0, 1.0])
    np.testing.assert_allclose(rankme.y, [0.0, 1.0, 0.4])
    assert rankme.labels == ["RankMe of the penultimate block (4 to 9)"]
    np.testing.assert_allclose(accuracy.y, [0.1, 0.5, 0.9])
    assert list(score.x) == ["init", "mid", "end"]
    assert len({m.colors[0] for m in lines_of(fig)}) == 5
    # each point's tooltip gives its value as measured, not as scaled
    points = [m for m in fig.marks if isinstance(m, bq.Scatter)]
    assert len(points) == 5 and list(points[2].names) == ["4", "9", "6"]
    np.testing.assert_allclose(points[2].y, rankme.y)
    assert list(points[2].tooltip.fields) == ["x", "name"]
    # a baseline without its block is left out; a constant one sits mid-axis
    missing = checkpoint_scores_figure(comparison(rankme=(np.nan,) * 3))
    assert len(lines_of(missing)) == 3
    constant = checkpoint_scores_figure(comparison(rankme=(2.0,) * 3))
    np.testing.assert_allclose(lines_of(constant)[2].y, [0.5] * 3)


def test_checkpoint_figures_name_their_lines_below_the_plot_and_slant_long_names():
    comp = comparison(np.array([0.1, 0.5, 0.9]))
    fig = checkpoint_scores_figure(comp)
    assert not any(m.display_legend for m in fig.marks)  # no legend inside the plot
    legend = legend_html(fig)
    for line in lines_of(fig):
        assert html.escape(line.labels[0]) in legend and line.colors[0] in legend
    assert legend.count("dashed") == 1  # accuracy
    box = with_legend(fig)
    assert box.children[0] is fig and box.children[1].value == legend
    gains = checkpoint_gains_figure(comp)
    assert all(f"{n} (score" in legend_html(gains) for n in comp.names)
    assert "threshold 0.03" in legend_html(gains)
    assert fig.axes[0].tick_rotate == 0 and fig.axes[0].label == "checkpoint"
    long = CheckpointComparison([f"run-{i}/epoch-{10 * i}" for i in range(3)], comp.profiles,
                                None, ["x", "y"], logits_energy_rank=np.ones(3),
                                rankme=np.ones(3), logits_block="y", penultimate_block="x")
    slanted = checkpoint_scores_figure(long)
    assert slanted.axes[0].tick_rotate < 0 and slanted.fig_margin["bottom"] > 50


def test_report_checkpoint_criteria_draw_what_the_dashboard_draws():
    from peekwidgets.report import plot_checkpoint_criteria

    comp = comparison(np.array([0.1, 0.5, 0.9]))
    fig = plot_checkpoint_criteria(comp)
    ax, acc = fig.axes
    drawn = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
    shown = {m.labels[0]: m.y for m in lines_of(checkpoint_scores_figure(comp))}
    assert drawn.keys() | {"accuracy (validation only)"} == shown.keys()
    for label, y in drawn.items():
        np.testing.assert_allclose(y, shown[label])
    np.testing.assert_allclose(acc.get_lines()[0].get_ydata(), [0.1, 0.5, 0.9])
    assert len(fig.legends[0].get_texts()) == 5  # below the plot, not over the lines
    assert [t.get_text() for t in ax.get_xticklabels()] == ["init", "mid", "end"]


def test_analysis_loads_no_widget_library():
    code = ("import sys, peekwidgets.analysis; "
            "bad = {'ipywidgets', 'bqplot'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
