# The README's two commands: `make run` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint format migrate-status clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

run: $(STAMP)  ## serve the API (embedded PostgreSQL unless DATABASE_URL), migrations applied
	$(PY) serve.py

test: $(STAMP) lint  ## the whole suite on a throwaway embedded PostgreSQL (or TEST_DATABASE_URL)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff, and squawk on every migration's SQL
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

migrate-status: $(STAMP)
	$(PY) migrations/migrate.py status

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
