# AIMS Flow — the two commands: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PYTEST_ARGS ?=
# pytest-xdist workers (auto: one per core); the engine's tests share one worker and one engine.
PYTEST_WORKERS ?= auto

.PHONY: demo test bench bench-readme reliability-doc lint contract format install install-dev clean

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

## demo: install, then the engine (`aims up`) with the demo organisation and a scripted day to
## watch in the Prefect UI; runs until Ctrl-C. DEMO_EXIT=1 stops after the day (CI);
## DEMO_ARGS="--fake-slack" prints the Slack messages a local fake Slack receives.
DEMO_EXIT ?=
DEMO_ARGS ?=
demo: install
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/aims demo run \
		$(if $(filter 1 true yes,$(DEMO_EXIT)),--exit) $(DEMO_ARGS)

## test: install with dev extras, lint (with the import contract), run the whole test suite
test: install-dev lint
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/pytest -q -n $(PYTEST_WORKERS) \
		--dist loadgroup --durations=40 $(PYTEST_ARGS)

## bench: the benchmarks (never part of test or CI): sizes S and M on SQLite and PostgreSQL,
## each figure against a baseline measured in the same run; prints a table and writes
## bench/results/latest.json (~15 min). BENCH_ARGS="--sizes S,M,L --decisions 200" for more.
BENCH_ARGS ?=
$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-dev
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $@

bench: $(VENV)/.installed-bench
	PY=$(BIN)/python PREFECT_SERVER_ANALYTICS_ENABLED=false bash bench/run.sh $(BENCH_ARGS)

## bench-readme: publish bench/results/latest.json as the README's table of figures
bench-readme: install-dev
	$(BIN)/python -m bench.readme_table

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

## contract: the architecture's import contract alone (docs/ARCHITECTURE.md)
contract: install-dev
	$(BIN)/lint-imports

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .aims .pytest_cache .ruff_cache *.egg-info

## reliability-doc: publish the reliability suite's results (.aims/reliability/latest.json, written
## by `make test`) as RELIABILITY.md
reliability-doc: install-dev
	$(BIN)/python tests/reliability.py publish
