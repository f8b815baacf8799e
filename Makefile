# The README's two commands: `make run` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test coverage lint format migrate-status clean system-packages

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

run: $(STAMP)  ## serve the API: embedded PostgreSQL unless DATABASE_URL, the ElevenLabs simulator unless ELEVENLABS_API_KEY
	$(PY) serve.py

test: $(STAMP) lint system-packages  ## the whole suite on a throwaway embedded PostgreSQL (or TEST_DATABASE_URL)
	$(PY) -m pytest $(PYTEST_ARGS)

coverage: $(STAMP) system-packages  ## the suite under coverage; each module's covered share and missed lines
	rm -f .coverage .coverage.*
	$(PY) -m coverage run -m pytest $(PYTEST_ARGS)
	$(PY) -m coverage combine --quiet
	$(PY) -m coverage report

# squawk reads each migration's SQL as its steps run it (build/migrations-sql/).
# 000 is the schema production already has (bigserial keys as they are there) and
# its downgrade, dropping the tables, is for development databases: those two
# rules are waived for 000 alone. Exceptions in 001+ are marked in their SQL.
lint: $(STAMP)  ## ruff, and squawk on every migration's SQL
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) migrations/migrate.py sql --out build/migrations-sql
	$(VENV)/bin/squawk --exclude-path='*/000_*' build/migrations-sql/*.sql
	$(VENV)/bin/squawk --exclude=prefer-identity,ban-drop-table build/migrations-sql/000_*.sql

# The console's browser test drives Debian's chromium (Playwright never downloads
# one); the slow-client tests start Debian's nginx from deploy/nginx.conf.
system-packages:  ## install Debian's chromium and nginx when missing (needs root, as in CI)
	command -v chromium >/dev/null && PATH="$$PATH:/usr/sbin" command -v nginx >/dev/null \
		|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium nginx)

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

migrate-status: $(STAMP)
	$(PY) migrations/migrate.py status

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache .coverage .coverage.*
