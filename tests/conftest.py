"""Settings shared by the whole suite (servers.py holds the test-server helpers)."""

import pytest


def pytest_collection_modifyitems(config, items):
    """A browser test takes well over 10 s (a server, a kernel, Chromium): every one is slow."""
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def blocks():
    """The widget tests' blocks (``widget_fakes.make_blocks``)."""
    from widget_fakes import make_blocks

    return make_blocks()


@pytest.fixture
def est(blocks):
    """A stand-in fitted estimator for ``blocks`` (``widget_fakes.stand_in``)."""
    from widget_fakes import stand_in

    return stand_in(blocks)


@pytest.fixture
def peek(blocks, est):
    """The dashboard of the stand-in fit."""
    from peekwidgets.widgets import Peek

    return Peek.from_fitted(blocks, est)
