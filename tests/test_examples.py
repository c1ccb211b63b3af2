"""Every example DAG run as Airflow 3 runs a manual trigger: ``dag.test(logical_date=None)``.

``airflow dags trigger`` and the REST API (``"logical_date": null``) create runs without a logical
date, so templates such as ``{{ ds }}`` are undefined there; the examples must not use them. The DAGs
are loaded from ``example_dags/`` (the demo's DAGs folder), jobs and locks as shipped, the environment
cache being the one ``make test`` provisioned, so no network is needed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import REPO, shipped, task_log_lines

pytestmark = pytest.mark.smoke

EXAMPLES = REPO / "example_dags"


@pytest.fixture(scope="module", autouse=True)
def _example_dags_folder():
    """Make ``example_dags/`` the DAGs folder while this module runs.

    ``dag.test()`` creates its run for the DAG as serialized from the DAGs-folder bundle, and Airflow
    reads ``[core] dags_folder`` once per process into ``airflow.settings.DAGS_FOLDER``: an earlier
    module (test_airflow.py) may have pointed it at its own folder, where these DAGs are not.
    """
    from airflow import settings

    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(EXAMPLES))
    mp.setattr(settings, "DAGS_FOLDER", str(EXAMPLES))
    yield
    mp.undo()


def example_dag(name: str):
    """Import ``example_dags/<name>.py`` and return its ``dag`` (its ``fileloc`` is that file)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def run_without_logical_date(dag, capfd, caplog, **kwargs) -> tuple[dict[str, str], str]:
    """``dag.test(logical_date=None)``; return each task's final state and everything logged."""
    with caplog.at_level(logging.INFO):
        dag_run = dag.test(logical_date=None, **kwargs)
    out, err = capfd.readouterr()
    assert dag_run.logical_date is None
    states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()}
    return states, out + err + caplog.text


def run_dates() -> set[str]:
    """Today's UTC date, and tomorrow's in case the run crosses midnight."""
    today = datetime.now(timezone.utc)
    return {d.strftime("%Y-%m-%d") for d in (today, today + timedelta(days=1))}


def test_every_example_dag_is_tested_here() -> None:
    tested = {
        "hello_python_exec",
        "daily_python_exec",
        "world_cities",
        "world_cities_function",
        "world_cities_by_region",
        "python_jobs",
    }
    assert {p.stem for p in shipped(EXAMPLES, "*.py")} == tested


def test_hello_example_without_logical_date(capfd, caplog) -> None:
    states, log = run_without_logical_date(example_dag("hello_python_exec"), capfd, caplog)
    assert states == {
        "dotenv_loaded_by_script": "success",
        "dotenv_as_macros": "success",
        "macro_from_param": "success",
    }
    job_lines = task_log_lines(log)
    assert job_lines.count("Hello from HelloWorld Demo") == 2  # .env loaded by the script; .env as macros
    assert "Version: 2.0.0-macro" in log
    assert "Hello from HelloWorld from the UI" in log  # the Param's default
    assert "API token: ***" in log and "demo-api-token" not in log


def test_daily_example_without_logical_date_reports_the_run_date(capfd, caplog) -> None:
    expected = run_dates()
    states, log = run_without_logical_date(example_dag("daily_python_exec"), capfd, caplog)
    assert states == {"daily_report": "success", "hello_taskflow": "success"}
    assert any(f"Daily report for {day}" in log for day in expected), log[-3000:]
    assert "DAG daily_python_exec run manual__" in log
    assert "Hello from HelloWorld via @task.python_job" in log


