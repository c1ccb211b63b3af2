"""The "Python jobs" page under several viewers at once, against a running ``make airflow`` deployment.

    AIRFLOW_PORT=8095 make airflow
    AIRFLOW_PORT=8095 .venv/bin/python benchmarks/page_load.py [--dags 1000] [--viewers 4] [--rounds 5]
    make airflow-stop

Adds ``--dags`` DAGs to the deployment, as a user would: one DAG file
(``<dags_folder>/page_load_bench/page_load_dags.py``, gitignored) defining ``page_load_0000`` ...,
each a ``PythonJobOperator`` running its own job folder, paused from creation, each with one run
triggered through the REST API (queued: a paused DAG's run never starts, so no task loads the
machine). Then, logged in as the deployment's admin (``POST /auth/token``):

- one viewer: ``GET /python-exec/api/jobs``, median of ``--rounds``;
- ``--viewers`` viewers at once, each asking for the JSON and the HTML page ``--rounds`` times:
  median and slowest request; target <= 500 ms each at 1,000 DAGs;
- meanwhile ``GET /api/v2/monitor/health`` every 0.1 s: its slowest answer (the api-server's event
  loop, which also serves the task execution API, must stay free).

The bench DAG file and job folders are removed at the end (``--keep`` leaves them); the DAG
processor then marks the DAGs stale and the page stops listing them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
PREFIX = "page_load_"
TARGET_MS = 500.0
DAG_FILE = """# Written by benchmarks/page_load.py; removed when it ends.
import pendulum
from airflow.sdk import DAG
from airflow_python_exec import PythonJobOperator

for i in range({n}):
    with DAG(f"{prefix}{{i:04d}}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
             is_paused_upon_creation=True, tags=["page-load-bench"]) as dag:
        PythonJobOperator(task_id="run", job=f"jobs/job_{{i:04d}}")
    globals()[dag.dag_id] = dag
"""


def dags_folder() -> Path:
    """The deployment's ``[core] dags_folder`` (its AIRFLOW_HOME: ``$AIRFLOW_HOME``, else ``.airflow_home``)."""
    os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".airflow_home"))
    from airflow.configuration import conf

    return Path(conf.get("core", "dags_folder"))


def admin_token(base: str) -> str:
    """A JWT for the deployment's admin, whose password ``make airflow`` keeps in ``run/passwords.json``."""
    passwords = json.loads((Path(os.environ["AIRFLOW_HOME"]) / "run" / "passwords.json").read_text())
    answer = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": passwords["admin"]}, timeout=30)
    answer.raise_for_status()
    return answer.json()["access_token"]


def write_bench(folder: Path, n: int) -> None:
    for i in range(n):
        job = folder / "jobs" / f"job_{i:04d}"
        job.mkdir(parents=True, exist_ok=True)
        (job / "app.py").write_text("print('hello')\n")
        macros = [{"key": "APP_NAME", "value": f"job_{i:04d}"}]
        (job / "job.json").write_text(
            json.dumps({"jobId": f"job_{i:04d}", "packageName": "app.py", "runtimeConfig": {"macros": macros}})
        )
        (job / ".env").write_text("DB_PASSWORD=x\nREGION=eu\n")
    (folder / ".airflowignore").write_text("jobs/\n")
    (folder / "page_load_dags.py").write_text(DAG_FILE.format(n=n, prefix=PREFIX))


def wait_for_dags(http: httpx.Client, n: int, timeout_s: float = 900) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = http.get("/api/v2/dags", params={"dag_id_pattern": PREFIX, "limit": 1, "paused": True})
        if answer.status_code == 200 and answer.json()["total_entries"] >= n:
            return
        time.sleep(3)
    raise SystemExit(f"the DAG processor did not list {n} {PREFIX}* DAGs within {timeout_s:.0f} s")


