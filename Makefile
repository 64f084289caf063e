# The two commands of the README. Each sets up what it needs on a fresh machine
# (a virtual environment in .venv with the project installed) and then runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test test-fast lint proto docs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres]'
	touch $(STAMP)

## Run the hub: SQLite in var/, the development PKI in certs/dev/ (generated on first start).
serve: $(STAMP)
	$(BIN)/spe-hub serve

## Run the tests (SQLite; set SPEHUB_TEST_DATABASE_URL for PostgreSQL).
test: $(STAMP)
	$(BIN)/python -m pytest -q

## The suite without what takes seconds or starts processes (about a minute less): while editing.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not processes"

lint: $(STAMP)
	$(BIN)/ruff check hub adapters tests scripts bench
	$(BIN)/ruff format --check hub adapters tests scripts bench
	$(BIN)/mypy hub adapters

## Regenerate the Python code beside the .proto files.
proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

## Regenerate docs/configuration.md and docs/cli.md from the code (a test fails when they drift).
docs: $(STAMP)
	$(BIN)/python scripts/gen_reference.py
