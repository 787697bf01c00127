# The two quickstart commands are `make demo` and `make test`; both set up .venv first.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-unit test-integration lint bench

setup:
	@scripts/setup

demo: setup
	$(BIN)/modelops demo

test:
	@scripts/setup --test-servers
	$(BIN)/lint-imports
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/pytest

test-unit: setup
	$(BIN)/pytest -m "not integration and not e2e"

test-integration:
	@scripts/setup --test-servers
	$(BIN)/pytest -m "integration or e2e"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench:
	@scripts/setup --test-servers
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/bench.txt
	$(BIN)/python -m bench
