# sbqueue — every target sets up what it needs (venv, dependencies, npm packages, Redis).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
NODE_STAMP := tests/interop/node_modules/.installed-stamp
PYTEST_ARGS ?=

.PHONY: venv node test test-fast lint demo bench chaos clean server-stop

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[all]'
	@touch $(STAMP)

node: $(NODE_STAMP)

$(NODE_STAMP): tests/interop/package.json tests/interop/package-lock.json
	@command -v npm >/dev/null || { echo "npm is required for the interop suite (install Node.js 18+)"; exit 1; }
	cd tests/interop && npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

lint: venv
	$(VENV)/bin/ruff check sbqueue tests tools benchmarks
	$(VENV)/bin/mypy

## make test: the whole suite (lint, unit, integration on a real Redis, interop with Node BullMQ, notebooks)
test: venv node lint
	$(PY) tools/ensure_test_deps.py
	$(PY) -m pytest $(PYTEST_ARGS)

## make demo: the main job — starts the embedded Redis and runs the demo
demo: venv
	$(VENV)/bin/sbqueue demo

## make bench: sbqueue vs Node BullMQ, bullmq and RQ (PyPI), side by side on one Redis (BENCH_ARGS=--quick for a smoke run)
bench: venv node
	$(PY) -m pip install -q --disable-pip-version-check -e '.[all,bench]'
	$(PY) -m benchmarks $(BENCH_ARGS)

## make chaos: the large chaos run — 100,000 jobs, 4 worker processes, a 30 s Redis outage (CI runs 5,000 / 3 / 5 s)
chaos: venv
	SBQUEUE_CHAOS_JOBS=100000 SBQUEUE_CHAOS_WORKERS=4 SBQUEUE_CHAOS_OUTAGE=30 \
		$(PY) -m pytest tests/chaos -p no:cacheprovider -s -q $(PYTEST_ARGS)

server-stop: venv
	$(VENV)/bin/sbqueue server stop

clean:
	rm -rf $(VENV) tests/interop/node_modules .pytest_cache .mypy_cache .ruff_cache reports
