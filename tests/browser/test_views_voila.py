"""The linked views in a real browser (Voilà serves dashboard.ipynb, Playwright drives Chromium).

Every cell of the component map selects its component and block, the top-right ones too (no
hover toolbar in the way); no page JavaScript errors. Screenshots go to ``artifacts/browser/``.
"""

from __future__ import annotations

import re

import pytest
from helpers import (
    ARTIFACTS,
    BLOCK_NAMES,
    NOTEBOOK,
    RANK,
    component_cells,
    expect,
    expect_dashboard_ready,
    layer_caption,
    local_page,
    skip_without_chromium,
)
from servers import serving

from peekwidgets.cli import start_voila

pytestmark = pytest.mark.browser
skip_without_chromium()


@pytest.fixture(scope="module")
def voila_url(tmp_path_factory):
    log = tmp_path_factory.mktemp("voila") / "voila.log"
    with serving(lambda port, **kw: start_voila(NOTEBOOK, port, **kw), log, "Voilà",
                 "/voila/static/favicon.ico") as url:
        yield url


def test_every_component_map_cell_selects_its_component(voila_url):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with local_page() as (page, errors):
        page.goto(voila_url + "/", timeout=60_000)
        expect_dashboard_ready(page)
        cells = component_cells(page)
        caption = layer_caption(page)
        for row, name in enumerate(BLOCK_NAMES):
            for col in range(RANK):
                cells.nth(row * RANK + col).click()
                expect(caption).to_contain_text(
                    re.compile(rf"^{re.escape(name)} · .* component {col} "), timeout=20_000)
        assert page.locator(".peek-error").is_hidden()
        page.mouse.move(2, 2)
        page.screenshot(path=str(ARTIFACTS / "views_every_cell.png"), full_page=True)
    assert errors == [], f"JavaScript errors on the page: {errors}"
