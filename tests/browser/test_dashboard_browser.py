"""The dashboard in a real browser: Voilà serves dashboard.ipynb, Playwright drives Chromium.

Clicks a component-map cell and checks that the gallery and the layer response change,
clicks a gallery tile and checks the sample map's selection, refits from the controls, all
with no page JavaScript errors. Screenshots go to ``artifacts/browser/`` (kept after the run).
"""

from __future__ import annotations

import re

import pytest
from helpers import (
    ARTIFACTS,
    N_TILES,
    click_component_and_expect_update,
    expect,
    expect_dashboard_ready,
    gallery_tiles,
    layer_caption,
    local_page,
    skip_without_chromium,
)

pytestmark = pytest.mark.browser
skip_without_chromium()


def test_click_component_cell_updates_gallery_and_layer_response(voila_url, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with local_page() as (page, errors):
        page.goto(voila_url + "/", timeout=60_000)
        expect_dashboard_ready(page)
        tiles = gallery_tiles(page)
        page.screenshot(path=str(ARTIFACTS / "dashboard_initial.png"), full_page=True)

        # the keyboard reaches the block: Tab to the layer response's dropdown, then arrows
        pick = page.locator(".peek-layer-response select").first
        pick.focus()
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Tab")
        assert pick.evaluate("e => getComputedStyle(e).outlineStyle") == "solid"  # a ring
        before = layer_caption(page).inner_text()
        page.keyboard.press("ArrowDown")
        expect(layer_caption(page)).not_to_have_text(before)
        click_component_and_expect_update(page)
        page.mouse.move(2, 2)  # no tooltip in the picture
        page.screenshot(path=str(ARTIFACTS / "dashboard_component3.png"), full_page=True)

        tiles.nth(1).click()  # select one input
        expect(page.locator(".peek-sample-map")).to_contain_text("1 selected samples")
        # a top tile is a tab stop named by its tooltip; the selection's tile has no action
        expect(tiles.nth(1)).to_have_attribute("tabindex", "0")
        expect(tiles.nth(1)).to_have_attribute("aria-label", re.compile(r"^sample \d+, loading"))
        chosen = page.locator(".peek-gallery .peek-selection-tile button")
        expect(chosen).to_have_count(1)
        expect(chosen).to_have_attribute("tabindex", "-1")
        assert page.locator(".peek-error").is_hidden()
        page.mouse.move(2, 2)
        page.screenshot(path=str(ARTIFACTS / "dashboard_selected.png"), full_page=True)

        page.locator(".peek-refit").click()  # refit (same settings), progress in the panel
        expect(page.locator(".peek-controls")).to_contain_text("converged in", timeout=120_000)
        expect(layer_caption(page)).to_contain_text("component 3")  # the state survives a refit
        expect(tiles).to_have_count(N_TILES)
        assert page.locator(".peek-error").is_hidden()
        page.screenshot(path=str(ARTIFACTS / "dashboard_refit.png"), full_page=True)

        # Export writes the folder on the kernel's side and offers it to the browser as a zip
        folder = page.locator(".peek-controls .widget-text input").first
        folder.fill(str(tmp_path / "exported"))
        folder.press("Enter")
        page.locator(".peek-export").click()
        link = page.locator(".peek-downloads a")
        expect(link).to_contain_text("exported.zip", timeout=60_000)
        with page.expect_download() as download:
            link.click()
        assert download.value.suggested_filename == "exported.zip"
        download.value.save_as(ARTIFACTS / "exported.zip")
        assert (tmp_path / "exported" / "dashboard.html").is_file()
    assert errors == [], f"JavaScript errors on the page: {errors}"
