"""The "Python jobs" page as a deployment grows: the catalog and its endpoints at N = 10, 100, 1,000.

    python benchmarks/catalog.py [--sizes 10,100,1000] [--rounds 7]      (part of make bench)

Everything runs in this process against a throw-away metadata database (SQLite, made by
``airflow db migrate`` in a temporary AIRFLOW_HOME, removed afterwards):

``GET /api/jobs`` and ``GET /`` answer their first page (50 jobs) of the N, as a browser asks.

- uploads: N job folders in ``upload_folder`` (``job.json`` with a plain and a secure macro,
  ``app.py``, ``.env``), no DAG; ``GET /api/jobs`` as one viewer; target <= 100 ms at 1,000;
- DAGs: N serialized DAGs, each a ``PythonJobOperator`` task running its own job folder and one
  finished run; the catalog alone (``build_catalog``), ``GET /api/jobs`` and the HTML page ``GET /``
  as one viewer (a real JWT of Airflow's simple auth manager); target <= 150 ms at 1,000.

Each figure is the median of ``--rounds`` requests after a first one (printed too: it fills the
caches); the growth is the figure at the largest N over the figure at the smallest, from the same
run (linear growth is 100x from 10 to 1,000). To measure another checkout of the package (before a
change), put its source first: ``PYTHONPATH=/path/to/checkout python benchmarks/catalog.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS_MS = {"uploads /api/jobs": 100.0, "DAGs /api/jobs": 150.0, "DAGs page /": 150.0}
START = "2026-01-01T00:00:00+00:00"
#: The file each benchmark DAG is "parsed" from (its code is stored, as the DAG processor stores it).
DAG_FILE = """import pendulum
from airflow.sdk import DAG
from airflow_python_exec import PythonJobOperator

with DAG("bench_{i:04d}", schedule=None, start_date=pendulum.parse("{start}")) as dag:
    PythonJobOperator(task_id="run", job="jobs/job_{i:04d}")
