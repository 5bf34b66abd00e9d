"""Every notebook in ``notebooks/`` executes top to bottom on the CPU without an error."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted(
    (Path(__file__).resolve().parents[1] / "peekwidgets" / "notebooks").glob("*.ipynb")
)


def test_the_notebooks_are_there():
    names = {p.name for p in NOTEBOOKS}
    assert {"quickstart.ipynb", "training_quality.ipynb", "torchvision_models.ipynb"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path_factory, monkeypatch):
    # one demo cache for the whole session (the CLI tests share it), never the user's own
    monkeypatch.setenv("PEEKWIDGETS_CACHE",
                       str(tmp_path_factory.getbasetemp() / "peekwidgets-demo-cache"))
    monkeypatch.setenv("PEEKWIDGETS_OFFLINE", "1")  # torchvision_models: no weight downloads
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(book, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
