"""World cities by region: one mapped task per country group, then one task that gathers them.

``summarize`` is a ``PythonJobOperator`` expanded (dynamic task mapping) over fourteen country groups:
each mapped task calls the handler ``regions:group_summary`` of ``jobs/world_cities_by_region`` with
its group as parameters and pushes the summary it returns as its XCom. ``gather`` receives every
summary and ranks the groups. The job's lock is a byte-identical copy of the world-cities lock, so all
the world-cities examples share one cached environment per worker: under CeleryExecutor each worker
provisions it once, for however many of the mapped tasks it runs (``make e2e-celery`` checks that).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_python_exec import PythonJobOperator

# ISO 3166 country codes of each group.
GROUPS = {
    "G7": ["US", "CA", "GB", "FR", "DE", "IT", "JP"],
    "BRICS": ["BR", "RU", "IN", "CN", "ZA"],
    "Nordics": ["DK", "FI", "IS", "NO", "SE"],
    "Benelux": ["BE", "NL", "LU"],
    "Baltics": ["EE", "LV", "LT"],
    "Iberia": ["ES", "PT", "AD"],
    "Maghreb": ["DZ", "LY", "MA", "MR", "TN"],
    "Gulf": ["BH", "KW", "OM", "QA", "SA", "AE"],
    "ASEAN": ["BN", "KH", "ID", "LA", "MY", "MM", "PH", "SG", "TH", "VN"],
    "Andes": ["BO", "CL", "CO", "EC", "PE", "VE"],
    "Central America": ["BZ", "CR", "SV", "GT", "HN", "NI", "PA"],
    "Oceania": ["AU", "NZ", "FJ", "PG"],
    "East Africa": ["KE", "TZ", "UG", "RW", "ET"],
    "Caucasus": ["AM", "AZ", "GE"],
}

with DAG(
    dag_id="world_cities_by_region",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["python_exec", "example"],
) as dag:
    summaries = PythonJobOperator.partial(
        task_id="summarize",
        job="jobs/world_cities_by_region",
        # The UI lists the mapped tasks by group name instead of 0, 1, 2...
        map_index_template="{{ task.parameters['group'] }}",
    ).expand(parameters=[{"group": name, "countries": codes} for name, codes in GROUPS.items()])

    @task
    def gather(results: list[dict]) -> dict:
        """Rank the groups by their cities' population; return the totals and the ranking."""
        ranked = sorted(results, key=lambda r: r["population"], reverse=True)
        for r in ranked:
            top = r["largest_city"]
            print(
                f"{r['group']:>16}: {r['cities']:>5,} cities, {r['population']:>13,} people; "
                f"largest {top['name']} ({top['country']})"
            )
        return {"groups": [r["group"] for r in ranked], "cities": sum(r["cities"] for r in ranked)}

    gather(summaries.output)
