"""Runs the job that tests_e2e/test_python_jobs_page.py uploads through the "Python jobs" page
(``[python_exec] upload_folder`` is this folder's ``uploads/``)."""

import pendulum
from airflow.sdk import DAG

from airflow_python_exec import PythonJobOperator

with DAG("e2e_uploaded_job", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
    PythonJobOperator(task_id="greet", job="uploads/e2e_greet")
