# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test check lint bench system-deps clean

CHECKED := src tests demo benchmarks

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

## Install what is missing, check, then run the whole suite against real Redis, memcached, Perl.
test: $(STAMP) system-deps check
	$(BIN)/python -m pytest -q -p no:cacheprovider --cov=pyramid_kvs \
		--cov-report=term-missing:skip-covered

## Style, formatting, the import contracts (layers) and strict typing.
check: $(STAMP)
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)
	$(BIN)/lint-imports
	$(BIN)/mypy src

lint: check

## Benchmarks print ratios measured in one run; they are not part of the test suite.
bench: $(STAMP) system-deps
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
