"""The dashboard in real front ends (Chromium): nothing clipped at 900, 1366 and 1920 px in
Voilà, Notebook 7 and JupyterLab 4 with its side panel open (light and dark theme), and no
page or SVG errors; readable text in both themes; a click answered while a refit runs, and
Cancel.

The notebook is ``frontends.ipynb``: the dashboard of a small digits CNN whose later refits
run until cancelled. Screenshots go to ``artifacts/browser/`` (``frontend_*.png``).
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import (
    ARTIFACTS,
    component_cells,
    expect,
    layer_caption,
    local_page,
    skip_without_chromium,
)
from servers import serving, start_jupyter

pytestmark = pytest.mark.browser
skip_without_chromium()

NOTEBOOK = VOILA_NOTEBOOK = Path(__file__).with_name("frontends.ipynb")
VIEWS = (".peek-component-map", ".peek-layer-response", ".peek-gallery", ".peek-sample-map",
         ".peek-controls")
RANK, N_BLOCKS = 6, 5
WIDTHS = [900, 1366, 1920]

#: Notebook 7.6 throws this once as it opens a notebook: its keyboard-shortcut settings race the
#: document manager's (jupyter/notebook issue 7862); the page works on.
NOTEBOOK7_SHORTCUTS_RACE = ("Cannot read properties of undefined (reading 'schema')",
                            "/static/notebook/notebook_core.")

#: Every dashboard part whose content is wider than its box (clipped or scrolled), with both
#: widths; and the page's own horizontal overflow.
OVERFLOW = """(selectors) => {
  const name = e => e.className.split(' ').find(c => c.startsWith('peek-'))
                    || `${e.tagName.toLowerCase()} "${e.textContent.trim()}"`;
  const parts = [document.querySelector('.peek-dashboard'),
                 ...selectors.flatMap(s => [...document.querySelectorAll(s)])];
  const wide = parts.filter(e => e && e.scrollWidth > e.clientWidth + 1)
                    .map(e => `${name(e)}: ${e.scrollWidth} > ${e.clientWidth}`);
  const dash = document.querySelector('.peek-dashboard').getBoundingClientRect();
  const outside = selectors.flatMap(s => [...document.querySelectorAll(s)])
      .filter(e => e.getBoundingClientRect().right > dash.right + 1)
      .map(e => `${name(e)} ends outside`);
  return wide.concat(outside);
}"""

#: Figures wider, with their margins, than the box they sit in while above their minimum
#: width: the box scrolls sideways (a scroll bar where the system shows them) for no content.
FIGURES_OUTGROW = """() => [...document.querySelectorAll('.peek-dashboard .bqplot.figure')]
  .filter(e => {
    const s = getComputedStyle(e), width = e.getBoundingClientRect().width;
    const outer = width + parseFloat(s.marginLeft) + parseFloat(s.marginRight);
    return outer > e.parentElement.clientWidth + 1 && width > parseFloat(s.minWidth) + 1;
  })
  .map(e => e.closest('[class*="peek-"]').className.match(/peek-[a-z-]+/)[0])
  .map(view => `figure in ${view} outgrows its box`)"""

#: WCAG contrast ratio of an element's text against the first opaque background behind it.
CONTRAST = """(el) => {
  const rgb = s => s.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  let node = el, bg = null;
  while (node && node.nodeType === 1) {
    const c = getComputedStyle(node).backgroundColor;
    const v = rgb(c);
    if (v.length < 4 || v[3] > 0.5) { if (!c.includes('rgba(0, 0, 0, 0)')) { bg = v; break; } }
    node = node.parentElement;
  }
  bg = bg || [255, 255, 255];
  const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(bg)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""


def expect_dashboard(page, timeout: float = 300_000):
    expect(component_cells(page).first).to_be_visible(timeout=timeout)
    expect(component_cells(page)).to_have_count(RANK * N_BLOCKS)
    expect(layer_caption(page)).to_contain_text("component")
    for selector in VIEWS:
        expect(page.locator(selector).first).to_be_visible()
    page.wait_for_timeout(1500)  # figures laid out


def assert_nothing_clipped(page, where: str):
    wide = page.evaluate(OVERFLOW, [*VIEWS, ".peek-tiles button"])  # and the tiles' captions
    wide += page.evaluate(FIGURES_OUTGROW)
    assert wide == [], f"{where}: {wide}"


def at_every_width(page, height: int):
    """Give the window each of ``WIDTHS`` in turn; yield the width once the views reflowed."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(1500)  # figures laid out again
        yield width


def svg_errors(page) -> list[str]:
    """A list that collects the page's console errors about SVG attributes: bqplot drawing a
    hidden figure gives rects a negative width, and a figure view left behind (or a label of
    a unit its scale no longer holds) places marks at NaN."""
    found = []
    page.on("console", lambda m: found.append(m.text)
            if m.type == "error" and "attribute" in m.text
            and ("negative value" in m.text or "NaN" in m.text) else None)
    return found


@pytest.mark.parametrize("width", WIDTHS)
def test_voila_at_every_width_nothing_clipped_no_console_errors(voila_url, width):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with local_page(width=width, height=2400) as (page, errors):
        svg = svg_errors(page)
        page.goto(voila_url + "/", timeout=120_000)
        expect_dashboard(page)
        assert_nothing_clipped(page, f"Voilà at {width} px")
        page.locator(".peek-dashboard").screenshot(
            path=str(ARTIFACTS / f"frontend_voila_{width}.png"))
        if width == 1366:  # the layer response through its modes: bars of 64 and 10 units,
            for row in (3, 4, 0, 4, 1, 4, 3):  # an image, channels and a map
                component_cells(page).nth(row * RANK + 2).click()
                page.wait_for_timeout(600)
    assert errors == [], f"JavaScript errors: {errors}"
    assert svg == [], f"SVG errors in the console: {svg}"


def test_voila_click_answered_during_a_refit_then_cancel(voila_url):
    with local_page(width=1366, height=2400) as (page, errors):
        page.goto(voila_url + "/", timeout=120_000)
        expect_dashboard(page)
        status = page.locator(".peek-status")
        page.locator(".peek-refit").click()
        expect(status).to_contain_text("sweep", timeout=60_000)  # the refit runs
        component_cells(page).nth(2 * RANK + 3).click()
        expect(layer_caption(page)).to_contain_text("component 3")
        expect(status).to_contain_text("sweep")  # answered while the refit still runs
        page.locator(".peek-cancel").click()
        expect(status).to_contain_text("interrupted after", timeout=60_000)
        expect(page.locator(".peek-cancel")).to_be_hidden()
    assert errors == [], f"JavaScript errors: {errors}"


def _jupyter(tmp_path_factory, app: str, theme: str | None = None):
    """Serve a copy of the notebook with JupyterLab (``app="jupyterlab"``) or Notebook 7
    (``"notebook"``)."""
    root = tmp_path_factory.mktemp(f"{app}-root")
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    home = tmp_path_factory.mktemp(f"{app}-home")
    return serving(lambda port, **kw: start_jupyter(root, home, port, app, theme, **kw),
                   home / f"{app}.log", app, "/api")


def _kernel_idle(url: str) -> bool:
    """Whether the server's one session has a kernel, and it is idle (the REST API says)."""
    with urllib.request.urlopen(f"{url}/api/sessions", timeout=10) as answer:
        sessions = json.load(answer)
    return bool(sessions) and sessions[0]["kernel"]["execution_state"] == "idle"


def _run_all(page, url: str, app: str):
    """Open the notebook in ``app`` and run all its cells once its kernel is idle.

    "Run All Cells" sent before the page holds a kernel is dropped (or asks for one), and the
    front ends' kernel status may read "Idle" before any kernel is there (Notebook 7's does):
    the server is asked instead, and the command is sent again until a cell shows it queued or
    run (``[*]:``, ``[1]:``).
    """
    path = "lab/tree" if app == "jupyterlab" else "notebooks"
    page.goto(f"{url}/{path}/{NOTEBOOK.name}?reset", timeout=120_000)
    deadline = time.monotonic() + 180
    while not _kernel_idle(url):
        assert time.monotonic() < deadline, f"{app}: the notebook's kernel did not become idle"
        page.wait_for_timeout(500)
    started = page.locator(".jp-InputArea-prompt").filter(has_text=re.compile(r"\[(\*|\d+)\]"))
    for attempt in range(3):
        page.keyboard.press("Escape")  # a kernel dialog the last try opened, if any
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).first.click()
        try:
            expect(started.first).to_be_visible(timeout=10_000)
            return
        except AssertionError:
            if attempt == 2:
                raise


