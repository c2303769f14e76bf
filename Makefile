# Jobdesk: `make run` starts everything, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
# `make test` runs the suite in this many processes (pytest-xdist; 0: in this one), each
# with its own Redis and test database, a module's tests kept together in one process,
# the modules handed out in conftest.py's order (the longest first), not by test count.
# Two on two cores: three ran the suite in 10.5 min against 12 on PostgreSQL, but its
# timing-sensitive tests miss more often (docs/benchmarks.md, the seventeenth sitting).
TEST_PROCESSES ?= 2

.PHONY: install run test test-fast lint check bench

$(STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "[jobdesk] installing the pinned packages into $(VENV)/ (the first time takes about a minute)"
	@$(PY) -m pip install --disable-pip-version-check --progress-bar off -r requirements-dev.txt | grep -E '^(Collecting|Successfully|ERROR)' ; test $${PIPESTATUS[0]} -eq 0
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m devtools.run

test: install
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

test-fast: install  # no Redis, no transactions, no processes; prints its time
	@start=$$(date +%s); JOBDESK_FAST_LAYER=1 $(PY) -m pytest -m "not integration" -n $(TEST_PROCESSES) --dist loadfile $(PYTEST_ARGS); status=$$?; \
	echo "[test-fast] $$(( $$(date +%s) - start )) s"; exit $$status

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# What CI checks before the tests: lint and format, types, migrations, the arrows.
check: lint
	$(PY) -m mypy .
	DJANGO_SETTINGS_MODULE=config.settings $(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/lint-imports

bench: install
	$(PY) bench/throughput.py
	$(PY) bench/reconcile.py
	$(PY) bench/scale.py
