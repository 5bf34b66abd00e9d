"""The headless report: matplotlib figures of an analysis and the report folder writer.

Importing it loads neither ipywidgets nor bqplot, so it runs on servers without them.
"""

from peekwidgets.report.figures import (
    plot_checkpoint_criteria,
    plot_component_map,
    plot_layer_response,
    plot_rank_profiles,
    plot_top_inputs,
)
from peekwidgets.report.writer import write_demo_report, write_report

__all__ = [
    "plot_checkpoint_criteria",
    "plot_component_map",
    "plot_layer_response",
    "plot_rank_profiles",
    "plot_top_inputs",
    "write_demo_report",
    "write_report",
]
