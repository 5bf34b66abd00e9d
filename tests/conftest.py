"""Settings shared by the whole suite (servers.py holds the test-server helpers)."""

import pytest


def pytest_collection_modifyitems(config, items):
    """A browser test takes well over 10 s (a server, a kernel, Chromium): every one is slow."""
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)
