"""The provider under a running Airflow: triggered, logged, cancelled and scheduled as users do it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil
from conftest import REPO, events

from airflow_python_exec.crypto import decrypt, multi_fernet


def test_hello_with_a_changed_param_reaches_the_task_log_and_hides_the_secret(deployment) -> None:
    run_id = deployment.trigger("hello_python_exec", conf={"app_name": "changed by make e2e"})
    assert deployment.wait("hello_python_exec", run_id) == "success"
    assert set(deployment.task_states("hello_python_exec", run_id).values()) == {"success"}
    records = deployment.log("hello_python_exec", run_id, "macro_from_param")
    job_lines = events(records, "airflow_python_exec.job")
    assert "Hello from changed by make e2e" in job_lines
    assert "API token: ***" in job_lines
    ours = events(records, "airflow_python_exec")
    assert ours[-1].startswith("[python_exec] job hello exited with code 0 in ")
    job = json.loads((REPO / "example_dags" / "jobs" / "hello" / "job.json").read_text())
    token = next(m["value"] for m in job["runtimeConfig"]["macros"] if m.get("secure"))
    demo_key = (REPO / "example_dags" / "demo_fernet.key").read_text().strip()
    secret = decrypt(token, multi_fernet([demo_key]))
    assert secret not in json.dumps(records)


def test_world_cities_twice_without_a_logical_date_second_is_a_cache_hit(deployment) -> None:
    runs = [deployment.trigger("world_cities") for _ in range(2)]
    for run_id in runs:
        assert deployment.wait("world_cities", run_id) == "success"
    second = events(deployment.log("world_cities", runs[1], "largest_cities"), "airflow_python_exec")
    assert any("cache hit" in line for line in second)


def test_cancel_from_the_api_leaves_no_process_of_the_job(deployment, tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    run_id = deployment.trigger("e2e_cancel", conf={"pids_file": str(pids_file)})
    deadline = time.monotonic() + 180
    while not pids_file.exists() or not pids_file.read_text():
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(1)
    pids = [int(p) for p in pids_file.read_text().split()]
    assert all(psutil.pid_exists(pid) for pid in pids)
    # What the UI's "Mark as failed" does.
    deployment.call("PATCH", f"/api/v2/dags/e2e_cancel/dagRuns/{run_id}/taskInstances/sleepy", {"new_state": "failed"})
    deadline = time.monotonic() + 15
    while [pid for pid in pids if _running(pid)] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [pid for pid in pids if _running(pid)] == []
    deployment.wait("e2e_cancel", run_id)
    records = deployment.log("e2e_cancel", run_id, "sleepy")
    assert any("job sleepy stopped by SIGTERM" in line for line in events(records, "airflow_python_exec"))


def test_daily_dag_gets_its_scheduled_run_once_unpaused(deployment) -> None:
    deployment.call("PATCH", "/api/v2/dags/daily_python_exec", {"is_paused": False})
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        runs = deployment.call("GET", "/api/v2/dags/daily_python_exec/dagRuns?run_type=scheduled")["dag_runs"]
        done = [r for r in runs if r["state"] in ("success", "failed")]
        if done:
            assert done[0]["state"] == "success"
            return
        time.sleep(3)
    raise AssertionError("daily_python_exec got no finished scheduled run within 240 s")


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
