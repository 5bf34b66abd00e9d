"""The package as a user installs it: a wheel, used from a folder outside any checkout.

The wheel is built from this tree and installed with ``pip install --target`` into a temporary
folder (its dependencies are those of the test environment); every command then runs from
another temporary folder with only that target on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest
from servers import start_demo

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(target folder, wheel path)``: the wheel built from this tree, installed alone."""
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist), str(ROOT)], check=True, timeout=300)
    (wheel,) = dist.glob("peekwidgets-*.whl")
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, timeout=300)
    return target, wheel


def run_outside(target: Path, cwd: Path, *args: str, timeout: float = 600):
    """Run ``python *args`` in ``cwd`` with only the installed wheel on ``PYTHONPATH``."""
    return subprocess.run([sys.executable, *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(target)},
                          capture_output=True, text=True, timeout=timeout)


def test_wheel_ships_license_notebooks_and_metadata(installed):
    _, wheel = installed
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {"peekwidgets/notebooks/quickstart.ipynb",
            "peekwidgets/notebooks/training_quality.ipynb"} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: BSD-3-Clause" in meta
    assert "Project-URL: Source" in meta and "Classifier: Framework :: Jupyter" in meta
    assert "Provides-Extra: demo" in meta and "ipykernel" in meta


def test_installed_package_runs_from_the_wheel_not_the_checkout(installed, tmp_path):
    target, _ = installed
    done = run_outside(target, tmp_path, "-c",
                       "import peekwidgets; print(peekwidgets.__file__, peekwidgets.__version__)")
    assert done.returncode == 0, done.stderr
    where, version = done.stdout.split()
    assert Path(where).is_relative_to(target) and version == "0.1.0"
    done = run_outside(target, tmp_path, "-m", "peekwidgets", "--version")
    assert done.stdout.strip() == "peekwidgets 0.1.0"


def test_headless_demo_from_any_folder(installed, tmp_path):
    target, _ = installed
    out, cache = tmp_path / "report", tmp_path / "cache"
    done = run_outside(target, tmp_path, "-m", "peekwidgets", "demo", "--headless", "--out",
                       str(out), "--cache", str(cache), "--rank", "2", "--samples", "60",
                       "--max-rank", "3")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(summary["files"]) == written and "component_map.png" in written
    assert summary["rank"] == 2 and summary["n_samples"] == 60


def test_demo_serves_the_shipped_notebook_from_any_folder(installed, tmp_path):
    """``peekwidgets demo`` outside a checkout serves the quickstart that ships in the wheel:
    the page answers 200 with the dashboard (not Voila's 500 'No Jupyter kernel'), and
    SIGTERM stops the server with its Voila child."""
    target, _ = installed
    proc, address = start_demo(tmp_path / "cache", env={"PYTHONPATH": str(target)},
                               cwd=tmp_path)
    try:
        with urllib.request.urlopen(address, timeout=300) as r:  # runs the notebook
            assert r.status == 200
            page = r.read().decode()
        assert "peekwidgets quickstart" in page
        assert "held-out accuracy" in page, "the demo model's cell did not run"
        assert "application/vnd.jupyter.widget-view+json" in page, "no dashboard on the page"
        assert "Traceback" not in page
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(OSError):  # the Voila child is gone too
        urllib.request.urlopen(address + "voila/static/favicon.ico", timeout=2)
