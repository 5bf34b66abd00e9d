"""The ``peekwidgets`` command: argument errors, the installed entry point, and the server."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from servers import serving

from peekwidgets.cli import main, start_voila


def _run_main(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: COMMAND"),
        (["serve"], "invalid choice: 'serve'"),
        (["demo", "--rank", "0"], "--rank must be between 1 and 50, got 0"),
        (["demo", "--rank", "two"], "--rank must be an integer, got 'two'"),
        (["demo", "--port", "70000"], "--port must be between 1 and 65535, got 70000"),
        (["demo", "--samples", "3"], "--samples must be between 10 and 500, got 3"),
        (["demo", "--headless", "--samples", "20", "--max-rank", "30"],
         "--samples 20 must be at least"),
        (["demo", "--rank", "8"], "--rank size the --headless report; the served dashboard"),
        (["demo", "--samples", "50", "--max-rank", "4"],
         "--samples, --max-rank size the --headless report"),
        (["demo", "--unknown"], "unrecognized arguments: --unknown"),
        (["demo", "--out", "report"], "--out names the report folder of --headless"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(capsys, argv, message):
    code, err = _run_main(capsys, argv)
    assert code == 2
    assert message in err
    assert "usage: peekwidgets" in err


def test_file_where_a_folder_is_needed_is_refused(capsys, tmp_path):
    a_file = tmp_path / "report.txt"
    a_file.write_text("not a folder")
    code, err = _run_main(capsys, ["demo", "--headless", "--out", str(a_file)])
    assert code == 2 and f"--out {a_file} is a file" in err
    code, err = _run_main(capsys, ["demo", "--headless", "--cache", str(a_file)])
    assert code == 2 and f"--cache {a_file} is a file" in err


def test_missing_notebook_names_the_alternatives(capsys, tmp_path):
    code, err = _run_main(capsys, ["demo", "--notebook", str(tmp_path / "none.ipynb")])
    assert code == 2
    assert "none.ipynb' not found" in err and "--headless" in err


def test_the_served_dashboard_writes_into_the_folder_the_demo_runs_from(tmp_path, monkeypatch):
    from peekwidgets import cli

    started = {}

    class Stopped:  # a server that ends at once
        def wait(self):
            return 0

    def fake_start(notebook, port, **kwargs):
        started.update(kwargs["env"])
        return Stopped()

    monkeypatch.setattr(cli, "start_voila", fake_start)
    monkeypatch.setattr(cli, "wait_ready", lambda server, port: False)
    monkeypatch.setattr(cli, "stop_server", lambda server: None)
    monkeypatch.chdir(tmp_path)
    assert cli._serve(cli.demo_notebook(), 8999, tmp_path / "cache") == 0
    assert started["PEEKWIDGETS_OUTPUT"] == str(tmp_path)  # not the package's notebooks folder
    assert started["PEEKWIDGETS_CACHE"] == str(tmp_path / "cache")


def test_busy_port_fails_before_training(capsys, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["demo", "--port", str(port), "--cache", str(tmp_path)])
    assert code == 1
    assert f"port {port} on 127.0.0.1 is in use; pass another one with --port" in (
        capsys.readouterr().err)
    assert not any(tmp_path.iterdir()), "nothing may be trained when the server cannot start"


def test_installed_entry_point_reports_bad_arguments():
    script = Path(sys.executable).with_name("peekwidgets")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "peekwidgets.cli"]
    done = subprocess.run(command + ["demo", "--port", "x"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "--port must be an integer, got 'x'" in done.stderr


def _kernels(server: subprocess.Popen) -> int:
    """Kernel processes the server runs now (shut-down kernels not yet reaped don't count)."""
    import psutil

    count = 0
    for child in psutil.Process(server.pid).children(recursive=True):
        try:
            count += "ipykernel" in " ".join(child.cmdline())
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            pass
    return count


@pytest.mark.slow
def test_voila_shuts_down_the_kernels_of_pages_left(tmp_path):
    """Ten page loads, then nobody connected: at most 2 kernels remain once they idle out."""
    notebook = tmp_path / "tiny.ipynb"
    notebook.write_text(json.dumps({
        "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                   "source": ["print('hello')"]}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                    "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5}))
    with serving(lambda port, **kw: start_voila(notebook, port, idle_timeout=4, **kw),
                 tmp_path / "voila.log", "Voilà", "/voila/static/favicon.ico") as (url, server):
        for _ in range(10):
            with urllib.request.urlopen(url + "/", timeout=120) as r:
                assert r.status == 200
        deadline = time.monotonic() + 60
        while _kernels(server) > 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert _kernels(server) <= 2
