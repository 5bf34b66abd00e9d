"""Fixtures of the browser tests."""

from __future__ import annotations

import pytest
from helpers import NOTEBOOK
from servers import serving

from peekwidgets.cli import start_voila


@pytest.fixture(scope="module")
def voila_url(tmp_path_factory):
    """The address of Voilà serving dashboard.ipynb (one server per test module)."""
    log = tmp_path_factory.mktemp("voila") / "voila.log"
    # the favicon, not "/": every GET of "/" starts a kernel
    with serving(lambda port, **kw: start_voila(NOTEBOOK, port, **kw), log, "Voilà",
                 "/voila/static/favicon.ico") as (url, _):
        yield url
