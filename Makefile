# Visio Broker: the same commands locally and in CI (.ci/run calls `make test`).
#   make run    embedded mode: SQLite, filesystem broker, web + worker + beat, demo data
#   make test   lint, start PostgreSQL/Redis if needed, then the whole test suite
#   make lint   ruff format --check, ruff check, mypy, makemigrations --check
#   make fmt    rewrite the code in the house format
#   make bench  benchmarks (bench/run.py)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
INSTALLED := $(VENV)/.installed
NODE_INSTALLED := node_modules/.installed
PYTEST_WORKERS ?= 2

.PHONY: help venv run test lint fmt bench services system-packages node

help:
	@sed -n 's/^#   //p' Makefile

venv: $(INSTALLED)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml changed since the last install.
$(INSTALLED): pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[dev]'
	touch $@

run: venv
	$(PY) manage.py run_embedded

# makemigrations reads no database URL: the check must not depend on who runs it.
lint: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy visio_broker agencies meetings rooms
	env -u DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL \
		$(PY) manage.py makemigrations --check --dry-run

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

services:
	scripts/ensure-services.sh

# Debian packages the tests need: Chromium (browser tests) and gettext (catalogue checks).
system-packages:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v msgfmt >/dev/null || missing="$$missing gettext"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update && apt-get install -y $$missing; \
		else \
			echo "The tests need these Debian packages:$$missing (sudo apt-get install$$missing)." >&2; \
			exit 1; \
		fi; \
	fi

node: $(NODE_INSTALLED)

# Test-only tools (axe-core); npm ci reinstalls from the lock file when it changes.
$(NODE_INSTALLED): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

test: venv lint services system-packages node
	$(BIN)/pytest -n $(PYTEST_WORKERS)

bench: venv
	$(PY) bench/run.py
