"""Airflow sees the package as a provider; the example DAGs run with `airflow dags test` (the demo)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_python_exec.get_provider_info import get_provider_info
from airflow_python_exec.settings import OPTIONS

AIRFLOW = str(Path(sys.executable).parent / "airflow")
REPO = Path(__file__).resolve().parent.parent


def airflow(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [AIRFLOW, *args], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


@pytest.mark.smoke
def test_provider_info_declares_every_setting() -> None:
    section = get_provider_info()["config"]["python_exec"]["options"]
    assert (
        set(section)
        == set(OPTIONS)
        == {
            "enabled",
            "install_path",
            "cache_dir",
            "fernet_key",
            "python_downloads",
            "lock_timeout",
            "inherit_env",
            "sandbox",
            "sandbox_writable_paths",
            "sandbox_network",
            "max_result_bytes",
            "max_source_bytes",
            "max_output_bytes",
            "upload_folder",
            "job_dag_prefix",
            "data_store",
        }
    )
    assert section["sandbox"]["default"] == "off" and section["sandbox_network"]["type"] == "boolean"
    assert section["fernet_key"]["sensitive"] is True
    assert section["python_downloads"]["default"] == "never"
    assert section["lock_timeout"]["default"] == "600"
    assert section["max_result_bytes"]["default"] == "1048576" and section["max_source_bytes"]["default"] == "536870912"
    decorators = {d["name"]: d["class-name"] for d in get_provider_info()["task-decorators"]}
    assert decorators["python_exec"] == "airflow_python_exec.decorators.python_exec.python_exec_task"


@pytest.mark.smoke
def test_airflow_lists_the_provider_and_its_config_defaults() -> None:
    providers = airflow("providers", "list")
    assert "airflow-python-exec" in providers.stdout
    defaults = airflow("config", "list", "--defaults", "--section", "python_exec")
    assert "[python_exec]" in defaults.stdout
    for option in OPTIONS:
        assert option in defaults.stdout


def test_hello_example_dag_shows_the_hello_lines_in_the_task_log() -> None:
    """What `make demo` runs: the platform's HelloWorld through three tasks, secret masked."""
    done = airflow("dags", "test", "hello_python_exec")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert out.count("Hello from HelloWorld Demo") == 2  # .env loaded by the script; .env as macros
    assert "Version: 2.0.0-macro" in out  # a macro beats the .env entry it overrides
    assert "Hello from HelloWorld from the UI" in out  # the Param's default
    assert "API token: ***" in out and "demo-api-token" not in out
    assert "state=success" in out


def test_daily_example_dag_runs_with_its_date() -> None:
    done = airflow("dags", "test", "daily_python_exec", "2026-03-01")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "Daily report for 2026-03-01" in out
    assert "DAG daily_python_exec run" in out
    assert "Hello from HelloWorld via @task.python_job" in out


def test_world_cities_example_runs_on_real_data_in_a_cached_environment(tmp_path: Path) -> None:
    done = airflow("dags", "test", "world_cities", "-c", f'{{"output_dir": "{tmp_path}"}}')
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "[python_exec] cache hit: environment" in out  # largest_cities starts on the provisioned env
    assert "Largest city: Shanghai, China" in out
    (csv,) = tmp_path.glob("largest_cities_*.csv")
    rows = csv.read_text().splitlines()
    assert rows[0] == "country,country_code,rank,city,population,latitude,longitude"
    assert any(row.startswith("Japan,JP,1,Tokyo,") for row in rows)
    assert len(rows) > 1000


def test_world_cities_function_example_chains_a_data_item_to_an_asset_scheduled_dag() -> None:
    """What `make demo` runs last: `airflow dags test` of the producer, then of the DAG scheduled on its
    world-cities asset, which reads the latest version; then where it was written and its rows."""
    done = airflow("dags", "test", "world_cities_function")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    match = re.search(r"output 'world-cities' \(table, 694 rows, [\d,]+ bytes\) written to (file://\S+)", out)
    assert match, out[-3000:]
    uri = match.group(1)
    assert uri.startswith(f"file://{os.environ['AIRFLOW_HOME']}/python_exec/data/dataitem/world-cities/")
    assert f"world-cities: 694 rows from {uri}" in out and "state=success" in out

    done = airflow("dags", "test", "world_cities_report")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert re.search(rf"world-cities version \S+: 694 rows at {re.escape(uri)}", out)

    shown = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "show_data_item.py"), "world-cities"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr
    assert "data item 'world-cities': 694 rows" in shown.stdout and f"written to {uri}" in shown.stdout


PARSE_A_DAG = """
import sys
import pendulum
from airflow.sdk import DAG
from airflow_python_exec import PythonJobOperator
with DAG("parse_me", schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    plain = PythonJobOperator(task_id="plain", job="jobs/hello")
    macros = PythonJobOperator(task_id="with_macros", job="jobs/hello", macros={"A": "{{ ds }}"}, cwd="sub")
heavy = ["airflow_python_exec.service", "airflow_python_exec.models", "airflow_python_exec.hooks.python_exec",
          "airflow_python_exec.builder", "dotenv"]  # cryptography: Airflow itself loads it
print([m for m in heavy if m in sys.modules])
print(list(plain.template_fields), list(macros.template_fields))
"""


def test_parsing_a_dag_file_loads_only_the_operator() -> None:
    """The dag-processor parses every DAG file over and over: the operator's module imports what
    only ``execute()`` needs (the hook, the service, the job models, the builder) when it runs, and
    only the arguments given are template fields (each is serialized after rendering)."""
    done = subprocess.run([sys.executable, "-c", PARSE_A_DAG], capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded, fields = done.stdout.strip().splitlines()[-2:]
    assert loaded == "[]"
    assert fields == "['job'] ['job', 'macros', 'cwd']"
