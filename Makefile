# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

## Serve the demo application on http://localhost:6543 (memory store, no server needed).
demo: $(STAMP)
	PYTHONPATH=demo $(BIN)/pserve demo/demo.ini

system-deps:
	./scripts/install-system-deps.sh

## Install what is missing, then run the whole suite against real Redis, memcached, Perl.
test: $(STAMP) system-deps
	$(BIN)/ruff check src tests demo benchmarks
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check src tests demo benchmarks
	$(BIN)/ruff format --check src tests demo benchmarks
	$(BIN)/mypy src

## Benchmarks print ratios measured in one run; they are not part of the test suite.
bench: $(STAMP) system-deps
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
