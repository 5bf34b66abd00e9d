"""Fixtures shared by several test files."""

import socket

import pytest


@pytest.fixture(scope="session")
def free_port():
    """A function that returns a TCP port free on 127.0.0.1 (for a test server)."""

    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return pick
