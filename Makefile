# Darkroom: `make run` starts everything, `make test` runs the suite. Both do the whole set-up
# (virtualenv, pinned install, roles, database, migrations) on a machine with PostgreSQL >= 15
# and Redis >= 7 on localhost.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
REQS := requirements/base.txt requirements/dev.txt
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=
BENCH_ARGS ?=
LOADTEST_ARGS ?=

.PHONY: help run test lint bench loadtest setup db services demo requirements clean

help:
	@echo "make run    set up and start web, worker, beat, relay, projector and Flower (honcho)"
	@echo "make test   set up and run the whole test suite against real Postgres and Redis"
	@echo "make lint   ruff (lint + format check) and mypy"
	@echo "make bench  run the benchmarks and print the report"
	@echo "make loadtest  Locust checkout + webhook-storm scenarios with result checks"

$(STAMP): $(REQS)
	@echo "==> virtualenv $(VENV): installing pinned requirements"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/base.txt -r requirements/dev.txt
	@touch $@

setup: $(STAMP)

services: setup
	@$(PY) manage.py services_check

db: services
	@echo "==> database roles and database"
	@$(PY) manage.py db_bootstrap
	@echo "==> migrations (as the owner role)"
	@$(PY) manage.py migrate --database owner --noinput

demo: db
	@$(PY) manage.py seed_demo

run: db
	@mkdir -p var
	@$(PY) manage.py seed_demo
	@echo ""
	@echo "Darkroom is starting (Ctrl-C stops every process):"
	@echo "  web            http://127.0.0.1:8000/   (readiness: /readyz, liveness: /healthz, metrics: /metrics)"
	@echo "  shop           http://127.0.0.1:8000/s/demo-studio/   (shoppers: gallery, find me by selfie, cart, sandbox payment)"
	@echo "  studio         http://127.0.0.1:8000/studio/   (owner / darkroom-demo, photographer / darkroom-demo)"
	@echo "  admin          http://127.0.0.1:8000/admin/   (admin / darkroom-demo)"
	@echo "  API docs       http://127.0.0.1:8000/api/docs/   (schema: /api/schema/)"
	@echo "  Flower         http://127.0.0.1:5555/   (basic auth: $${FLOWER_BASIC_AUTH:-admin:darkroom-flower})"
	@echo ""
	@PATH="$(CURDIR)/$(BIN):$$PATH" exec $(BIN)/honcho start -f Procfile

test: services browser wrk
	@$(PY) manage.py db_bootstrap
	@echo "==> pytest ($(PYTEST_WORKERS) workers) against real PostgreSQL and Redis"
	@DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# Debian's Chromium, which the browser tests (tests/browser) drive through Playwright; installed
# with apt-get only when missing (never `playwright install`: its browser download is not used).
.PHONY: browser
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "==> chromium: installing Debian's package for the browser tests (apt-get)"; \
	  as_root=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
	  $$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	fi

# Debian's wrk, which the HTTP write benchmark (`manage.py http_write_bench`, part of `make bench`
# and of the bench smoke test) drives; installed with apt-get only when missing.
.PHONY: wrk
wrk:
	@if [ ! -x /usr/bin/wrk ]; then \
	  echo "==> wrk: installing Debian's package for the HTTP write benchmark (apt-get)"; \
	  as_root=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
	  $$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk; \
	fi

lint: setup
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/mypy apps tasks config

# Figures are taken with DEBUG off (DEBUG records every query and slows every process).
bench: db wrk
	@echo "==> benchmarks (sequential; figures go to bench-results/report.md). Smoke: make bench BENCH_ARGS=--smoke"
	@DJANGO_DEBUG=false $(PY) manage.py bench $(BENCH_ARGS)

loadtest: db
	@echo "==> Locust: checkout and webhook storm (20% duplicates) against a local gunicorn, relay and worker"
	@DJANGO_DEBUG=false $(PY) manage.py loadtest all $(LOADTEST_ARGS)

requirements:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet pip-tools
	@cd requirements && ../$(BIN)/pip-compile --quiet --strip-extras base.in -o base.txt
	@cd requirements && ../$(BIN)/pip-compile --quiet --strip-extras dev.in -o dev.txt

clean:
	rm -rf $(VENV) var/static .mypy_cache .ruff_cache .pytest_cache
