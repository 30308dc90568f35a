# AIMS Flow — the two commands: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test lint format install install-dev clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Installs are stamped so repeated `make` runs skip pip when pyproject.toml has not changed.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## demo: install, initialise the embedded SQLite database, load the demo organisation, show it
demo: install
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/aims init
	$(BIN)/aims demo load

## test: install with dev extras, lint, run the whole test suite
test: install-dev lint
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/pytest -q $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .aims .pytest_cache .ruff_cache *.egg-info
