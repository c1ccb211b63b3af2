"""The platform's HelloWorld job, run three ways.

- ``dotenv_loaded_by_script``: the job as uploaded; ``app.py`` loads ``.env`` itself with python-dotenv.
- ``dotenv_as_macros``: the engine converts ``.env`` into variables, and a macro overrides one entry.
- ``macro_from_param``: a macro taken from a DAG ``Param``; change it in "Trigger DAG" in the UI.

``job.json`` adds a plain macro and a ``secure`` one (a Fernet token); the script prints the decrypted
token and the task log shows ``***``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_python_exec import PythonJobOperator

with DAG(
    dag_id="hello_python_exec",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"app_name": Param("HelloWorld from the UI", type="string", description="APP_NAME for the job")},
    tags=["python_exec", "example"],
) as dag:
    dotenv_loaded_by_script = PythonJobOperator(task_id="dotenv_loaded_by_script", job="jobs/hello")

    dotenv_as_macros = PythonJobOperator(
        task_id="dotenv_as_macros",
        job="jobs/hello",
        dotenv_as_macros=True,
        macros={"APP_VERSION": "2.0.0-macro"},
    )

    macro_from_param = PythonJobOperator(
        task_id="macro_from_param",
        job="jobs/hello",
        macros={"APP_NAME": "{{ params.app_name }}"},
    )

    dotenv_loaded_by_script >> dotenv_as_macros >> macro_from_param
