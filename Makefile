# The two commands of the README: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
export HOST PORT

.PHONY: run test test-fast lint pytest test-deps clean bench lock check-lock test-lowest test-container

run: $(VENV)/.runtime
	$(BIN)/python -m app

# The tests, then the end-to-end subset again on the lowest dependency versions pyproject allows.
test: $(VENV)/.dev test-deps lint check-lock pytest test-lowest

# Most of the suite waits on real servers, timers and sockets (about a fifth of the wall time is
# CPU), so it runs in three workers, a test file per worker at a time (module-scoped servers
# stay whole); the browser tests run after, in one process (Playwright's sync API and
# pytest-asyncio's loops must not share a worker).
pytest: $(VENV)/.dev test-deps
	$(BIN)/python -m pytest -n 3 --dist loadfile --ignore=tests/browser
	$(BIN)/python -m pytest tests/browser

# The fast tier while working: in-process tests (tests/fast: Starlette's TestClient for the
# endpoints, httpx MockTransport for the feed adapters), tests/unit, tests/core and tests/ws. No
# server, no Redis, no browser: about 15 s. `make test` runs them too, with everything else.
test-fast: $(VENV)/.dev
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/fast tests/unit tests/core tests/ws

lint: $(VENV)/.dev
	$(BIN)/ruff check app tests bench tools
	$(BIN)/ruff format --check app tests bench tools
	$(BIN)/mypy

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Runtime dependencies at the versions of requirements.txt (what deploys install, and what the
# tests run with); `make lock` moves them to the newest versions pyproject.toml allows.
$(VENV)/.runtime: pyproject.toml requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.txt -e .
	touch $@

$(VENV)/.dev: pyproject.toml requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.txt -e '.[dev]'
	touch $@ $(VENV)/.runtime

lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade -e '.[dev]'
	$(BIN)/python -m tools.deps lock
	touch $(VENV)/.dev $(VENV)/.runtime

# requirements.txt must pin every runtime dependency within pyproject's bounds, as installed.
check-lock: $(VENV)/.dev
	$(BIN)/python -m tools.deps check

# The lowest versions pyproject.toml allows, in a venv of their own, and the end-to-end tests
# that lean on those dependencies' behaviour (LOWEST_TESTS; about two minutes); then uvicorn just
# below its floor, where the WebSocket fast path must fall back to the plain path.
LOWEST       ?= .venv-lowest
LOWEST_TESTS ?= tests/e2e/test_websocket.py tests/e2e/test_limits.py \
                tests/e2e/test_http.py tests/e2e/test_pages.py tests/e2e/test_redis.py \
                tests/e2e/test_metrics.py tests/e2e/test_startup.py tests/e2e/test_workers.py \
                tests/e2e/test_operations.py
test-lowest: $(LOWEST)/.installed test-deps
	$(LOWEST)/bin/python -m pytest -q -p no:cacheprovider $(LOWEST_TESTS)
	@echo "(pip may warn that uvicorn 0.52.0 is below the floor: that is the point)"
	$(LOWEST)/bin/python -m pip install --quiet --disable-pip-version-check uvicorn==0.52.0
	$(LOWEST)/bin/python -m pytest -q -p no:cacheprovider tests/deploy/test_compat.py -m lowest
	$(LOWEST)/bin/python -m pip install --quiet --disable-pip-version-check -c $(LOWEST)/constraints.txt -e '.[test]'

$(LOWEST)/.installed: pyproject.toml $(VENV)/.dev
	rm -rf $(LOWEST) && $(PYTHON) -m venv $(LOWEST)
	$(BIN)/python -m tools.deps lowest > $(LOWEST)/constraints.txt
	$(LOWEST)/bin/python -m pip install --quiet --disable-pip-version-check -c $(LOWEST)/constraints.txt -e '.[test]'
	touch $@

# Builds the Dockerfile's image with podman and runs it: health check, non-root, SIGTERM drain.
# Not part of `make test` (a base image is built from Debian packages first, about 2 minutes on a
# new machine); .ci/run calls it.
test-container: $(VENV)/.dev test-deps
	@command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null || { \
	  echo "installing podman, runc and debootstrap (Debian packages)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq podman runc debootstrap >/dev/null; }
	$(BIN)/python -m pytest -q -p no:cacheprovider -m container tests/deploy/test_container.py

# The benchmark (bench/run.py): a few minutes on 2 cores; never part of `make test`.
# BENCH_ARGS="tick --clients 19000" runs one workload; results go to bench/results/*.jsonl.
# The stream-redis workload runs `npm ci` in bench/node-gateway (the Node reference peer) first
# when its node_modules is missing or older than the lock.
bench: $(VENV)/.bench test-deps
	$(BIN)/python -m bench.run $(BENCH_ARGS)

$(VENV)/.bench: pyproject.toml $(VENV)/.dev
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	touch $@

# System packages the tests use: a real redis-server (tests start their own on a free port),
# Debian's chromium, which the browser tests drive through Playwright (never a downloaded browser),
# and node + npm for the benchmark's Node peer (bench/node-gateway; its smoke test runs it).
APT_PACKAGES = $(if $(shell command -v redis-server && command -v redis-cli),,redis-server) \
               $(if $(wildcard /usr/bin/chromium),,chromium) \
               $(if $(shell command -v node && command -v npm),,nodejs npm)
test-deps:
	@if [ -n "$(strip $(APT_PACKAGES))" ]; then \
	  echo "installing $(strip $(APT_PACKAGES)) (Debian packages)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

clean:
	rm -rf $(VENV) $(LOWEST) .pytest_cache .mypy_cache .ruff_cache *.egg-info build dist
