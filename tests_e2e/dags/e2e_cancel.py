"""make e2e: a task to cancel from the REST API while its job sleeps with detached processes."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_python_exec import PythonJobOperator

with DAG(
    dag_id="e2e_cancel",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"pids_file": Param("/tmp/e2e_cancel.pids", type="string")},
    tags=["python_exec", "e2e"],
) as dag:
    PythonJobOperator(task_id="sleepy", job="jobs/sleepy", macros={"PIDS_FILE": "{{ params.pids_file }}"})
