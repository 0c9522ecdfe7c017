# portside: the two commands a fresh machine needs.
#   make run    create the virtualenv if needed, install, start the example server
#   make test   create the virtualenv if needed, install, run every check and test
#
# PYTHON chooses the interpreter the virtualenv is made with, VENV where it goes:
#   make test PYTHON=python3.12 VENV=.venv-3.12
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Installed with the dev extra (what the tests need), or portside alone (what
# running needs): the dev install covers running too.
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
SOURCES := pyproject.toml setup.py $(wildcard portside/*/_speedups*.[ch])
# Which Python, and whether each C accelerator loaded ("c") or not ("python").
REPORT := import sys, portside.protocol.speedups as p, portside.asyncio.speedups as a; \
	print('portside on Python', sys.version.split()[0], '- accelerators:', \
	'protocol', p.IMPLEMENTATION, '- asyncio', a.IMPLEMENTATION)

# A virtualenv made by another Python than the PYTHON asked for is not used.
ifeq ($(origin PYTHON),command line)
ifneq ($(wildcard $(BIN)/python),)
VENV_PYTHON := $(shell $(BIN)/python -c 'import sys; print(sys.version.split()[0])' 2>/dev/null)
ASKED_PYTHON := $(shell $(PYTHON) -c 'import sys; print(sys.version.split()[0])' 2>/dev/null)
ifneq ($(VENV_PYTHON),$(ASKED_PYTHON))
$(error $(VENV) has Python $(VENV_PYTHON), PYTHON=$(PYTHON) is $(or $(ASKED_PYTHON),not found): \
	give it a virtualenv of its own, e.g. VENV=.venv-$(or $(basename $(ASKED_PYTHON)),3.X), or make clean)
endif
endif
endif

.PHONY: install run test lint typecheck node-peers pytest pytest-pure pytest-uvloop coverage compliance bench clean
.PHONY: sanitize leaks ccoverage fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

$(STAMP): $(SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -c "$(REPORT)"
	touch $(STAMP) $(RUN_STAMP)

$(RUN_STAMP): $(SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -c "$(REPORT)"
	touch $(RUN_STAMP)

# Everything the tests need, installed once (CI runs it before its parallel jobs).
install: $(STAMP) node-peers

run: $(RUN_STAMP)
	$(BIN)/python examples/echo_server.py

test: install lint typecheck pytest pytest-pure pytest-uvloop coverage

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Node's ws for the interoperability tests (skipped when Node.js is missing);
# installed again only when the lock file changes.
NODE_DIR := tests/asyncio/node
node-peers: $(NODE_DIR)/node_modules/.installed

$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(NODE_DIR) && npm ci --silent --no-audit --no-fund && touch node_modules/.installed; \
	else \
		echo "npm not found: the Node.js interoperability tests will be skipped"; \
	fi

# The whole suite with the C accelerator, measuring branch coverage...
pytest: $(STAMP)
	$(BIN)/python -m pytest --cov --cov-report= -q

# ...again with the pure-Python twins of the accelerator (not the tests marked slow,
# which run real server processes, nginx, HAProxy: they run once, above)...
pytest-pure: $(STAMP)
	PORTSIDE_NO_SPEEDUPS=1 $(BIN)/python -m pytest --cov --cov-append --cov-report= -q -m "not slow"

# ...and the asyncio layer on uvloop, with the hub's writes on its connections.
pytest-uvloop: $(STAMP)
	PORTSIDE_TEST_LOOP=uvloop $(BIN)/python -m pytest tests/asyncio tests/hub/test_fanout.py tests/test_examples.py -q -m "not slow"

coverage: $(STAMP)
	$(BIN)/coverage report --include='portside/protocol/*' --fail-under=95
	$(BIN)/coverage report --fail-under=90

# The C accelerators built with ASan and UBSan in build/sanitize/ (a copy of the
# tree: the build above is left alone): the suite, and Autobahn's groups 1-10
# in both modes; any sanitizer report fails. See tools/sanitize.py.
sanitize: $(STAMP)
	$(BIN)/python tools/sanitize.py

# Reference leaks: the C accelerators built for Debian's python3-dbg in
# build/debug/, flat reference counts over repeated echo, close, abort,
# cancellation and errors, C and pure Python. See tools/leaks.py.
leaks: $(STAMP)
	$(BIN)/python tools/leaks.py

# gcov line coverage of the C accelerators (build/coverage): at least 95 % of
# each extension's lines and 90 % of each file's, lines marked
# "ccoverage: unreachable: <why>" left out (see tools/ccoverage.py).
ccoverage: $(STAMP)
	$(BIN)/python tools/ccoverage.py

# Differential fuzzing of the C and Python twins (fuzzing/README.md), a short
# run per harness; FUZZ_SECONDS=3600 for a long one.
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[fuzz]"
	$(BIN)/python -m fuzzing.run frames --seconds $(FUZZ_SECONDS)
	$(BIN)/python -m fuzzing.run http --seconds $(FUZZ_SECONDS)

compliance: $(STAMP)
	$(BIN)/python -m compliance.run

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .coverage .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
	rm -f portside/*/*.so
	rm -rf tests/asyncio/node/node_modules
