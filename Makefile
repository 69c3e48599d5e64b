# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install -q --disable-pip-version-check
# Stamps name the pyproject.toml they installed, so editing it reinstalls.
PROJECT := $(shell cksum < pyproject.toml | cut -d' ' -f1)
# The demo needs pyramid_kvs and waitress only; the development install (tests,
# linters, Playwright for the browser test) includes the demo's and stamps both.
DEMO_STAMP := $(VENV)/.installed-demo-$(PROJECT)
DEV_STAMP := $(VENV)/.installed-dev-$(PROJECT)

.PHONY: demo test check lint bench bench-deps system-deps clean

CHECKED := src tests demo benchmarks

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(PIP) -e '.[demo]'
	rm -f $(VENV)/.installed-demo-*
	touch $@

# setup.py builds the C accelerator of pyramid_kvs.storable: editing it reinstalls too.
$(DEV_STAMP): pyproject.toml setup.py src/pyramid_kvs/_storable_speedups.c | $(BIN)/python
	$(PIP) --upgrade pip
	$(PIP) -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@ $(DEMO_STAMP)

## Serve the demo application on http://localhost:6543 (memory store, no server needed).
demo: $(DEMO_STAMP)
	PYTHONPATH=demo $(BIN)/pserve demo/demo.ini

system-deps:
	./scripts/install-system-deps.sh

## Install what is missing (system packages first: the install compiles the storable
## accelerator), check, then run the whole suite against real Redis, memcached, Perl and
## a headless Chromium.
test: system-deps $(DEV_STAMP) check
	$(BIN)/python -m pytest -q -p no:cacheprovider --cov=pyramid_kvs \
		--cov-report=term-missing:skip-covered

## Style, formatting, the import contracts (layers) and strict typing.
check: $(DEV_STAMP)
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)
	$(BIN)/lint-imports
	$(BIN)/mypy src

lint: check

bench-deps:
	./scripts/install-bench-deps.sh

## pyramid_kvs side by side with its anchors, in environments of their own (created in
## .bench/ on the first run, reused after); see BENCHMARKS.md. Not part of the test suite.
## Options: make bench BENCH_ARGS="--only 'session read' --no-http" (--help lists them).
bench: $(DEV_STAMP) system-deps bench-deps
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache test-artifacts .bench
	rm -f src/pyramid_kvs/*.so
