"""Standalone HTML pages of widgets that render with no kernel and no network.

:func:`write_page` writes the widgets' state (:mod:`ipywidgets.embed`) into one HTML file
together with every script that draws it: peekwidgets' trimmed widget manager
(``static/embed-manager.js`` and ``.css``, built from ``embed_manager/``: @jupyter-widgets/base
and controls, a plain Output) and the AMD bundles that the other widget libraries install for
Jupyter's classic notebook (``share/jupyter/nbextensions/<module>/index.js`` of bqplot, bqscales,
anywidget), read from the installed packages. The page opens anywhere, online or not.
"""

from __future__ import annotations

import html
import json
import warnings
from importlib import metadata
from pathlib import Path

__all__ = ["amd_bundle", "write_page"]

_STATIC = Path(__file__).parent / "static"
#: Widget modules that the page's manager holds itself.
BUILTIN = {"@jupyter-widgets/base", "@jupyter-widgets/controls", "@jupyter-widgets/output"}

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<title>{title}</title>
<style>
{css}
body {{ margin: 16px; font-family: var(--jp-ui-font-family); font-size: var(--jp-ui-font-size1); }}
/* bqplot's classic bundle sizes a figure at 100% of its box, and the box's margins then
   make every view scroll sideways by 4 px */
.bqplot.figure {{ max-width: calc(100% - 2 * var(--jp-widgets-margin, 2px)); }}
</style>
<script>
{manager}
</script>
{bundles}
</head>
<body>
<script type="application/vnd.jupyter.widget-state+json">
{state}
</script>
{views}
<script>peekEmbed.render();</script>
</body>
</html>
"""
_BUNDLE = '<script>\n(function (define) {{\n{code}\n}})(peekEmbed.definer("{name}"));\n</script>'


def amd_bundle(module: str) -> Path | None:
    """The AMD bundle of widget module ``module`` that its Python distribution of the same
    name installed for the classic notebook (``.../nbextensions/<module>/index.js``), or None."""
    try:
        dist = metadata.distribution(module)
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.as_posix().endswith(f"nbextensions/{module}/index.js"):
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    return None


def write_page(path, views, title: str) -> Path:
    """Write ``views`` (widgets) and every widget they reference as one HTML page at ``path``.

    The page holds all its scripts. When a widget library's bundle is not installed
    (:func:`amd_bundle`), it is written by :func:`ipywidgets.embed.embed_minimal_html`
    instead, which loads the scripts from their public CDN when opened, and a warning names
    the library. Returns ``path``.
    """
    from ipywidgets.embed import (
        dependency_state,
        embed_data,
        embed_minimal_html,
        escape_script,
        widget_view_template,
    )

    path = Path(path)
    state = dependency_state(views, drop_defaults=False)  # anywidget models need their defaults
    modules = {s["model_module"] for s in state.values()} - BUILTIN
    bundles = {m: amd_bundle(m) for m in sorted(modules)}
    missing = [m for m, bundle in bundles.items() if bundle is None]
    if missing:
        warnings.warn(f"{path.name} loads the scripts of {', '.join(missing)} from the internet "
                      "when opened: their installed packages ship no classic-notebook bundle "
                      "(share/jupyter/nbextensions/<name>/index.js)", stacklevel=2)
        embed_minimal_html(path, views=views, state=state, title=title)
        return path
    data = embed_data(views, state=state)
    path.write_text(_PAGE.format(
        title=html.escape(title),
        css=(_STATIC / "embed-manager.css").read_text("utf-8"),
        manager=escape_script((_STATIC / "embed-manager.js").read_text("utf-8")),
        bundles="\n".join(_BUNDLE.format(name=m, code=escape_script(b.read_text("utf-8")))
                          for m, b in bundles.items()),
        state=escape_script(json.dumps(data["manager_state"])),
        views="\n".join(widget_view_template.format(view_spec=escape_script(json.dumps(spec)))
                        for spec in data["view_specs"]),
    ), encoding="utf-8")
    return path
