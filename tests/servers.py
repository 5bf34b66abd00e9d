"""Test servers on 127.0.0.1 without port races: a port is tried, and another one when the
server exits before it answers (another process took the port in between)."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from peekwidgets.cli import stop_server, wait_ready

_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now and not handed to another test of this session."""
    for _ in itertools.count():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise AssertionError("unreachable")


@contextmanager
def serving(start, log: Path, name: str, path: str, timeout: float = 120, attempts: int = 3):
    """Start a server with ``start(port, stdout=..., stderr=...)`` on a free port, wait until
    ``path`` answers, yield ``(address, process)``, and stop it (SIGTERM, then kill) however the
    block ends. A server that exits before it answers is started again on another port."""
    for attempt in range(attempts):
        port = free_port()
        with open(log, "w") as out:
            proc = start(port, stdout=out, stderr=subprocess.STDOUT)
        if wait_ready(proc, port, timeout=timeout, path=path):
            break
        stop_server(proc, grace=15)
        if proc.poll() is None or attempt == attempts - 1:
            pytest.fail(f"{name} did not start:\n{log.read_text()[-3000:]}")
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        stop_server(proc, grace=15)


def start_demo(cache: Path, attempts: int = 3, **popen_kwargs):
    """``(proc, address)`` of ``python -m peekwidgets demo`` serving on a free port; another
    port is tried when the server exits before printing its address. ``popen_kwargs`` (``env``,
    ``cwd``) go to :class:`subprocess.Popen`."""
    env = {**os.environ, **popen_kwargs.pop("env", {}), "PYTHONUNBUFFERED": "1"}
    lines = []
    for _ in range(attempts):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "peekwidgets", "demo", "--port", str(port),
             "--cache", str(cache)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            **popen_kwargs,
        )
        address = f"http://127.0.0.1:{port}/"
        for line in proc.stdout:
            lines.append(line)
            if f"peekwidgets dashboard: {address}" in line:
                return proc, address
        proc.wait()
    pytest.fail("the demo exited without serving:\n" + "".join(lines))


#: JupyterLab / Notebook 7 settings for the tests: no news or update checks (they would pop up a
#: notification and ask the internet).
JUPYTER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
}


def start_jupyter(root: Path, home: Path, port: int, app: str = "jupyterlab",
                  theme: str | None = None, **popen_kwargs) -> subprocess.Popen:
    """Start JupyterLab (``app="jupyterlab"``) or Notebook 7 (``"notebook"``) on
    127.0.0.1:``port`` serving ``root``, without a token.

    Its configuration, runtime, settings and workspaces folders go under ``home``, with
    ``JUPYTER_SETTINGS`` and, when given, the ``theme`` (for example ``"JupyterLab Dark"``), so
    the user's own setup neither changes the test nor is changed by it. ``popen_kwargs`` go to
    :class:`subprocess.Popen`.
    """
    env = dict(os.environ)
    for variable, name in [("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                           ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                           ("JUPYTERLAB_WORKSPACES_DIR", "workspaces")]:
        env[variable] = str(home / name)
        (home / name).mkdir(parents=True, exist_ok=True)
    settings = dict(JUPYTER_SETTINGS)
    if theme is not None:
        settings["@jupyterlab/apputils-extension/themes.jupyterlab-settings"] = {"theme": theme}
    for name, values in settings.items():
        path = home / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    command = [
        sys.executable, "-m", app, "--no-browser", f"--port={port}",
        "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0", "--ServerApp.allow_root=True",
        "--IdentityProvider.token=", f"--ServerApp.root_dir={root}",
    ]
    return subprocess.Popen(command, env=env, **popen_kwargs)
