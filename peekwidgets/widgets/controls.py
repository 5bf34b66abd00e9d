"""Controls of the dashboard: refit, rank profile, export."""

from __future__ import annotations

import ipywidgets as w

from .rank_figures import rank_profile_figure
from .theme import caption_html, title_html

__all__ = ["Controls"]

LS, NONNEG = "least squares", "nonnegative"


class Controls(w.VBox):
    """Rank, model, blocks taking part, refit (with progress), rank profile and export.

    Parameters
    ----------
    peek : Peek
        The dashboard the controls act on (``refit``, ``compute_rank_profile``,
        ``export_figures``, ``save``).
    max_rank : int
        Upper end of the rank slider.
    """

    def __init__(self, peek, max_rank: int = 20):
        self.peek = peek
        guard = peek.errors.guard
        f = peek.fitted
        self.rank_slider = w.IntSlider(value=f.rank, min=1, max=max(max_rank, f.rank),
                                       description="rank", continuous_update=False,
                                       layout=w.Layout(width="300px"))
        self.method = w.ToggleButtons(options=[LS, NONNEG],
                                      value=NONNEG if f.nonnegative else LS,
                                      style={"button_width": "120px"})
        self.block_boxes = {
            name: w.Checkbox(value=name in f.names, description=name, indent=False,
                             layout=w.Layout(width="auto", margin="0 10px 0 0"))
            for name in peek.blocks.names
        }
        self.refit_button = w.Button(description="Refit", icon="refresh", button_style="primary",
                                     layout=w.Layout(width="120px"))
        self.refit_button.add_class("peek-refit")
        self.refit_button.on_click(guard(lambda _: self.refit()))
        self.status = w.HTML()

        self.profile_button = w.Button(description="Rank profile", icon="line-chart",
                                       layout=w.Layout(width="140px"))
        self.profile_button.on_click(guard(lambda _: peek.compute_rank_profile()))
        self.use_rank_button = w.Button(description="use estimated rank",
                                        layout=w.Layout(width="170px", display="none"))
        self.use_rank_button.on_click(guard(lambda _: self._use_estimated_rank()))
        self.profile_box = w.VBox()

        self.export_format = w.Dropdown(options=["png", "svg"], value="png",
                                        layout=w.Layout(width="70px"))
        self.export_prefix = w.Text(value="peek", description="prefix",
                                    layout=w.Layout(width="180px"))
        self.export_prefix.style.description_width = "40px"
        export_button = w.Button(description="Export figures", icon="download",
                                 layout=w.Layout(width="140px"))
        export_button.on_click(guard(lambda _: peek.export_figures(
            self.export_prefix.value, self.export_format.value)))
        self.save_path = w.Text(value="peek_factors.npz", layout=w.Layout(width="200px"))
        self.save_button = w.Button(description="Save factors", icon="save",
                                    layout=w.Layout(width="140px"))
        self.save_button.on_click(guard(lambda _: self._save()))

        blocks_row = w.HBox(list(self.block_boxes.values()),
                            layout=w.Layout(flex_flow="row wrap", width="340px"))
        super().__init__([
            w.HTML(title_html("Controls", "refit, rank, export")),
            self.rank_slider, self.method,
            w.HTML(caption_html("blocks taking part")), blocks_row,
            w.HBox([self.refit_button, self.status], layout=w.Layout(align_items="center")),
            w.HBox([self.profile_button, self.use_rank_button]), self.profile_box,
            w.HBox([self.export_prefix, self.export_format, export_button]),
            w.HBox([self.save_path, self.save_button]),
        ], layout=w.Layout(width="380px", margin="0 0 0 8px"))
        self.add_class("peek-controls")

    def chosen_blocks(self) -> list[str]:
        return [name for name, box in self.block_boxes.items() if box.value]

    def refit(self):
        """Refit with the rank, model and blocks chosen in the controls."""
        self.peek.refit(rank=self.rank_slider.value, nonnegative=self.method.value == NONNEG,
                        blocks=self.chosen_blocks())

    def sync(self, fitted):
        """Show the settings of a new fit."""
        self.rank_slider.max = max(self.rank_slider.max, fitted.rank)
        self.rank_slider.value = fitted.rank
        self.method.value = NONNEG if fitted.nonnegative else LS
        for name, box in self.block_boxes.items():
            box.value = name in fitted.names

    def show_status(self, text: str):
        self.status.value = caption_html(text)

    def show_profile(self, profile):
        """Show a :class:`~peekwidgets.analysis.RankProfile` and offer its estimated rank.

        An estimated rank of 0 (no component passes the threshold) is offered as rank 1, the
        smallest fit, with a note under the figure saying so.
        """
        fig = rank_profile_figure(profile)  # a new figure: restyling it changes no other
        fig.layout = w.Layout(width="370px", height="260px")
        fig.legend_location = "bottom-right"
        fig.fig_margin = {"top": 40, "bottom": 40, "left": 50, "right": 50}
        self._use_rank = max(profile.estimated_rank, 1)
        children = [fig]
        if profile.estimated_rank < 1:
            note = w.HTML(caption_html(
                f"estimated rank 0: no component gains &ge; {profile.threshold:g} of the joint "
                "fit; offering rank 1, the smallest fit (or lower the threshold)"))
            note.add_class("peek-rank-note")
            children.append(note)
        self.profile_box.children = children
        self.use_rank_button.description = f"use rank {self._use_rank}"
        self.use_rank_button.layout.display = None

    def _use_estimated_rank(self):
        self.rank_slider.value = self._use_rank
        self.refit()

    def _save(self):
        path = self.peek.save(self.save_path.value)
        self.show_status(f"factors saved to <code>{path}</code>")
