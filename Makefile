# The two commands of the README: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
export HOST PORT

.PHONY: run test lint pytest test-deps clean bench

run: $(VENV)/.runtime
	$(BIN)/python -m app

test: $(VENV)/.dev test-deps lint pytest

pytest: $(VENV)/.dev test-deps
	$(BIN)/python -m pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check app tests bench tools
	$(BIN)/ruff format --check app tests bench tools
	$(BIN)/mypy

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@ $(VENV)/.runtime

# The benchmark (bench/run.py): a few minutes on 2 cores; never part of `make test`.
# BENCH_ARGS="tick --clients 19000" runs one workload; results go to bench/results/*.jsonl.
bench: $(VENV)/.bench test-deps
	$(BIN)/python -m bench.run $(BENCH_ARGS)

$(VENV)/.bench: pyproject.toml $(VENV)/.dev
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	touch $@

# System packages the tests use: a real redis-server (tests start their own on a free port) and
# Debian's chromium, which the browser tests drive through Playwright (never a downloaded browser).
APT_PACKAGES = $(if $(shell command -v redis-server && command -v redis-cli),,redis-server) \
               $(if $(wildcard /usr/bin/chromium),,chromium)
test-deps:
	@if [ -n "$(strip $(APT_PACKAGES))" ]; then \
	  echo "installing $(strip $(APT_PACKAGES)) (Debian packages)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
