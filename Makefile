# The two commands a newcomer runs: `make demo` and `make test`.
# Each creates its own virtual environment (.venv) and installs what it needs.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: help venv demo test test-quick lint format tox tox-edges bench clean

help:
	@echo "make demo   - set up and run the demo: hub emulator, Celery worker and beat, admin"
	@echo "make test   - ruff; the suite on SQLite, PostgreSQL and MariaDB; packaging; tox edges"
	@echo "make test-quick - the suite on SQLite only"
	@echo "make tox    - run the suite across the Python x Django matrix"
	@echo "make bench  - run the benchmarks in bench/ (PostgreSQL for the last five; Redis and RabbitMQ for broker_down)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The demo needs the app and the example project's extra; the tests need every extra.
$(BIN)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[example]"
	touch $@

$(BIN)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,dev,browser,package]"
	touch $@

venv: $(BIN)/.installed

demo: $(BIN)/.demo-installed
	$(BIN)/python -m example_project.demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Ruff; the suite on SQLite, PostgreSQL and MariaDB in turn (worker tests need Redis, the
# browser tests Chromium); the packaging and Quick start tests (one wheel build for both; the
# Quick start needs Redis too); the oldest and newest Python x Django in tox.
test: lint
	BIN=$(BIN) scripts/test_matrix.sh
	$(BIN)/pytest -m "packaging or quickstart"
	$(MAKE) tox-edges

# The suite on SQLite only: the quick loop while developing.
test-quick: venv
	$(BIN)/pytest

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# tox finds interpreters on PATH; put every pyenv-installed 3.10-3.13 there
# (pyenv shims alone are not enough for virtualenv's discovery).
PYENV_BINS := $(shell command -v pyenv >/dev/null 2>&1 && for v in $$(pyenv versions --bare | grep -E '^3\.1[0-3]\.'); do printf '%s:' "$$(pyenv root)/versions/$$v/bin"; done)

# The oldest and the newest supported Python with Django; `make tox` runs them all.
TOX_EDGES := py310-django52,py313-django61

tox: venv
	PATH="$(PYENV_BINS)$$PATH" $(BIN)/tox run-parallel --parallel-no-spinner

# The browser, packaging and Quick start tests run once, in the main environment (make test).
tox-edges: venv
	PATH="$(PYENV_BINS)$$PATH" $(BIN)/tox run -e $(TOX_EDGES) -- -m "not browser and not packaging and not quickstart"

$(BIN)/.bench-installed: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e ".[test,dev,bench]"
	touch $@

bench: $(BIN)/.bench-installed
	$(BIN)/python bench/client_throughput.py
	$(BIN)/python bench/save_overhead.py
	$(BIN)/python bench/drain.py
	$(BIN)/python bench/admin_list.py
	$(BIN)/python bench/backfill.py
	$(BIN)/python bench/broker_down.py

clean:
	rm -rf $(VENV) .tox build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
