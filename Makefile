# The two commands every newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
DEMO_USERS ?= 25
# `make run` points every provider at local stand-ins (tests/support/providers.py), so a sync
# finishes without real accounts; DEMO_PROVIDERS=0 keeps the real APIs.
DEMO_PROVIDERS ?= 1
DEMO_PROVIDER_PORT ?= $(shell echo $$(( $(PORT) + 1 )))
DEMO_PROVIDER_NAMES := github spotify google_calendar youtube discord linkedin reddit

# Python 3.12+: python3.13 / python3.12 first (pyenv shims only answer when that version is
# active, so each candidate is asked for its version), then pyenv's own installs, then python3.
PYTHON ?= $(shell for c in python3.13 python3.12 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[3-9]*/bin/python3 $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3 2>/dev/null) python3; do \
	$$c -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 && { command -v $$c; break; }; done)

.PHONY: help run serve worker install install-runtime test lint typecheck pytest clean consistency bench faults fuzz

help:
	@echo "make run    serve the API on $(HOST):$(PORT) (SQLite + no cache unless DATABASE_URL / REDIS_URL), with a worker"
	@echo "make serve  production: runtime deps, migrate, collectstatic, granian on HOST:PORT (README, Production)"
	@echo "make worker run extraction jobs (next to a web process started some other way)"
	@echo "make test   ruff, mypy and the whole test suite"
	@echo "make lint   ruff, mypy and the import contracts only"
	@echo "make bench        throughput/latency over HTTP -> bench/results/latest.md"
	@echo "make consistency  the long freshness check, service vs naive"
	@echo "make faults       Redis and Postgres outages under load, service vs naive"
	@echo "make fuzz         a long schemathesis run against a live server"

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "Python 3.12+ not found: install python3.12 or python3.13"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Production: the project and its runtime dependencies only (granian included), no dev tools.
$(VENV)/.installed-runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

install-runtime: $(VENV)/.installed-runtime

# Development, zero configuration: DJANGO_DEBUG=1 unless set. Demo users and a token only in
# development (DJANGO_DEBUG=1 and a local database: manage.py demo_setup). With DJANGO_DEBUG=0
# static files come from collectstatic's hashed set, as in production.
run: install
	set -e; export DJANGO_DEBUG=$${DJANGO_DEBUG:-1} HOST=$(HOST) PORT=$(PORT); \
	debug=0; [[ "$${DJANGO_DEBUG,,}" =~ ^(1|true|yes|on)$$ ]] && debug=1; \
	$(BIN)/python manage.py migrate --noinput -v 0; \
	[ $$debug = 1 ] || $(BIN)/python manage.py collectstatic --noinput -v 0; \
	pids=; trap 'kill $$pids 2>/dev/null; wait' EXIT INT TERM; \
	if [ "$(DEMO_PROVIDERS)" = 1 ] && [ $$debug = 1 ]; then \
		$(BIN)/python -m tests.support.providers --port $(DEMO_PROVIDER_PORT) & pids="$$pids $$!"; \
		for name in $(DEMO_PROVIDER_NAMES); do \
			export PROVIDER_API_BASE_$${name^^}=http://127.0.0.1:$(DEMO_PROVIDER_PORT)/$$name; \
			export OAUTH_$${name^^}_CLIENT_ID=demo OAUTH_$${name^^}_CLIENT_SECRET=demo; \
			export OAUTH_$${name^^}_TOKEN_URL=http://127.0.0.1:$(DEMO_PROVIDER_PORT)/$$name/token; \
		done; \
	fi; \
	$(BIN)/python manage.py demo_setup --users $(DEMO_USERS); \
	$(BIN)/python manage.py run_worker --no-reload & pids="$$pids $$!"; \
	$(BIN)/python manage.py runserver --noreload $(HOST):$(PORT)

# Issue 15: one worker process (django-tasks-db's db_worker, plus recovery of jobs whose worker
# died). Run as many as you like, on as many hosts: they claim tasks with SKIP LOCKED.
worker: install
	$(BIN)/python manage.py run_worker --no-reload

# Production (README, "Production"): migrate, collectstatic, then granian (WSGI) on HOST:PORT
# with WEB_CONCURRENCY workers (default: one per core). Never seeds or prints a token.
serve: install-runtime
	HOST=$(HOST) PORT=$(PORT) exec $(BIN)/python manage.py serve

# mypy's Django plugin loads the settings: DJANGO_DEBUG=1 lets it do so without secrets.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/mypy .
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) db.sqlite3 .mypy_cache .ruff_cache .pytest_cache

# Long-run freshness check (bench/consistency.py): its own Postgres database and Redis DB 11.
consistency: install
	$(BIN)/python -m bench.consistency

# Issue 5: gunicorn + wrk against its own Postgres database and redis-server, ~5 minutes;
# writes bench/results/<date>-<commit>.md, latest.md and a PNG chart (bench/run.py).
bench: install
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python -m bench.run

# Issue 6: Redis kill -9 / SIGSTOP and Postgres stop under load, service vs naive configuration,
# against its own throwaway Postgres cluster and redis-server; issue 12: Sentinel failover and
# split brain, Cluster node failover, CPU overload, service vs the pre-HA behaviour; ~13 minutes
# (FAULTS_SCENARIOS picks some); writes bench/results/faults-<date>-<commit>.md and
# faults-latest.md (bench/faults.py).
faults: install
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python -m bench.faults

# Issue 4: schemathesis against a live runserver (its own SQLite database), far longer than the
# bounded run in `make test`: FUZZ_EXAMPLES test cases per operation (default 300), both a
# service-role and a user token; fails on any 5xx or any response that breaks the OpenAPI schema.
fuzz: install
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} FUZZ_WORKERS=$${FUZZ_WORKERS:-4} $(BIN)/pytest -q -s tests/test_schema_fuzz.py -k fuzzing
