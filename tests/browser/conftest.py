"""Fixtures of the browser tests."""

from __future__ import annotations

import pytest
from helpers import NOTEBOOK
from servers import serving

from peekwidgets.cli import start_voila


@pytest.fixture(scope="module")
def voila_url(request, tmp_path_factory):
    """The address of Voilà serving the test module's ``VOILA_NOTEBOOK`` (dashboard.ipynb by
    default), one server per test module."""
    notebook = getattr(request.module, "VOILA_NOTEBOOK", NOTEBOOK)
    log = tmp_path_factory.mktemp("voila") / "voila.log"
    # the favicon, not "/": every GET of "/" starts a kernel
    with serving(lambda port, **kw: start_voila(notebook, port, **kw), log, "Voilà",
                 "/voila/static/favicon.ico") as (url, _):
        yield url
