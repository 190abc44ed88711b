# Every target sets itself up on a fresh machine: venv, pinned packages, Debian packages it needs.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501
# Loopback only unless you say otherwise (configure sign-in first: README "Sign-in and roles").
ADDRESS ?= 127.0.0.1

.PHONY: run test bench lint deps browser-deps postgres-deps engine clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Reinstalls only when requirements.txt changes.
$(STAMP): requirements.txt | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $(STAMP)

deps: $(STAMP)

# Debian's Chromium for the browser tests (never a browser download from playwright).
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
		echo "Installing Debian chromium (browser tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

# Debian's PostgreSQL server binaries: the tests start a throwaway cluster of their own (no service is enabled).
postgres-deps:
	@if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
		echo "Installing Debian postgresql (usage log tests on PostgreSQL)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	fi

run: deps
	$(BIN)/streamlit run app.py --server.address $(ADDRESS) --server.port $(PORT) --server.headless true

engine: deps
	$(BIN)/python -m lib.engine

lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: deps browser-deps postgres-deps lint
	$(BIN)/python -m pytest

bench: deps browser-deps
	@for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
