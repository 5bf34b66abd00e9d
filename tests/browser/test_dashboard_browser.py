"""The dashboard in a real browser: Voilà serves dashboard.ipynb, Playwright drives Chromium.

Clicks a component-map cell and checks that the gallery and the layer response change,
clicks a gallery tile and checks the sample map's selection, refits from the controls, all
with no page JavaScript errors. Screenshots go to ``artifacts/browser/`` (kept after the run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from playwright import sync_api

from peekwidgets.cli import start_voila, stop_server, wait_ready

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HERE = Path(__file__).parent
NOTEBOOK = HERE / "dashboard.ipynb"
ARTIFACTS = HERE.parents[1] / "artifacts" / "browser"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               "--disable-quic"]

if not os.path.exists(CHROMIUM):
    pytest.skip(
        "Chromium is not installed (/usr/bin/chromium); install it with "
        "`apt-get install -y chromium` (.ci/run does) to run the browser tests",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def voila_url(tmp_path_factory, free_port):
    port = free_port()
    log = tmp_path_factory.mktemp("voila") / "voila.log"
    with open(log, "w") as out:
        proc = start_voila(NOTEBOOK, port, stdout=out, stderr=subprocess.STDOUT)
    try:
        if not wait_ready(proc, port):
            pytest.fail(f"Voilà did not start:\n{log.read_text()[-3000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc, grace=15)


def test_click_component_cell_updates_gallery_and_layer_response(voila_url):
    expect = sync_api.expect
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1240, "height": 1300})
            context.route(lambda url: not url.startswith("http://127.0.0.1"),
                          lambda route: route.abort())
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(voila_url + "/", timeout=60_000)

            cells = page.locator(".peek-component-map rect.heatmapcell")
            expect(cells.first).to_be_visible(timeout=180_000)
            n_cells = cells.count()
            assert n_cells == 6 * 5  # 5 blocks (input + 4 layers) x rank 6
            tiles = page.locator(".peek-gallery .peek-tile button")
            expect(tiles).to_have_count(12)
            layer_caption = page.locator(".peek-layer-caption")
            expect(layer_caption).to_contain_text("component 0")
            expect(page.locator(".peek-pattern")).to_be_visible()  # input block: an image
            expect(page.locator(".peek-gallery")).to_contain_text("new inputs")  # fold-in
            page.screenshot(path=str(ARTIFACTS / "dashboard_initial.png"), full_page=True)
            before = tiles.all_inner_texts()

            cells.nth(2 * 6 + 3).click()  # row 2 (a conv block), component 3
            expect(layer_caption).to_contain_text("component 3")
            expect(layer_caption).to_contain_text("tensor")
            expect(page.locator(".peek-layer-tensor")).to_be_visible()
            expect(page.locator(".peek-layer-tensor rect.bar")).to_have_count(16)  # channels
            expect(page.locator(".peek-pattern")).to_be_hidden()
            expect(tiles.first).not_to_have_text(before[0])
            after = tiles.all_inner_texts()
            assert after != before and all(t.startswith("#") for t in after)
            page.mouse.move(2, 2)  # no tooltip in the picture
            page.screenshot(path=str(ARTIFACTS / "dashboard_component3.png"), full_page=True)

            tiles.nth(1).click()  # select one input
            expect(page.locator(".peek-sample-map")).to_contain_text("1 selected samples")
            assert page.locator(".peek-error").is_hidden()
            page.mouse.move(2, 2)
            page.screenshot(path=str(ARTIFACTS / "dashboard_selected.png"), full_page=True)

            page.locator(".peek-refit").click()  # refit (same settings), progress in the panel
            expect(page.locator(".peek-controls")).to_contain_text("fitted in", timeout=120_000)
            expect(layer_caption).to_contain_text("component 3")  # the state survives a refit
            expect(tiles).to_have_count(12)
            assert page.locator(".peek-error").is_hidden()
            page.screenshot(path=str(ARTIFACTS / "dashboard_refit.png"), full_page=True)

            with page.expect_download() as download:  # bqplot's save_png in the browser
                page.get_by_role("button", name="Export figures").click()
            assert download.value.suggested_filename.endswith(".png")
            download.value.save_as(ARTIFACTS / download.value.suggested_filename)
        finally:
            browser.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
