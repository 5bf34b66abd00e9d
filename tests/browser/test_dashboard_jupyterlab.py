"""The dashboard in JupyterLab 4: Run All Cells on dashboard.ipynb in Chromium, then click it.

JupyterLab runs on 127.0.0.1 with its configuration, runtime, settings and workspaces in a
temporary folder and a temporary copy of the notebook as its root, so the user's own setup
neither changes the test nor is changed by it. Clicking a component-map cell must change the
gallery and the layer response, with no page JavaScript errors. The screenshot goes to
``artifacts/browser/jupyterlab.png``.
"""

from __future__ import annotations

import shutil

import pytest
from helpers import (
    ARTIFACTS,
    NOTEBOOK,
    click_component_and_expect_update,
    expect,
    expect_dashboard_ready,
    local_page,
    skip_without_chromium,
)
from servers import serving, start_jupyter

pytestmark = pytest.mark.browser
skip_without_chromium()


@pytest.fixture(scope="module")
def lab_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab-root")
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    home = tmp_path_factory.mktemp("lab-home")
    # /api starts no kernel
    with serving(lambda port, **kw: start_jupyter(root, home, port, **kw),
                 home / "jupyterlab.log", "JupyterLab", "/api") as (url, _):
        yield url


def test_run_all_then_click_component_cell_in_jupyterlab(lab_url):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with local_page(width=1700, height=1500) as (page, errors):
        page.goto(f"{lab_url}/lab/tree/{NOTEBOOK.name}?reset", timeout=120_000)
        # "Run All Cells" sent before the kernel is idle is silently dropped
        kernel = page.get_by_title(f"Change kernel for {NOTEBOOK.name}")
        expect(kernel).to_contain_text("Python 3 (ipykernel) | Idle", timeout=180_000)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.locator("#jp-mainmenu-run").get_by_text("Run All Cells", exact=True).click()

        expect_dashboard_ready(page, timeout=300_000)
        click_component_and_expect_update(page)
        page.mouse.move(2, 2)  # no tooltip in the picture
        page.screenshot(path=str(ARTIFACTS / "jupyterlab.png"))
    assert errors == [], f"JavaScript errors on the page: {errors}"
