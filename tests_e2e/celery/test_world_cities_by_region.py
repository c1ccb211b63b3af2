"""`make e2e-celery`: CeleryExecutor with two workers, each with its own environment cache.

The module starts its own deployment in ``$AIRFLOW_HOME/e2e-celery`` (a fresh one every time, kept
afterwards for its logs; the workers' environment caches are removed): Redis from Debian's
``redis-server`` on 127.0.0.1:6389 as broker and result backend, then ``scripts/airflow_local.sh``
with ``EXECUTOR=CeleryExecutor`` and two workers, the api-server on 127.0.0.1:8090. It triggers
``world_cities_by_region`` (fourteen mapped tasks and a gather task) and checks through the REST API
what an operator of several workers cares about: everything succeeds, both workers take part, each
builds the job's environment once, and the gather task gets every result.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import HOME, REPO, Api, events

PORT = os.environ.get("E2E_CELERY_PORT", "8090")
REDIS_PORT = os.environ.get("E2E_REDIS_PORT", "6389")
CELERY_HOME = HOME / "e2e-celery"
WORKERS = ("worker1", "worker2")
BIN = REPO / ".venv" / "bin"
DAG = "world_cities_by_region"
# A fresh home, two cold caches and fourteen tasks on a shared 2-core machine: past pyproject's 300 s.
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def celery_deployment() -> Api:
    """The running deployment's API client; everything it started is stopped afterwards, always."""
    fresh_home(CELERY_HOME)
    with redis_server(CELERY_HOME / "redis"):
        env = deployment_env()
        script = str(REPO / "scripts" / "airflow_local.sh")
        started = subprocess.run(["bash", script, "start"], env=env, capture_output=True, text=True)
        try:
            if started.returncode != 0:
                pytest.fail(f"airflow_local.sh start failed:\n{started.stdout}\n{started.stderr}")
            password = json.loads((CELERY_HOME / "run" / "passwords.json").read_text())["admin"]
            yield Api("admin", password, base=f"http://127.0.0.1:{PORT}")
        finally:
            subprocess.run(["bash", script, "stop"], env=env, capture_output=True, text=True)
            # About 150 MB each; the logs stay for a person to read.
            shutil.rmtree(CELERY_HOME / "workers", ignore_errors=True)


def fresh_home(home: Path) -> None:
    """A new AIRFLOW_HOME (airflow.cfg as `make` writes it, a migrated SQLite database): the
    provisioning count below needs empty caches, and a previous run's tasks must not answer."""
    shutil.rmtree(home, ignore_errors=True)
    env = {**os.environ, "AIRFLOW_HOME": str(home)}
    subprocess.run([str(BIN / "python"), str(REPO / "scripts" / "airflow_home.py"), str(home)], env=env, check=True)
    migrated = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr


def deployment_env() -> dict[str, str]:
    """What airflow_local.sh needs for CeleryExecutor: the home, the port, the workers, the broker."""
    redis = f"redis://127.0.0.1:{REDIS_PORT}"
    return {
        **os.environ,
        "AIRFLOW_HOME": str(CELERY_HOME),
        "AIRFLOW_PORT": PORT,
        "BIN": str(BIN),
        "EXECUTOR": "CeleryExecutor",
        "CELERY_WORKERS": " ".join(WORKERS),
        "AIRFLOW__CELERY__BROKER_URL": f"{redis}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"{redis}/1",
        # Not make airflow's defaults: no uploads (so no job DAGs) and new DAGs paused, so that only the
        # DAG this test triggers runs on the two workers.
        "AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER": "",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    }


@contextlib.contextmanager
def redis_server(folder: Path):
    """Debian's redis-server on loopback, in a folder of its own, persisting nothing; stopped on exit."""
    folder.mkdir(parents=True)
    log = folder / "redis.log"
    server = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            REDIS_PORT,
            "--dir",
            str(folder),
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(log),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_redis(server, log)
        yield server
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_for_redis(server: subprocess.Popen, log: Path) -> None:
    """Return once Redis answers PING; fail with its log if it exits (e.g. its port is taken)."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=int(REDIS_PORT), socket_timeout=2)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"redis-server exited with {server.returncode}:\n{log.read_text()}")
        with contextlib.suppress(redis.ConnectionError):
            if client.ping():
                return
        time.sleep(0.5)
    pytest.fail(f"redis-server did not answer on 127.0.0.1:{REDIS_PORT} within 60 s")


def worker_of(lines: list[str]) -> str:
    """The worker that ran a task: its environment's path is under that worker's cache_dir."""
    found = {m.group(1) for line in lines for m in re.finditer(r"/workers/([^/]+)/cache/", line)}
    assert len(found) == 1, lines
    return found.pop()


def celery_log_map_indexes(worker: str) -> set[int]:
    """The ``summarize`` map indexes a Celery worker says it executed (its own log, not the task's)."""
    text = (CELERY_HOME / "run" / f"worker-{worker}.log").read_text()
    return {
        int(m.group(1))
        for m in re.finditer(r"Executing workload in Celery: .*?task_id='summarize'.*?map_index=(\d+)", text)
    }


def test_mapped_jobs_spread_over_two_workers_each_provisioning_once(celery_deployment: Api) -> None:
    api = celery_deployment
    run_id = api.trigger(DAG)
    assert api.wait(DAG, run_id, timeout=900) == "success"
    tis = api.call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]
    mapped = [ti for ti in tis if ti["task_id"] == "summarize"]
    assert len(mapped) >= 12
    assert {ti["state"] for ti in mapped} == {"success"}

    tasks_per_worker, misses_per_worker = {w: set() for w in WORKERS}, Counter()
    for ti in mapped:
        lines = events(api.log(DAG, run_id, "summarize", map_index=ti["map_index"]), "airflow_python_exec")
        worker = worker_of(lines)
        tasks_per_worker[worker].add(ti["map_index"])
        misses_per_worker[worker] += sum("cache miss: provisioning environment" in line for line in lines)
    print(f"mapped tasks per worker: { {w: len(i) for w, i in tasks_per_worker.items()} }")
    assert all(tasks_per_worker.values())  # both workers took part
    # The same split as the Celery workers' own logs tell (the task instances' hostname cannot: on one
    # machine both workers report the same host).
    assert tasks_per_worker == {w: celery_log_map_indexes(w) for w in WORKERS}
    assert misses_per_worker == {worker: 1 for worker in WORKERS}  # each built the environment once

    gathered = api.call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/gather/xcomEntries/return_value")
    value = gathered["value"]
    value = json.loads(value) if isinstance(value, str) else value
    assert sorted(value["groups"]) == sorted(ti["rendered_map_index"] for ti in mapped)
