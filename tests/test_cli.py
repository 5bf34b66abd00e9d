"""The ``peekwidgets`` command: argument errors, the installed entry point, and the server."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from peekwidgets.cli import main


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
        (["demo", "--samples", "20", "--max-rank", "30"], "--samples 20 must be at least"),
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
