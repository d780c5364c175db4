# Two commands do all the set-up on a fresh machine:
#   make run    installs Fleet and runs its main job
#   make test   installs Fleet and runs the whole test suite (lint, types, tests)
# and one more for Prefect's scale-out on this machine:
#   make stack  two Prefect API servers behind HAProxy, Redis, PostgreSQL, two workers
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
FILE ?= examples/fleet.yaml

.PHONY: setup run stack test lint typecheck pytest services redis haproxy chromium clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# The whole stack on this machine (data under FLEET_HOME, default .fleet); Ctrl-C stops it.
run: setup
	$(BIN)/python -m deployments.demo --file $(FILE)

# The scale-out stack (data under FLEET_HOME/stack; deployments/stack.py); Ctrl-C stops it,
# `$(BIN)/python -m deployments.stack status` shows it from another shell.
stack: setup services haproxy redis
	$(BIN)/python -m deployments.stack up --file $(FILE)

# PostgreSQL is started when it is not running (the suite runs against it too).
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done; echo "PostgreSQL did not start" >&2; exit 1

# The scale-out stack's load balancer, Debian's HAProxy (installing it needs root, as CI runs).
haproxy:
	@test -x /usr/sbin/haproxy || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy; }

# Redis for the scale-out stack: the stack starts its own redis-server when none answers.
redis:
	@command -v redis-server >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server; }

# The browser tests drive Debian's Chromium (Playwright downloads no browser here).
# Installing it needs root, as CI runs; without it the browser tests fail, never skip.
chromium:
	@test -x /usr/bin/chromium || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy fleet flows tasks blocks

# Two workers, each test module on one of them (module fixtures such as a stack stay whole).
PYTEST_ARGS ?=
pytest: setup services chromium haproxy redis
	$(BIN)/pytest -n 2 --dist loadfile $(PYTEST_ARGS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
