"""Resource limits in real Airflow (``dag.test()``): a run ended by a limit fails its task and is
retried, whatever ``exitCodes`` map; what a run had is in XCom ``python_exec_run``; a typo in
``resources=`` fails the DAG's parse."""

from __future__ import annotations

import logging
import re

import pytest
from conftest import bearer, write_job
from test_airflow import _engine, dags, jobs, load_dag  # noqa: F401 - fixtures
from test_data_items_airflow import _xcoms

from airflow_python_exec.errors import JobConfigError


def test_a_limit_fails_the_task_with_retries_and_the_facts_are_in_xcom(dags, jobs, capfd, caplog) -> None:
    write_job(
        jobs / "sleepy",
        "import time\ntime.sleep(60)\n",
        job={"jobId": "sleepy", "runtimeConfig": {"exitCodes": {"124": "success"}}},
    )
    write_job(jobs / "ok", "print('fine')\n")
    dag = load_dag(
        dags,
        f"""
        from datetime import timedelta
        with DAG("limits_dag", schedule=None, start_date=START,
                 default_args={{"retries": 1, "retry_delay": timedelta(seconds=0.5)}}) as dag:
            PythonJobOperator(task_id="sleepy", job="jobs/{jobs.name}/sleepy", resources={{"timeout": "1s"}})
            PythonJobOperator(task_id="ok", job="jobs/{jobs.name}/ok", resources={{"memory": "256Mi", "pids": 64}})
    """,
        "limits_dag",
    )
    with caplog.at_level(logging.INFO):
        dag_run = dag.test()
    log = "".join(capfd.readouterr()) + caplog.text
    tries = {ti.task_id: (ti.state, ti.try_number) for ti in dag_run.get_task_instances()}
    assert tries == {"sleepy": ("failed", 2), "ok": ("success", 1)}
    assert "job sleepy ended: timeout 1 s reached" in log
    facts = _xcoms(dag, "ok")["python_exec_run"]
    assert facts["resources"]["memory_bytes"] == 256 << 20 and facts["resources"]["pids"] == 64
    assert facts["sandbox"] == {"mode": "off"} and facts["environment"] is None


def test_a_typo_in_resources_fails_the_dags_parse(dags, jobs) -> None:
    with pytest.raises(JobConfigError, match="resources has no key 'memroy'; did you mean 'memory'"):
        load_dag(
            dags,
            """
            with DAG("typo_dag", schedule=None, start_date=START) as dag:
                PythonJobOperator(task_id="t", job="jobs/x", resources={"memroy": "1Gi"})
            """,
            "typo_dag",
        )


def test_the_job_page_says_what_the_last_run_ran_with(client, auth, key, dags, jobs, capfd, caplog) -> None:
    write_job(jobs / "ranwith", "print('hi')\n", job={"jobId": "ranwith"})
    dag = load_dag(
        dags,
        f"""
        with DAG("ran_with_dag", schedule=None, start_date=START) as dag:
            PythonJobOperator(task_id="t", job="jobs/{jobs.name}/ranwith", resources={{"memory": "256Mi"}})
    """,
        "ran_with_dag",
    )
    with caplog.at_level(logging.INFO):
        assert dag.test().state == "success"
    job = client.get("/api/jobs/ranwith", headers=bearer(auth, "viewer")).json()
    (use,) = job["usedBy"]
    expected = r"Python [\d.]+, no environment; sandbox off; memory 256 MiB \((cgroup v[12]|rlimits)\)"
    assert re.fullmatch(expected, use["ran_with"]), use["ran_with"]
    page = client.get("/jobs/ranwith", headers=bearer(auth, "viewer")).text
    assert "Ran with" in page and "memory 256 MiB" in page
