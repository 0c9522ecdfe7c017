# portside: the two commands a fresh machine needs.
#   make run    create the virtualenv if needed, install, start the example server
#   make test   create the virtualenv if needed, install, run every check and test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck node-peers pytest pytest-pure pytest-uvloop coverage compliance bench clean

$(STAMP): pyproject.toml setup.py $(wildcard portside/*/_speedups*.[ch])
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -c "import portside.protocol.speedups as s; print('portside speedups:', s.IMPLEMENTATION)"
	touch $(STAMP)

# Everything the tests need, installed once (CI runs it before its parallel jobs).
install: $(STAMP) node-peers

run: $(STAMP)
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
	PORTSIDE_TEST_LOOP=uvloop $(BIN)/python -m pytest tests/asyncio tests/hub/test_fanout.py tests/test_examples.py -q

coverage: $(STAMP)
	$(BIN)/coverage report --include='portside/protocol/*' --fail-under=95
	$(BIN)/coverage report --fail-under=90

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