"""


def _environment(home: Path) -> None:
    """Point Airflow at a throw-away home before it is imported (this process and ``airflow db migrate``)."""
    from cryptography.fernet import Fernet

    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager."
            "SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API_AUTH__JWT_SECRET": Fernet.generate_key().decode() * 2,
            "AIRFLOW__PYTHON_EXEC__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__PYTHON_EXEC__INSTALL_PATH": sys.prefix,
            "AIRFLOW__PYTHON_EXEC__CACHE_DIR": str(home / "cache"),
        }
    )
    (home / "dags").mkdir(parents=True)
    (home / "dags" / ".airflowignore").write_text("jobs/\n")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=False, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"airflow db migrate failed:\n{done.stdout}{done.stderr}")


def write_job_folder(folder: Path, job_id: str) -> None:
    """A job folder as users write them: ``job.json`` (a plain and a secure macro), ``app.py``, ``.env``."""
    from airflow_python_exec.crypto import encrypt

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text("import os\nprint('hello', os.environ['APP_NAME'])\n")
    token = encrypt("bench-secret", [os.environ["AIRFLOW__PYTHON_EXEC__FERNET_KEY"]])
    macros = [{"key": "APP_NAME", "value": job_id}, {"key": "API_TOKEN", "value": token, "secure": True}]
    job = {"jobId": job_id, "packageName": "app.py", "runtimeConfig": {"macros": macros}}
    (folder / "job.json").write_text(json.dumps(job))
    (folder / ".env").write_text("DB_PASSWORD=bench-env-secret\nREGION=eu\n")


def add_dags(dags_dir: Path, first: int, last: int) -> None:
    """Serialize DAGs ``bench_<first>`` .. ``bench_<last - 1>`` into the metadata database (as the DAG
    processor writes them), each with one finished run whose task succeeded."""
    import pendulum
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.models.dagrun import DagRun
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import update

    from airflow_python_exec import PythonJobOperator

    start = pendulum.parse(START)
    dags = []
    for i in range(first, last):
        write_job_folder(dags_dir / "jobs" / f"job_{i:04d}", f"job_{i:04d}")
        with DAG(f"bench_{i:04d}", schedule=None, start_date=start) as dag:
            PythonJobOperator(task_id="run", job=f"jobs/job_{i:04d}")
        path = dags_dir / f"bench_{i:04d}.py"
        path.write_text(DAG_FILE.format(i=i, start=START))
        dag.fileloc = str(path)
        dag.relative_fileloc = path.name
        dags.append(LazyDeserializedDAG.from_dag(dag))
    with create_session() as session:
        update_dag_parsing_results_in_db("dags-folder", None, dags, {}, None, set(), session=session)
    with create_session() as session:
        for i in range(first, last):
            dag = SerializedDagModel.get_dag(f"bench_{i:04d}", session=session)
            run = dag.create_dagrun(
                run_id=f"manual__{i:04d}",
                logical_date=None,
                data_interval=None,
                run_after=start.add(minutes=i),
                run_type=DagRunType.MANUAL,
                triggered_by=DagRunTriggeredByType.TEST,
                state=DagRunState.SUCCESS,
                session=session,
            )
            session.flush()
            session.execute(
                update(TaskInstance)
                .where(TaskInstance.dag_id == run.dag_id, TaskInstance.run_id == run.run_id)
                .values(state=TaskInstanceState.SUCCESS)
            )
        session.execute(update(DagRun).values(state=DagRunState.SUCCESS))


def timed(call, rounds: int) -> tuple[float, float]:
    """``(first, median of the next rounds)``, milliseconds."""
    gc.collect()
    times = []
    for _ in range(rounds + 1):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times[0], statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.sizes.split(","))
    home = Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    try:
        _environment(home)
        run(home, sizes, args.rounds)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run(home: Path, sizes: list[int], rounds: int) -> None:
    from airflow.api_fastapi.app import init_auth_manager, purge_cached_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from fastapi.testclient import TestClient

    import airflow_python_exec
    from airflow_python_exec.plugins.app import create_app

    print(f"\nPython jobs page, in-process ({Path(airflow_python_exec.__file__).parent.parent})")
    DagBundlesManager().sync_bundles_to_db()
    purge_cached_app()
    viewer = {
        "Authorization": "Bearer "
        + init_auth_manager().generate_jwt(SimpleAuthManagerUser(username="viewer", role="viewer"))
    }
    with TestClient(create_app()) as client:  # one event loop for every request, as a server has
        measure(client, viewer, home, sizes, rounds)


def measure(client, viewer: dict[str, str], home: Path, sizes: list[int], rounds: int) -> None:
    from airflow_python_exec.plugins import catalog

    dags_dir, uploads, empty = home / "dags", home / "uploads", home / "empty"
    empty.mkdir()

    def get(path: str) -> None:
        answer = client.get(path, headers=viewer)
        assert answer.status_code == 200, answer.text

    results: dict[str, dict[int, tuple[float, float]]] = {}
    os.environ["AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER"] = str(uploads)
    made = 0
    for n in sizes:  # upload folders first, while the database holds no DAG
        for i in range(made, n):
            write_job_folder(uploads / f"up_{i:04d}", f"up_{i:04d}")
        made = n
        results.setdefault("uploads /api/jobs", {})[n] = timed(lambda: get("/api/jobs"), rounds)
        assert client.get("/api/jobs", headers=viewer).json()["total_entries"] == n
    os.environ["AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER"] = str(empty)
    made = 0
    for n in sizes:
        started = time.perf_counter()
        add_dags(dags_dir, made, n)
        print(f"  (set-up: {n - made} DAGs with a run each in {time.perf_counter() - started:.1f} s)")
        made = n
        results.setdefault("DAGs catalog", {})[n] = timed(lambda: catalog.build_catalog(None), rounds)
        results.setdefault("DAGs /api/jobs", {})[n] = timed(lambda: get("/api/jobs"), rounds)
        results.setdefault("DAGs page /", {})[n] = timed(lambda: get("/"), rounds)
        answer = client.get("/api/jobs", headers=viewer).json()  # one page (50) of the n jobs
        jobs = answer["jobs"]
        assert answer["total_entries"] == n and all(job["usedBy"][0]["task_state"] == "success" for job in jobs)
    print(f"{'measurement':<22}" + "".join(f"{f'N={n:,}':>18}" for n in sizes) + f"{'growth':>9}  verdict")
    print(f"{'':<22}" + "".join(f"{'first / median ms':>18}" for _ in sizes))
    for name, by_n in results.items():
        cells = "".join(f"{f'{by_n[n][0]:.0f} / {by_n[n][1]:.1f}':>18}" for n in sizes)
        growth = by_n[sizes[-1]][1] / by_n[sizes[0]][1]
        target = TARGETS_MS.get(name)
        verdict = ""
        if target is not None:
            value = by_n[sizes[-1]][1]
            verdict = f"target <= {target:.0f} ms at N={sizes[-1]:,}: " + ("met" if value <= target else "missed")
        print(f"{name:<22}{cells}{growth:>8.1f}x  {verdict}")


if __name__ == "__main__":
    main()