def test_world_cities_example_without_logical_date(capfd, caplog, tmp_path: Path) -> None:
    expected = {day.replace("-", "") for day in run_dates()}
    dag = example_dag("world_cities")
    states, log = run_without_logical_date(dag, capfd, caplog, run_conf={"output_dir": str(tmp_path)})
    assert states == {"provision": "success", "largest_cities": "success"}
    assert "[python_exec] cache hit: environment" in log  # largest_cities starts on the provisioned env
    assert "Largest city: Shanghai, China" in log
    (csv,) = tmp_path.glob("largest_cities_*.csv")
    assert csv.stem.rsplit("_", 1)[1] in expected
    rows = csv.read_text().splitlines()
    assert rows[0] == "country,country_code,rank,city,population,latitude,longitude"
    assert any(row.startswith("Japan,JP,1,Tokyo,") for row in rows)


def test_world_cities_writes_under_airflow_home_by_default() -> None:
    """The demo keeps its output inside its throw-away AIRFLOW_HOME, not in /tmp."""
    output_dir = example_dag("world_cities").params["output_dir"]
    assert Path(output_dir) == Path(os.environ["AIRFLOW_HOME"]) / "output" / "world_cities"


def test_world_cities_function_example_without_logical_date(capfd, caplog) -> None:
    """The producer publishes a new world-cities version; the asset-scheduled DAG reads that one."""
    spec = importlib.util.spec_from_file_location(
        "example_world_cities_function", EXAMPLES / "world_cities_function.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert list(module.report_dag.timetable.asset_condition.objects) == [module.world_cities]  # on the asset
    assert module.dag.get_task("summarize").upstream_task_ids == {"download_and_process"}  # the reference

    states, log = run_without_logical_date(module.dag, capfd, caplog)
    assert states == {"download_and_process": "success", "summarize": "success"}, log[-3000:]
    match = re.search(r"output 'world-cities' \(table, 694 rows, [\d,]+ bytes\) written to (file://\S+)", log)
    assert match, log[-3000:]  # per_country=5 (the Param, an int)
    uri = match.group(1)
    assert f"world-cities: 694 rows from {uri}" in log  # summarize read that exact version
    assert Path(uri[len("file://") :]).is_file()

    states, log = run_without_logical_date(module.report_dag, capfd, caplog)
    assert states == {"report": "success"}, log[-3000:]
    assert re.search(rf"world-cities version \S+: 694 rows at {re.escape(uri)}", log)  # the latest version
    assert "Italy: Rome, Milan, Naples" in log


def test_world_cities_by_region_maps_every_group_and_gathers_them(capfd, caplog) -> None:
    dag = example_dag("world_cities_by_region")
    states, log = run_without_logical_date(dag, capfd, caplog)
    assert states == {"summarize": "success", "gather": "success"}
    # gather prints one ranked line per group: it saw every mapped task's result.
    groups = dag.get_task("summarize").expand_input.value["parameters"]
    assert len(groups) >= 12
    assert all(f"{g['group']}: " in log and " cities, " in log for g in groups)
    assert "   BRICS: 9,644 cities, 1,465,696,108 people; largest Shanghai (China)" in log
    assert "Baltics:    66 cities,     4,416,498 people; largest Riga (Latvia)" in log


def test_python_jobs_example_makes_each_uploaded_job_a_dag(monkeypatch, capfd, caplog, tmp_path: Path) -> None:
    """``python_jobs.py`` (``load_job_dags(globals())``): nothing without ``upload_folder``; with it,
    the hello job copied there as an upload is ``job_hello``, whose plain macro is a Param."""

    spec = importlib.util.spec_from_file_location("example_python_jobs", EXAMPLES / "python_jobs.py")
    monkeypatch.delenv("AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER", raising=False)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert not [name for name in vars(module) if name.startswith("job_")]

    uploads = tmp_path / "uploads"
    shutil.copytree(EXAMPLES / "jobs" / "hello", uploads / "hello")
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER", str(uploads))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.job_hello
    assert set(dag.params) == {"RUN_MODE"}  # API_TOKEN is secure: never a Param
    states, log = run_without_logical_date(dag, capfd, caplog, run_conf={"RUN_MODE": "from the Trigger form"})
    assert states == {"hello": "success"}
    assert "Run mode: from the Trigger form" in log
    assert "API token: ***" in log and "demo-api-token" not in log
