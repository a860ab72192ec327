# Two commands for a newcomer: `make run` and `make test`. Everything else is their plumbing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast lint docs install system-deps node-tools clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Install, build the demo workspace, run the portal (:8000) and the MCP server (:8001).
run: install
	$(VENV)/bin/poggio db upgrade
	$(VENV)/bin/poggio demo
	$(VENV)/bin/poggio up

## Debian packages the browser tests need (Chromium; no browser download). Needs root, once.
system-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; \
	  else echo "Chromium is missing: run 'sudo apt-get install chromium' (browser tests need /usr/bin/chromium)"; exit 1; fi; \
	fi

## Node 22 and the MCP client tools from the npm registry, cached under build/.
node-tools:
	bash scripts/node/ensure-node.sh

## The linter (ruff, configured in pyproject.toml).
lint: install
	$(PY) -m ruff check .

## The documentation site (docs/, MkDocs) into build/site; --strict fails on a broken link or snippet.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

## The whole suite: lint, unit, MCP end to end on SQLite and PostgreSQL, portal in Chromium, real MCP clients, reliability.
test: install system-deps node-tools lint docs
	$(PY) -m pytest

## Quick loop while developing: no browser, no Node clients, no long reliability runs, no PostgreSQL or Redis.
test-fast: install lint
	$(PY) -m pytest -m "not browser and not clients and not slow and not postgres and not redis"

clean:
	rm -rf build test-artifacts .pytest_cache
