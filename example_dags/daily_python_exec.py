"""A job run as a daily batch by the scheduler (``catchup=False``: only the latest interval runs).

The report date is a templated macro: the run's logical date, or for a run triggered without one
(Airflow 3's default for ``airflow dags trigger`` and the REST API) the date it was triggered.
``@task.python_job`` shows the TaskFlow form, where the function returns the job to run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_python_exec import PythonJobOperator

with DAG(
    dag_id="daily_python_exec",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["python_exec", "example"],
) as dag:
    report = PythonJobOperator(
        task_id="daily_report",
        job="jobs/daily_report",
        # Not "{{ ds }}": a run without a logical date has no ds (UndefinedError), but always a run_after.
        macros={"REPORT_DATE": "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"},
    )

    @task.python_job(macros={"APP_NAME": "HelloWorld via @task.python_job"})
    def hello_taskflow() -> str:
        return "jobs/hello"

    report >> hello_taskflow()
