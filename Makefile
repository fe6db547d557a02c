# The two commands every newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
DEMO_USERS ?= 25

# Python 3.12+: python3.13 / python3.12 first (pyenv shims only answer when that version is
# active, so each candidate is asked for its version), then pyenv's own installs, then python3.
PYTHON ?= $(shell for c in python3.13 python3.12 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[3-9]*/bin/python3 $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3 2>/dev/null) python3; do \
	$$c -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 && { command -v $$c; break; }; done)

.PHONY: help run install test lint typecheck pytest clean

help:
	@echo "make run    serve the API on $(HOST):$(PORT) (SQLite + no cache unless DATABASE_URL / REDIS_URL)"
	@echo "make test   ruff, mypy and the whole test suite"
	@echo "make lint   ruff and mypy only"

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "Python 3.12+ not found: install python3.12 or python3.13"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	export DJANGO_DEBUG=$${DJANGO_DEBUG:-1}; \
	$(BIN)/python manage.py migrate --noinput -v 0 && \
	$(BIN)/python manage.py seed_demo --users $(DEMO_USERS) && \
	user=$$($(BIN)/python manage.py shell -v 0 -c 'from connectors.management.commands.seed_demo import demo_user_id; print(demo_user_id(0))' 2>/dev/null) && \
	token=$$($(BIN)/python manage.py issue_token $$user 2>/dev/null) && \
	echo && echo "Try it:" && \
	echo "  curl -s -H 'Authorization: Bearer $$token' http://$(HOST):$(PORT)/api/connectors/status/$$user" && echo && \
	exec $(BIN)/python manage.py runserver --noreload $(HOST):$(PORT)

# mypy's Django plugin loads the settings: DJANGO_DEBUG=1 lets it do so without secrets.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/mypy .

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) db.sqlite3 .mypy_cache .ruff_cache .pytest_cache
