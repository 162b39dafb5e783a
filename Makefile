# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint unit soak up contracts clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nrm demo

up: $(STAMP)
	$(BIN)/nrm up

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

# The fault tests with ten times the load.
soak: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration/test_crashes.py tests/integration/test_cluster.py --soak

lint: $(STAMP)
	$(BIN)/ruff check contracts services tests
	$(BIN)/mypy

# Regenerate contracts/schema/ from the models (a test fails when they drift).
contracts: $(STAMP)
	$(BIN)/nrm contracts generate

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
