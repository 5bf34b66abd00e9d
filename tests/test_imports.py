"""Import hygiene: headless stages load no widget library, and no module imports another that
imports it back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "peekwidgets"
WIDGET_LIBRARIES = ("ipywidgets", "bqplot", "anywidget")


@pytest.mark.parametrize("module", ["peekwidgets", "peekwidgets.engine", "peekwidgets.capture",
                                    "peekwidgets.analysis", "peekwidgets.report",
                                    "peekwidgets.session", "peekwidgets.demo",
                                    "peekwidgets.cli", "peekwidgets.analyze",
                                    "peekwidgets.gather", "peekwidgets.saved"])
def test_headless_modules_load_no_widget_library(module):
    code = (f"import sys, {module}; "
            f"print([m for m in {WIDGET_LIBRARIES!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"{module} loads {done.stdout.strip()}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, modules: set) -> set:
    """The package's modules that ``path`` imports anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from pkg import sub` reads the submodule; `from mod import name` reads mod
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
            targets = subs if len(subs) == len(node.names) else [base, *subs]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def test_no_import_cycles():
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(path, name, set(files)) for name, path in files.items()}

    def cycle_from(start):
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return path + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = [c for c in map(cycle_from, graph) if c]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