@pytest.mark.parametrize("theme", ["JupyterLab Light", "JupyterLab Dark"])
def test_jupyterlab_with_side_panel_open_readable_in_both_themes(tmp_path_factory, theme):
    name = theme.split()[-1].lower()
    with _jupyter(tmp_path_factory, "jupyterlab", theme) as (url, _), \
            local_page(width=1366, height=768) as (page, errors):
        svg = svg_errors(page)
        _run_all(page, url, "jupyterlab")
        expect(page.locator(".jp-FileBrowser")).to_be_visible()  # the side panel is open
        expect_dashboard(page)
        assert_nothing_clipped(page, f"JupyterLab {name} at 1366 px with the file browser")
        for selector in (".peek-dashboard .widget-html-content div",
                         ".peek-status div", ".peek-component-map .tick text"):
            text = page.locator(selector).first
            ratio = page.evaluate(CONTRAST, text.element_handle())
            assert ratio >= 3.0, f"{selector} in {theme}: contrast {ratio:.2f}"
        page.screenshot(path=str(ARTIFACTS / f"frontend_jupyterlab_{name}.png"))
        for width in at_every_width(page, 768):
            assert_nothing_clipped(page, f"JupyterLab {name} at {width} px with the file browser")
    assert errors == [], f"JavaScript errors: {errors}"
    assert svg == [], f"SVG errors in the console: {svg}"


def test_notebook7_at_every_width_nothing_clipped(tmp_path_factory):
    """One run of the notebook; the window takes each width in turn and the views reflow."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with _jupyter(tmp_path_factory, "notebook") as (url, _), \
            local_page(width=WIDTHS[0], height=1400,
                       known_errors=[NOTEBOOK7_SHORTCUTS_RACE]) as (page, errors):
        svg = svg_errors(page)
        _run_all(page, url, "notebook")
        expect_dashboard(page)
        for width in at_every_width(page, 1400):
            assert_nothing_clipped(page, f"Notebook 7 at {width} px")
            page.locator(".peek-dashboard").evaluate("e => e.scrollIntoView()")
            page.mouse.move(2, 2)  # no tooltip in the picture
            page.screenshot(path=str(ARTIFACTS / f"frontend_notebook7_{width}.png"))
    assert errors == [], f"JavaScript errors: {errors}"
    assert svg == [], f"SVG errors in the console: {svg}"
