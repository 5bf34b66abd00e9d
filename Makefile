# Two entry points: `make demo` (the main job) and `make test` (the whole suite).
# Both create .venv when it is missing and install the package into it, editable, with its test extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/peekwidgets: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(BIN)/peekwidgets
	$(BIN)/peekwidgets demo

test: $(BIN)/peekwidgets
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(BIN)/peekwidgets
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