def trigger_runs(http: httpx.Client, n: int) -> None:
    """One run per DAG (skipped for a DAG that has one already, so the script can be run again)."""

    def one(i: int) -> None:
        dag_id = f"{PREFIX}{i:04d}"
        runs = http.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 1})
        if runs.status_code == 200 and runs.json()["total_entries"]:
            return
        for _ in range(10):  # SQLite answers "database is locked" (500) while another process writes
            answer = http.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})
            if answer.status_code in (200, 201, 409):
                return
            time.sleep(1)
        raise SystemExit(f"triggering {dag_id}: {answer.status_code} {answer.text}")

    for i in range(n):  # one at a time: SQLite takes one writer
        one(i)


def timed_get(http: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    answer = http.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 200:
        raise SystemExit(f"GET {path}: {answer.status_code} {answer.text[:300]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('AIRFLOW_PORT', '8080')}")
    parser.add_argument("--dags", type=int, default=1000)
    parser.add_argument("--viewers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="leave the bench DAGs and job folders in place")
    args = parser.parse_args()
    folder = dags_folder() / "page_load_bench"
    write_bench(folder, args.dags)
    try:
        run(args, folder)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def run(args: argparse.Namespace, folder: Path) -> None:
    headers = {"Authorization": f"Bearer {admin_token(args.url)}"}
    with httpx.Client(base_url=args.url, headers=headers, timeout=120) as http:
        started = time.monotonic()
        wait_for_dags(http, args.dags)
        trigger_runs(http, args.dags)
        listed = http.get("/python-exec/api/jobs").json()["jobs"]
        bench = [j for j in listed if any(u["dag_id"].startswith(PREFIX) for u in j["usedBy"])]
        with_run = sum(1 for j in bench if j["usedBy"][0]["last_run"])
        print(
            f"\nPython jobs page under load: {args.url}, {len(bench)} bench DAGs ({with_run} with a run), "
            f"{len(listed)} jobs listed; set-up {time.monotonic() - started:.0f} s"
        )
        timed_get(http, "/python-exec/api/jobs")  # warm-up
        one = [timed_get(http, "/python-exec/api/jobs") for _ in range(args.rounds)]
        one_page = [timed_get(http, "/python-exec/") for _ in range(args.rounds)]

    stop = threading.Event()
    health: list[float] = []

    def probe() -> None:
        with httpx.Client(base_url=args.url, timeout=60) as http:
            while not stop.is_set():
                health.append(timed_get(http, "/api/v2/monitor/health"))
                time.sleep(0.1)

    def viewer(_: int) -> list[tuple[str, float]]:
        with httpx.Client(base_url=args.url, headers=headers, timeout=120) as http:
            return [
                (path, timed_get(http, path))
                for _ in range(args.rounds)
                for path in ("/python-exec/api/jobs", "/python-exec/")
            ]

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with ThreadPoolExecutor(args.viewers) as pool:
            results = [item for items in pool.map(viewer, range(args.viewers)) for item in items]
    finally:
        stop.set()
        prober.join()
    json_ms = [ms for path, ms in results if path.endswith("/api/jobs")]
    page_ms = [ms for path, ms in results if path.endswith("/")]
    both = json_ms + page_ms
    verdict = "met" if statistics.median(both) <= TARGET_MS and max(both) <= TARGET_MS else "missed"

    def row(name: str, values: list[float]) -> None:
        print(f"{name:<52}{statistics.median(values):>10.0f}{max(values):>9.0f}")

    print(f"{'measurement':<52}{'median ms':>10}{'max ms':>9}")
    row("1 viewer, GET /python-exec/api/jobs", one)
    row("1 viewer, GET /python-exec/ (HTML)", one_page)
    row(f"{args.viewers} viewers at once, GET /python-exec/api/jobs", json_ms)
    row(f"{args.viewers} viewers at once, GET /python-exec/ (HTML)", page_ms)
    row("health check meanwhile, every 0.1 s", health)
    print(f"target <= {TARGET_MS:.0f} ms each with {args.viewers} viewers at {args.dags:,} DAGs: {verdict}")


if __name__ == "__main__":
    sys.exit(main())
