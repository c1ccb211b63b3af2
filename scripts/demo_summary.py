"""The end of `make demo`: what ran and where to look, instead of Airflow's last log line.

Reads the newest run of each demo DAG from the metadata database of ``$AIRFLOW_HOME`` (through
Airflow's own models) and prints, for each, its state and its tasks' states and durations; then
where the task logs are (``airflow dags test`` prints them in the terminal, above this summary, and
writes no log files), the world-cities CSV the demo wrote, and the environment cache.

Usage: python scripts/demo_summary.py DAG_ID...
Exit status: 1 when a DAG has no run or its newest run did not succeed, else 0.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path


def _home_relative(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it (``.airflow_home/...``)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _runs(dag_ids: list[str]) -> list[tuple[str, str | None, list[tuple[str, str | None, float | None]]]]:
    """For each DAG: its newest run's state and its tasks as ``(task, state, seconds)``."""
    from airflow.models import DagRun, TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    found = []
    with create_session() as session:
        for dag_id in dag_ids:
            run = session.scalars(
                select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).limit(1)
            ).first()
            if run is None:
                found.append((dag_id, None, []))
                continue
            tis = session.scalars(
                select(TaskInstance)
                .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id)
                .order_by(TaskInstance.start_date, TaskInstance.task_id, TaskInstance.map_index)
            ).all()
            tasks = [
                (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]", ti.state, ti.duration)
                for ti in tis
            ]
            found.append((dag_id, run.state, tasks))
    return found


def main(dag_ids: list[str]) -> int:
    home = Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser()
    runs = _runs(dag_ids)
    ok = all(state == "success" for _, state, _ in runs)
    width = max(len(dag_id) for dag_id in dag_ids)
    print()
    print("=" * 78)
    print(f"make demo: {'every DAG succeeded' if ok else 'SOMETHING FAILED'} (the newest run of each DAG)")
    for dag_id, state, tasks in runs:
        print(f"  {dag_id:<{width}}  {state or 'no run'}")
        for task_id, task_state, seconds in tasks:
            took = f"{seconds:6.2f} s" if seconds is not None else ""
            print(f"  {'':<{width}}    {task_id:<36} {task_state or '-':<10} {took}")
    print("Where to look:")
    print("  task logs     printed above (airflow dags test writes no log files): each task from")
    print("                '[DAG TEST] starting task_id=<task>' to '[DAG TEST] end task'; the job's own lines")
    print("                are tagged [airflow_python_exec.job], the provider's start with [python_exec].")
    print("                Under `make airflow` they are in the UI's task log and in")
    print(f"                {_home_relative(home / 'logs')}/dag_id=<dag>/run_id=<run>/task_id=<task>/")
    output = home / "output" / "world_cities"
    csvs = sorted(output.glob("largest_cities_*.csv"), key=lambda p: p.stat().st_mtime)
    if csvs:
        with csvs[-1].open(newline="") as f:
            rows = sum(1 for _ in csv.reader(f)) - 1
        print(f"  world cities  {_home_relative(csvs[-1])} ({rows:,} cities, the ten largest per country)")
    else:
        print(f"  world cities  no CSV in {_home_relative(output)}")
    envs = home / "cache" / "envs"
    count = sum(1 for p in envs.iterdir() if p.is_dir()) if envs.is_dir() else 0
    print(f"  environments  {_home_relative(envs)} ({count} cached; `airflow-python-exec envs list`)")
    print("  next          `make airflow` for the UI (Python jobs page), docs/ for the rest")
    print("=" * 78)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
