"""The exported dashboard (``Peek.export``) opened from its file in Chromium, with every
request beyond local files aborted: the page holds its scripts and draws every view.

The screenshot goes to ``artifacts/browser/export_page.png``.
"""

from __future__ import annotations

import pytest
from helpers import ARTIFACTS, expect, local_page, skip_without_chromium
from widget_fakes import RANK, make_blocks

from peekwidgets.engine import CoupledCP
from peekwidgets.widgets import Peek

pytestmark = pytest.mark.browser
skip_without_chromium()


def test_exported_page_draws_every_view_with_no_network(tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    blocks = make_blocks()
    peek = Peek.from_fitted(blocks, CoupledCP(RANK, random_state=0).fit(blocks))
    peek.component = 1
    page_file = peek.export(tmp_path / "export") / "dashboard.html"
    top_k = peek.views["gallery"].top_k
    with local_page(width=1366, height=1400) as (page, errors):
        requests, console = [], []
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        page.goto(page_file.as_uri())
        expect(page.locator(".peek-component-map rect.heatmapcell")).to_have_count(
            RANK * len(blocks.names))
        expect(page.locator(".peek-layer-caption")).to_contain_text("component 1")
        expect(page.locator(".peek-pattern")).to_be_visible()  # the input block, as an image
        tiles = page.locator(".peek-gallery .peek-tile-box")
        expect(tiles).to_have_count(top_k)
        assert tiles.locator("canvas").evaluate_all("cs => cs.map(c => c.width)") == [8] * top_k
        captions = peek.views["gallery"].top_grid.captions
        expect(tiles.locator("button")).to_have_text(captions)
        expect(page.locator(".peek-sample-map .dot")).to_have_count(blocks.n_samples)
        # every component thin, the selected one again thick
        expect(page.locator(".peek-traversal path.line")).to_have_count(RANK + 1)
        scrolled = page.evaluate("""() => [...document.querySelectorAll('.widget-box')]
            .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.className)""")
        assert scrolled == [], f"boxes that scroll sideways: {scrolled}"
        page.mouse.move(2, 2)
        page.screenshot(path=str(ARTIFACTS / "export_page.png"), full_page=True)
    assert errors == [] and console == [], f"errors on the page: {errors + console}"
    assert [u for u in requests if not u.startswith(("file:", "data:", "blob:"))] == []
