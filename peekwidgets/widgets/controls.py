"""Controls of the dashboard: refit (in the background, with progress and cancel), rank profile,
export."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

import bqplot as bq
import ipywidgets as w

from .rank_figures import checkpoint_scores_figure, legend_html, rank_profile_figure
from .theme import caption_html, title_html

__all__ = ["Controls", "download_link"]

LS, NONNEG = "least squares", "nonnegative"


def download_link(data: bytes, filename: str, text: str) -> str:
    """An HTML link that hands ``data`` to the viewer's browser as ``filename``.

    The bytes travel inside the page (a ``data:`` URL), so the link works where the kernel's
    files are out of the viewer's reach (Voilà, a remote server).
    """
    encoded = base64.b64encode(data).decode("ascii")
    return (f"<a download='{html.escape(filename)}' href='data:application/octet-stream;"
            f"base64,{encoded}' class='peek-download' style='color:var(--jp-brand-color1,"
            f"#1c7ed6)'>{html.escape(text)}</a>")


def _button(description: str, icon: str, **kwargs) -> w.Button:
    """A button sized to its label (never truncated)."""
    return w.Button(description=description, icon=icon,
                    layout=w.Layout(width="auto", min_width="fit-content"), **kwargs)


class Controls(w.VBox):
    """Rank, model, blocks taking part, refit (with progress and cancel), rank profile, export.

    Parameters
    ----------
    peek : Peek
        The dashboard the controls act on (``refit``, ``cancel``, ``compute_rank_profile``,
        ``export``, ``save``).
    max_rank : int
        Upper end of the rank slider.

    Export and Save write into the kernel's folder by default, or into
    ``$PEEKWIDGETS_OUTPUT`` when it is set (``peekwidgets demo`` sets it to the folder it is
    run from: its kernel runs in the package's notebooks folder).
    """

    def __init__(self, peek, max_rank: int = 20):
        self.peek = peek
        guard = peek.errors.guard
        f = peek.fitted
        self.rank_slider = w.IntSlider(value=f.rank, min=1, max=max(max_rank, f.rank),
                                       description="rank", continuous_update=False,
                                       layout=w.Layout(width="auto", max_width="360px"))
        self.method = w.ToggleButtons(options=[LS, NONNEG],
                                      value=NONNEG if f.nonnegative else LS,
                                      style={"button_width": "auto"})
        self.block_boxes = {
            name: w.Checkbox(value=name in f.names, description=name, indent=False,
                             layout=w.Layout(width="auto", margin="0 10px 0 0"))
            for name in peek.blocks.names
        }
        self.refit_button = _button("Refit", "refresh", button_style="primary")
        self.refit_button.add_class("peek-refit")
        self.refit_button.on_click(guard(lambda _: self.refit()))
        self.cancel_button = _button("Cancel", "stop", button_style="warning")
        self.cancel_button.add_class("peek-cancel")
        self.cancel_button.layout.display = "none"
        self.cancel_button.on_click(guard(lambda _: peek.cancel()))
        self.progress_bar = w.IntProgress(min=0, max=1, value=0,
                                          layout=w.Layout(width="auto", display="none"))
        self.progress_bar.add_class("peek-progress")
        self.status = w.HTML()
        self.status.add_class("peek-status")

        self.profile_button = _button("Rank profile", "line-chart")
        self.profile_button.on_click(guard(lambda _: peek.compute_rank_profile(background=True)))
        self.use_rank_button = _button("use estimated rank", "check")
        self.use_rank_button.layout.display = "none"
        self.use_rank_button.on_click(guard(lambda _: self._use_estimated_rank()))
        self.profile_box = w.VBox()

        field = {"flex": "1 1 160px", "min_width": "0", "max_width": "260px"}
        out = Path(os.environ.get("PEEKWIDGETS_OUTPUT", ""))  # the kernel's folder when unset
        self.export_folder = w.Text(value=str(out / "peek-export"), description="folder",
                                    layout=w.Layout(**field))
        self.export_folder.style.description_width = "50px"
        export_button = _button("Export", "download")
        export_button.add_class("peek-export")
        export_button.on_click(guard(lambda _: self._export()))
        self.save_path = w.Text(value=str(out / "peek_factors.npz"), layout=w.Layout(**field))
        self.save_button = _button("Save factors", "save")
        self.save_button.on_click(guard(lambda _: self._save()))
        self.download = w.HTML()
        self.download.add_class("peek-downloads")

        wrap = w.Layout(flex_flow="row wrap", align_items="center")
        blocks_row = w.HBox(list(self.block_boxes.values()), layout=wrap)
        super().__init__([
            w.HTML(title_html("Controls", "refit, rank, export")),
            self.rank_slider, self.method,
            w.HTML(caption_html("blocks taking part")), blocks_row,
            w.HBox([self.refit_button, self.cancel_button], layout=wrap),
            self.progress_bar, self.status,
            w.HBox([self.profile_button, self.use_rank_button], layout=wrap), self.profile_box,
            w.HBox([self.export_folder, export_button], layout=wrap),
            w.HBox([self.save_path, self.save_button], layout=wrap),
            self.download,
        ], layout=w.Layout(flex="1 1 320px", min_width="0", max_width="520px",
                           margin="0 0 0 8px"))
        self.add_class("peek-controls")

    def chosen_blocks(self) -> list[str]:
        return [name for name, box in self.block_boxes.items() if box.value]

    def refit(self):
        """Refit in the background with the rank, model and blocks chosen in the controls."""
        self.peek.refit(rank=self.rank_slider.value, nonnegative=self.method.value == NONNEG,
                        blocks=self.chosen_blocks(), background=True)

    def sync(self, fitted):
        """Show the settings of a new fit."""
        self.rank_slider.max = max(self.rank_slider.max, fitted.rank)
        self.rank_slider.value = fitted.rank
        self.method.value = NONNEG if fitted.nonnegative else LS
        for name, box in self.block_boxes.items():
            box.value = name in fitted.names

    def show_status(self, text: str):
        self.status.value = caption_html(text)

    def show_busy(self, busy: bool, total: int = 1):
        """Show (``busy``) or hide the progress bar and the Cancel button."""
        self.cancel_button.layout.display = None if busy else "none"
        self.progress_bar.layout.display = None if busy else "none"
        if busy:
            with self.progress_bar.hold_sync():
                self.progress_bar.max, self.progress_bar.value = max(total, 1), 0

    def show_progress(self, value: int, text: str):
        with self.progress_bar.hold_sync():
            self.progress_bar.value = min(value, self.progress_bar.max)
        self.show_status(text)

    def fill_progress(self):
        """Fill the progress bar: the work is done (throttled drawing may have skipped the
        last sweeps, and a converged fit stops before ``max_iter``)."""
        self.progress_bar.value = self.progress_bar.max

    def show_profile(self, profile):
        """Show a :class:`~peekwidgets.analysis.RankProfile` and offer its estimated rank.

        An estimated rank of 0 (no component passes the threshold) is offered as rank 1, the
        smallest fit, with a note under the figure saying so.
        """
        self._use_rank = max(profile.estimated_rank, 1)
        children = [_small_profile_figure(profile)]
        if profile.estimated_rank < 1:
            note = w.HTML(caption_html(
                f"estimated rank 0: no component gains &ge; {profile.threshold:g} of the joint "
                "fit; offering rank 1, the smallest fit (or lower the threshold)"))
            note.add_class("peek-rank-note")
            children.append(note)
        self.profile_box.children = children
        self.use_rank_button.description = f"use rank {self._use_rank}"
        self.use_rank_button.layout.display = None

    def show_comparison(self, comparison):
        """Show a :class:`~peekwidgets.analysis.CheckpointComparison`: the paper's indicator
        and the label-free baselines of every checkpoint side by side, with the advice of the
        comparison's table. Clicking a checkpoint's point shows its rank profile below."""
        fig = checkpoint_scores_figure(comparison)
        fig.layout = w.Layout(width="auto", min_width="0", height="300px")
        advice = comparison.table().splitlines()[-1]
        note = w.HTML(caption_html(html.escape(advice) + "<br>click a checkpoint's point for "
                                   "its rank profile"))
        note.add_class("peek-comparison-note")
        checkpoint = w.VBox()
        checkpoint.add_class("peek-checkpoint-profile")
        for points in fig.marks:
            if isinstance(points, bq.Scatter):
                points.on_element_click(self.peek.errors.guard(
                    lambda _, event: self._show_checkpoint(comparison, event, checkpoint)))
        self.use_rank_button.layout.display = "none"  # no estimate for the model on show
        self.profile_box.children = [fig, w.HTML(legend_html(fig)), note, checkpoint]

    def _show_checkpoint(self, comparison, event, box):
        i = int(event["data"]["index"])
        p = comparison.profiles[i]
        caption = (f"<b>{html.escape(comparison.names[i])}</b>: estimated rank "
                   f"{p.estimated_rank}{'+' if p.saturated else ''} (score {p.score:.2f})")
        if comparison.accuracy is not None:
            caption += f" · accuracy {comparison.accuracy[i]:.1%}"
        box.children = [w.HTML(caption_html(caption)), _small_profile_figure(p)]

    def _use_estimated_rank(self):
        self.rank_slider.value = self._use_rank
        self.refit()

    def _export(self):
        folder, archive = self.peek.export(self.export_folder.value, archive=True)
        self.download.value = caption_html(
            f"exported to <code>{html.escape(str(folder))}</code> · "
            + download_link(archive.read_bytes(), archive.name, f"download {archive.name}"))

    def _save(self):
        path = self.peek.save(self.save_path.value)
        self.download.value = caption_html(
            f"factors saved to <code>{html.escape(str(path))}</code> · "
            + download_link(path.read_bytes(), path.name, f"download {path.name}"))


def _small_profile_figure(profile) -> bq.Figure:
    """A new rank-profile figure sized for the controls: joint fit and gain only (the panel is
    too small for a curve per block)."""
    fig = rank_profile_figure(profile, blocks=False)
    fig.layout = w.Layout(width="auto", min_width="0", height="260px")
    fig.axes[1].label = "joint fit"
    fig.fig_margin = {"top": 40, "bottom": 40, "left": 50, "right": 50}
    return fig
