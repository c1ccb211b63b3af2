"""`make demo` ends with scripts/demo_summary.py: what ran and where to look."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import REPO, write_job
from test_airflow import dags, load_dag, run_dag  # noqa: F401 - dags is a fixture

_spec = importlib.util.spec_from_file_location("demo_summary", REPO / "scripts" / "demo_summary.py")
assert _spec is not None and _spec.loader is not None
demo_summary = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo_summary)


def test_the_summary_names_each_run_its_tasks_and_where_to_look(
    dags: Path, tmp_path: Path, capfd, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_job(dags / "jobs" / "greet", "print('hi')\n")
    dag = load_dag(
        dags,
        """
        with DAG("summary_demo", schedule=None, start_date=START) as dag:
            PythonJobOperator(task_id="greet", job="jobs/greet")
        """,
        "summary_demo",
    )
    states, _ = run_dag(dag, capfd, caplog)
    assert states == {"greet": "success"}
    home = tmp_path / "home"
    (home / "output" / "world_cities").mkdir(parents=True)
    (home / "output" / "world_cities" / "largest_cities_20260101.csv").write_text("city,pop\nA,1\nB,2\n")
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    capfd.readouterr()

    assert demo_summary.main(["summary_demo"]) == 0
    out = capfd.readouterr().out
    assert "make demo: every DAG succeeded" in out
    assert any(line.split() == ["summary_demo", "success"] for line in out.splitlines())
    assert any(line.split()[:2] == ["greet", "success"] for line in out.splitlines())
    assert f"{home}/logs/dag_id=<dag>/run_id=<run>/task_id=<task>/" in out
    assert f"{home}/output/world_cities/largest_cities_20260101.csv (2 cities" in out


def test_a_dag_that_did_not_run_fails_the_summary(dags: Path, capsys) -> None:
    assert demo_summary.main(["no_such_dag_ran"]) == 1
    out = capsys.readouterr().out
    assert "SOMETHING FAILED" in out and any(
        line.split() == ["no_such_dag_ran", "no", "run"] for line in out.splitlines()
    )
