# Two commands for a newcomer: `make run` and `make test`. Everything else is their plumbing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Test processes side by side (pytest-xdist); a test file stays in one process, with its module fixtures.
TEST_WORKERS ?= 4
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

.PHONY: run test test-fast lint docs install system-deps node-tools clean

# A half-made .venv (no working pip) is made again, never reused; python3-venv is installed if missing (root).
$(STAMP): pyproject.toml
	@bash scripts/system/python-venv.sh $(PYTHON) $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Install, build the demo workspace, run the portal (:8000) and the MCP server (:8001).
run: install
	$(VENV)/bin/poggio db upgrade
	$(VENV)/bin/poggio demo
	$(VENV)/bin/poggio up

## What the whole suite needs from Debian: Chromium, npm, PostgreSQL and Redis. As root it installs and starts
## what is missing (and changes nothing where all is there); anyone else is told what to install.
system-deps: install
	@PY=$(PY) bash scripts/system/test-deps.sh

## Node 22 and the MCP client tools from the npm registry, cached under build/.
node-tools:
	bash scripts/node/ensure-node.sh

## The linter and the formatter's check (ruff, configured in pyproject.toml; `ruff format .` fixes the latter).
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy poggio portal mcp_server plugins

## The documentation site (docs/, MkDocs) into build/site; --strict fails on a broken link or snippet.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

## The whole suite: lint, unit, MCP end to end on SQLite and PostgreSQL, portal in Chromium, real MCP clients, reliability.
test: install system-deps node-tools lint docs
	$(PYTEST) -m "not serial"
	$(PY) -m pytest -m serial

## Quick loop while developing: no browser, no Node clients, no long reliability runs, no PostgreSQL or Redis.
test-fast: install lint
	$(PYTEST) -m "not browser and not clients and not slow and not postgres and not redis"

clean:
	rm -rf build test-artifacts .pytest_cache
