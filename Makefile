# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The statistics report test renders the page in a real headless browser (Debian package).
CHROMIUM := /usr/bin/chromium
# The tests run node too: the official AsyncAPI parser and an example agency in JavaScript,
# with the packages pinned in tests/node/package-lock.json (the tests also install them).
NODE_MODULES := tests/node/node_modules/.package-lock.json

.PHONY: demo test lint unit soak up contracts clean bench lock

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nrm demo

up: $(STAMP)
	$(BIN)/nrm up

test: $(STAMP) lint $(CHROMIUM) $(NODE_MODULES)
	$(BIN)/python -m pytest -q

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

# The fault tests with ten times the load.
soak: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration/test_crashes.py tests/integration/test_cluster.py --soak

# The hub beside raw NATS ceilings in one run; figures in var/bench.json (docs/PERFORMANCE.md).
bench: $(STAMP)
	$(BIN)/python -c 'import pyinstrument, eventsourcing' 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/nrm bench --out var/bench.json --profile var/bench-profile.txt

lint: $(STAMP)
	$(BIN)/ruff check contracts services nrm_tools tests
	$(BIN)/ruff format --check contracts services nrm_tools tests
	$(BIN)/mypy

# The container image's exact dependencies with hashes (deploy/requirements.lock).
lock: $(STAMP)
	$(BIN)/python -c 'import uv' 2>/dev/null || $(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 \
	  --python-platform linux --no-header --quiet \
	  -o deploy/requirements.lock.new
	{ sed -n '1,3p' deploy/requirements.lock; cat deploy/requirements.lock.new; } > deploy/requirements.lock.tmp
	mv deploy/requirements.lock.tmp deploy/requirements.lock && rm deploy/requirements.lock.new

# Regenerate contracts/schema/ from the models (a test fails when they drift).
contracts: $(STAMP)
	$(BIN)/nrm contracts generate

# Installed only when missing; apt's lists are refreshed only if the first try fails.
$(CHROMIUM):
	@echo "installing chromium (Debian) for the statistics report test"
	@export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null && \
	    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; }

$(NODE_MODULES): tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --ignore-scripts

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache tests/node/node_modules
