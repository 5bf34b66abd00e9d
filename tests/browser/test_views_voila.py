"""The linked views in a real browser (Voilà serves dashboard.ipynb, Playwright drives Chromium).

Every cell of the component map selects its component and block, the top-right ones too (no
hover toolbar in the way); a conv block's spatial map is drawn on the gallery's inputs; hovering
a sample-map point shows its input; a brush shows the selection gallery and the components it
loads on, and clearing removes the brush; no page JavaScript errors. Screenshots go to
``artifacts/browser/`` (``views_*.png``).
"""

from __future__ import annotations

import re

import pytest
from helpers import (
    ARTIFACTS,
    BLOCK_NAMES,
    RANK,
    component_cells,
    expect,
    expect_dashboard_ready,
    layer_caption,
    local_page,
    skip_without_chromium,
)

pytestmark = pytest.mark.browser
skip_without_chromium()

TALL = 2600  # the whole dashboard in the viewport: its screenshots need no scrolling


def dashboard(page):
    return page.locator(".peek-dashboard")


def test_every_component_map_cell_selects_its_component(voila_url):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with local_page(height=TALL) as (page, errors):
        page.goto(voila_url + "/", timeout=60_000)
        expect_dashboard_ready(page)
        page.wait_for_timeout(500)
        dashboard(page).screenshot(path=str(ARTIFACTS / "views_opening.png"))
        cells = component_cells(page)
        caption = layer_caption(page)
        for row, name in enumerate(BLOCK_NAMES):
            for col in range(RANK):
                cells.nth(row * RANK + col).click()
                expect(caption).to_contain_text(
                    re.compile(rf"^{re.escape(name)} · .* component {col} "), timeout=20_000)
        assert page.locator(".peek-error").is_hidden()
        page.mouse.move(2, 2)
        dashboard(page).screenshot(path=str(ARTIFACTS / "views_every_cell.png"))
        cells.nth(1 * RANK + 2).click()  # relu1, a conv block: its map is drawn on the inputs
        expect(caption).to_contain_text(re.compile(r"^relu1 · .* component 2 "))
        expect(page.locator(".peek-gallery .peek-overlay")).to_contain_text("spatial map")
        expect(page.locator(".peek-layer-tensor svg.svg-figure")).to_have_count(2)
        page.wait_for_timeout(500)  # the tiles redraw on the next animation frame
        # every RGB tile fills its canvas (a digit reaches the bottom half too)
        lit = page.evaluate("""() => [...document.querySelectorAll(
            '.peek-gallery .peek-tile canvas')].map(c => {
              const d = c.getContext('2d').getImageData(0, c.height / 2, c.width,
                                                          c.height / 2).data;
              let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2];
              return s > 0; })""")
        assert len(lit) == 12 and all(lit), lit
        page.mouse.move(2, 2)
        dashboard(page).screenshot(path=str(ARTIFACTS / "views_conv.png"))
    assert errors == [], f"JavaScript errors on the page: {errors}"


def test_brush_shows_the_selection_and_hover_shows_the_input(voila_url):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with local_page(height=TALL) as (page, errors):
        page.goto(voila_url + "/", timeout=60_000)
        expect_dashboard_ready(page)
        dot = page.locator(".peek-sample-map .dot").nth(5)  # the hover tool is on
        dot.scroll_into_view_if_needed()
        b = dot.bounding_box()  # other dots may overlap it: move the mouse, no actionability
        page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2)
        hover = page.locator(".peek-hover")
        expect(hover).to_contain_text("label", timeout=20_000)
        expect(hover.locator("img")).to_be_visible()
        box = page.locator(".peek-sample-map").bounding_box()
        page.screenshot(path=str(ARTIFACTS / "views_hover.png"), clip=box)

        page.locator(".peek-sample-map").get_by_role("button", name="brush").click()
        overlay = page.locator(".peek-sample-map rect.overlay").first  # the brush's area
        overlay.scroll_into_view_if_needed()
        box = overlay.bounding_box()
        x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
        page.mouse.move(x0 + 0.3 * w, y0 + 0.1 * h)
        page.mouse.down()
        page.mouse.move(x0 + 0.6 * w, y0 + 0.5 * h, steps=8)
        page.mouse.move(x0 + 0.95 * w, y0 + 0.9 * h, steps=8)
        page.mouse.up()
        expect(page.locator(".peek-gallery")).to_contain_text("selected", timeout=20_000)
        expect(page.locator(".peek-gallery .peek-selection-tile").first).to_be_visible()
        expect(page.locator(".peek-component-map")).to_contain_text("selection of")
        brush = page.locator(".peek-sample-map rect.selection").first
        expect(brush).to_be_visible()
        page.mouse.move(2, 2)
        dashboard(page).screenshot(path=str(ARTIFACTS / "views_selection.png"))

        page.get_by_role("button", name="clear selection").click()
        expect(page.locator(".peek-gallery .peek-selection-tile")).to_have_count(0)
        expect(brush).to_be_hidden()  # the brush rectangle goes with the selection
        assert page.locator(".peek-error").is_hidden()
    assert errors == [], f"JavaScript errors on the page: {errors}"
