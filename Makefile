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

# `make bench` and `make loadtest` run in a database and Redis DBs of their own, never in the
# development ones `make run` uses (database darkroom, Redis DBs 0-2; the tests use 11-13): their
# rows, queues, locks and media stay apart, and a bench can run while `make run` is up without
# either consuming the other's tasks. BENCH_ENV names every Redis URL the settings read (REDIS_URL;
# the cache, which holds the locks, rate limits and counters; the Celery broker; no result backend,
# as in development) and pins the settings module, whose test variant reads other variables
# (tests/ops/test_bench_env.py checks this against config/settings). It is applied to every
# manage.py line of the targets below, set-up included.
BENCH_DB_NAME ?= darkroom_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/3
BENCH_CACHE_URL ?= redis://127.0.0.1:6379/4
BENCH_BROKER_URL ?= redis://127.0.0.1:6379/5
BENCH_ENV = DJANGO_SETTINGS_MODULE=config.settings.local DARKROOM_DB_NAME=$(BENCH_DB_NAME) \
	REDIS_URL=$(BENCH_REDIS_URL) CACHE_URL=$(BENCH_CACHE_URL) CELERY_BROKER_URL=$(BENCH_BROKER_URL) \
	CELERY_RESULT_BACKEND= DARKROOM_MEDIA_ROOT=$(CURDIR)/var/bench/media

.PHONY: help run test lint bench bench-db bench-reset loadtest setup db services demo requirements clean

help:
	@echo "make run    set up and start web, worker, beat, relay, projector and Flower (honcho)"
	@echo "make test   set up and run the whole test suite against real Postgres and Redis"
	@echo "make lint   ruff (lint + format check) and mypy"
	@echo "make bench  run the benchmarks and print the report (own database $(BENCH_DB_NAME) and Redis DBs)"
	@echo "make loadtest  Locust checkout + webhook-storm scenarios with result checks (same database as bench)"
	@echo "make bench-reset  empty the benchmarks' database and Redis DBs (leftovers of an interrupted run)"

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
	@bind="$${DARKROOM_WEB_BIND:-127.0.0.1:8000}"; base="$${DARKROOM_PUBLIC_BASE_URL:-http://127.0.0.1:$${bind##*:}}"; \
	flower="http://$${FLOWER_ADDRESS:-127.0.0.1}:$${FLOWER_PORT:-5555}"; \
	echo ""; \
	echo "Darkroom is starting (Ctrl-C stops every process):"; \
	echo "  web            $$base/   (listening on $$bind; readiness: /readyz, liveness: /healthz, metrics: /metrics)"; \
	echo "  shop           $$base/s/demo-studio/   (shoppers: gallery, find me by selfie, cart, sandbox payment)"; \
	echo "  studio         $$base/studio/   (owner / darkroom-demo, photographer / darkroom-demo)"; \
	echo "  admin          $$base/admin/   (admin / darkroom-demo)"; \
	echo "  API docs       $$base/api/docs/   (schema: /api/schema/)"; \
	echo "  Flower         $$flower/   (basic auth: $${FLOWER_BASIC_AUTH:-admin:darkroom-flower})"; \
	echo ""
	@PATH="$(CURDIR)/$(BIN):$$PATH" exec $(BIN)/honcho start -f Procfile

# --dist worksteal: a pytest worker that runs out of tests takes half of the other's queue, so the
# run does not end with one worker idle behind the other's last long tests (the bench smoke is 80 s).
test: services browser wrk promtool
	@$(PY) manage.py db_bootstrap
	@echo "==> pytest ($(PYTEST_WORKERS) workers) against real PostgreSQL and Redis"
	@DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# $(call apt_install,BINARY,PACKAGE,WHAT IT IS FOR[,SHELL COMMANDS AFTER INSTALLING]): installs a
# Debian package with apt-get (as root, or through sudo) only when BINARY is missing.
define apt_install
	@if [ ! -x $(1) ]; then \
	  echo "==> $(2): installing Debian's package for $(3) (apt-get)"; \
	  as_root=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
	  $$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(2); \
	  $(4) \
	fi
