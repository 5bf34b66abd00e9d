"""Shared pieces of the browser tests: Chromium, a page kept on 127.0.0.1, the dashboard's checks.

The checks select the dashboard's parts by the CSS classes the widgets carry, so the same
functions drive the dashboard whether Voilà or JupyterLab renders it.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright import sync_api

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HERE = Path(__file__).parent
NOTEBOOK = HERE / "dashboard.ipynb"
ARTIFACTS = HERE.parents[1] / "artifacts" / "browser"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               "--disable-quic"]
RANK, N_BLOCKS, N_TILES = 6, 5, 12  # dashboard.ipynb: rank 6, input + 4 layers, 12 gallery tiles
BLOCK_NAMES = ["input", "relu1", "relu2", "relu3", "fc2"]  # DigitsCNN's blocks, forward order

expect = sync_api.expect


def skip_without_chromium() -> None:
    """Skip the calling test module (call it at module level) when Chromium is not installed."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(
            "Chromium is not installed (/usr/bin/chromium); install it with "
            "`apt-get install -y chromium` (.ci/run does) to run the browser tests",
            allow_module_level=True,
        )


@contextmanager
def local_page(width: int = 1240, height: int = 1300, known_errors=()):
    """Yield ``(page, errors)``: a headless Chromium page whose requests beyond 127.0.0.1 and
    local files abort.

    ``errors`` collects the page's uncaught JavaScript errors; assert it is empty at the end.
    ``known_errors`` holds ``(message, script)`` pairs of front-end bugs outside this project: an
    error with that message thrown from a script whose address holds ``script`` is left out.
    """
    errors: list[str] = []

    def on_error(exc):
        if not any(message in exc.message and script in (exc.stack or "")
                   for message, script in known_errors):
            errors.append(str(exc))

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            context.route(lambda url: not url.startswith(("http://127.0.0.1", "file://")),
                          lambda route: route.abort())
            page = context.new_page()
            page.on("pageerror", on_error)
            yield page, errors
        finally:
            browser.close()


def component_cells(page):
    """The component map's heatmap cells, row by row (block), ``RANK`` per row."""
    return page.locator(".peek-component-map rect.heatmapcell")


def gallery_tiles(page):
    """The input gallery's tile buttons."""
    return page.locator(".peek-gallery .peek-tile button")


def layer_caption(page):
    """The layer response's caption (names the block and the component shown)."""
    return page.locator(".peek-layer-caption")


def expect_dashboard_ready(page, timeout: float = 180_000) -> None:
    """Wait until every cell ran: the map, component 0 of the input, the folded-in inputs."""
    cells = component_cells(page)
    expect(cells.first).to_be_visible(timeout=timeout)
    expect(cells).to_have_count(RANK * N_BLOCKS)
    expect(gallery_tiles(page)).to_have_count(N_TILES)
    expect(layer_caption(page)).to_contain_text("component 0")
    expect(page.locator(".peek-pattern")).to_be_visible()  # the input block, drawn as an image
    expect(page.locator(".peek-gallery")).to_contain_text("new inputs", timeout=timeout)


def click_component_and_expect_update(page) -> None:
    """Click the map cell of row 2 (a conv block, 16 channels), component 3; the views follow.

    The layer response shows that block's channels as bars instead of the input's image, and
    the gallery's tiles show other inputs.
    """
    tiles = gallery_tiles(page)
    caption = layer_caption(page)
    before = tiles.all_inner_texts()
    component_cells(page).nth(2 * RANK + 3).click()
    expect(caption).to_contain_text("component 3")
    expect(caption).to_contain_text("tensor")
    figures = page.locator(".peek-layer-tensor svg.svg-figure")
    expect(figures).to_have_count(2)  # channel bars and spatial map, drawn once laid out
    for figure in figures.all():
        expect(figure).to_be_visible()
    expect(page.locator(".peek-layer-tensor rect.bar")).to_have_count(16)  # conv channels
    expect(page.locator(".peek-pattern")).to_be_hidden()
    expect(tiles.first).not_to_have_text(before[0])
    after = tiles.all_inner_texts()
    assert after != before and all(t.startswith("#") for t in after)