endef

# Debian's Chromium, which the browser tests (tests/browser) drive through Playwright (never
# `playwright install`: its browser download is not used).
.PHONY: browser
browser:
	$(call apt_install,/usr/bin/chromium,chromium,the browser tests)

# Debian's wrk, which the HTTP write benchmark (`manage.py http_write_bench`, part of `make bench`
# and of the bench smoke test) drives.
.PHONY: wrk
wrk:
	$(call apt_install,/usr/bin/wrk,wrk,the HTTP write benchmark)

# Debian's promtool (package `prometheus`), which checks the alerting rules, their unit tests and
# the scrape config in config/prometheus (tests/ops/test_alert_rules.py). The package also
# installs a Prometheus server: it is disabled and stopped.
prometheus_server_off = if [ -d /run/systemd/system ]; then $$as_root systemctl disable --now prometheus; \
	  else $$as_root update-rc.d prometheus disable; $$as_root /etc/init.d/prometheus stop; fi;
.PHONY: promtool
promtool:
	$(call apt_install,/usr/bin/promtool,prometheus,the alerting-rule tests,$(prometheus_server_off))

lint: setup
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/mypy apps tasks config

# The benchmarks' own database (see BENCH_ENV): roles and database, then migrations as the owner.
# A DATABASE_URL or DATABASE_OWNER_URL in the environment or .env would override the name: refused.
bench-db: setup
	@echo "==> benchmark database $(BENCH_DB_NAME); Redis $(BENCH_REDIS_URL), cache $(BENCH_CACHE_URL), broker $(BENCH_BROKER_URL)"
	@$(BENCH_ENV) $(PY) -c 'import sys; from django.conf import settings as s; \
	  names = sorted({db["NAME"] for db in s.DATABASES.values()}); names == ["$(BENCH_DB_NAME)"] or sys.exit( \
	  f"refused: the database URLs name {names}, not $(BENCH_DB_NAME); unset DATABASE_URL and DATABASE_OWNER_URL")'
	@$(BENCH_ENV) $(PY) manage.py services_check
	@$(BENCH_ENV) $(PY) manage.py db_bootstrap
	@$(BENCH_ENV) $(PY) manage.py migrate --database owner --noinput

# Figures are taken with DEBUG off (DEBUG records every query and slows every process).
bench: bench-db wrk
	@echo "==> benchmarks (sequential; figures go to bench-results/report.md). Smoke: make bench BENCH_ARGS=--smoke"
	@$(BENCH_ENV) DJANGO_DEBUG=false $(PY) manage.py bench $(BENCH_ARGS)

loadtest: bench-db
	@echo "==> Locust: checkout and webhook storm (20% duplicates) against a local gunicorn, relay and worker"
	@$(BENCH_ENV) DJANGO_DEBUG=false $(PY) manage.py loadtest all $(LOADTEST_ARGS)

# Nothing but the benchmarks and load tests writes their database and Redis DBs, so what is pending
# there was left by a run that was stopped: empty the tables (as the owner), the cache (locks,
# counters) and the broker. REDIS_URL's DB holds nothing (it is only asked for the server version).
bench-reset: bench-db
	@echo "==> emptying the benchmark database $(BENCH_DB_NAME), cache $(BENCH_CACHE_URL) and broker $(BENCH_BROKER_URL)"
	@$(BENCH_ENV) $(PY) manage.py flush --database owner --noinput
	@$(PY) -c 'import sys, redis; [redis.Redis.from_url(url).flushdb() for url in sys.argv[1:]]' \
	  $(BENCH_CACHE_URL) $(BENCH_BROKER_URL)

requirements:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet pip-tools
	@cd requirements && ../$(BIN)/pip-compile --quiet --strip-extras base.in -o base.txt
	@cd requirements && ../$(BIN)/pip-compile --quiet --strip-extras dev.in -o dev.txt

clean:
	rm -rf $(VENV) var/static .mypy_cache .ruff_cache .pytest_cache
