"""The "Python jobs" page as a deployment grows: what it keeps between requests follows every change
a user makes, the DAGs' jobs are read from the serialized JSON exactly as from the deserialized DAG,
and a slow page never holds up the api-server's event loop. Same harness as
tests/test_python_jobs_page.py (real app, real JWTs, real DAGs under ``dag.test()``).
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from conftest import bearer, bundle, hello_files, post_bundle, write_job
from test_airflow import dags, jobs, load_dag, run_dag  # noqa: F401 - dags and jobs are fixtures


def test_the_serialized_json_names_the_same_jobs_as_the_deserialized_dag(tmp_path) -> None:
    """Reading a DAG's tasks from its JSON (no deserialization) gives what the DAG object gives:
    plain, handler, templated, mapped (partial_kwargs) and expanded-over ``job`` tasks, in order."""
    import pendulum
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG, TaskGroup
    from airflow.serialization.serialized_objects import DagSerialization

    from airflow_python_exec import PythonJobOperator
    from airflow_python_exec.plugins import catalog, operator_tasks

    with DAG("shapes", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        PythonJobOperator(task_id="a", job="jobs/hello")
        PythonJobOperator(task_id="b", handler="mod:fn", code="def fn(): pass")
        PythonJobOperator(task_id="c", job="jobs/{{ params.name }}")
        PythonJobOperator.partial(task_id="d", job="jobs/hello/job.json").expand(parameters=[{"n": 1}])
        PythonJobOperator.partial(task_id="e", handler="m:f").expand(job=["x", "y"])
        EmptyOperator(task_id="not_ours")
        with TaskGroup("group"):
            PythonJobOperator(task_id="f", job="/abs/jobs/f")
    dag.fileloc = str(tmp_path / "shapes.py")
    data = json.loads(json.dumps(DagSerialization.to_dict(dag)))  # as stored in the metadata database
    from_json = [
        operator_tasks.task_job("shapes", task_id, job, handler, dag.fileloc)
        for task_id, job, handler in operator_tasks.tasks_of_serialized(data)
    ]
    assert from_json == catalog.task_jobs_of(DagSerialization.from_dict(data))
    assert [t.task_id for t in from_json] == ["a", "b", "c", "d", "e", "group.f"]
    assert from_json[3].folder == tmp_path / "jobs" / "hello"


def test_a_job_folder_edited_on_disk_is_shown_as_it_is_now(client, auth, key, uploads) -> None:
    """Folders are kept between requests by their job.json/.env stat: an edit, a new .env, a removed
    job.json and a new upload each show at once."""
    viewer = bearer(auth, "viewer")
    assert post_bundle(client, auth, bundle(hello_files(key))).status_code == 201

    def shown() -> dict:
        answer = client.get("/api/jobs/hello", headers=viewer)
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert shown()["envKeys"] == ["DB_PASSWORD", "REGION"]
    job_json = uploads / "hello" / "job.json"
    job = json.loads(job_json.read_text())
    job["runtimeConfig"]["macros"][0]["value"] = "edited"
    job_json.write_text(json.dumps(job))
    os.utime(job_json, ns=(time.time_ns(), time.time_ns() + 1_000_000))  # a coarse clock still moves
    assert {m["key"]: m["value"] for m in shown()["macros"]}["APP_NAME"] == "edited"
    (uploads / "hello" / ".env").write_text("ONLY_THIS=1\n")
    os.utime(uploads / "hello" / ".env", ns=(time.time_ns(), time.time_ns() + 2_000_000))
    assert shown()["envKeys"] == ["ONLY_THIS"]
    job_json.write_text("{broken")
    os.utime(job_json, ns=(time.time_ns(), time.time_ns() + 3_000_000))
    assert "job.json" in shown()["error"]
    assert post_bundle(client, auth, bundle(hello_files(key, "v2"))).status_code == 201
    assert shown()["error"] is None and shown()["envKeys"] == ["DB_PASSWORD", "REGION"]


def test_a_new_dag_version_and_a_new_run_show_at_once(client, auth, key, dags, jobs, monkeypatch, capfd, caplog):
    """The DAG's jobs are kept per serialized version: a changed DAG (another job folder) and its new
    run are shown on the next request."""
    monkeypatch.setenv("AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL", "0")  # as a DAG processor that reparsed
    write_job(jobs / "first", "print('first')\n", job={"jobId": "first"})
    write_job(jobs / "second", "print('second')\n", job={"jobId": "second"})
    rel = jobs.relative_to(dags)
    body = (
        'with DAG("versions", schedule=None, start_date=START) as dag:\n    PythonJobOperator(task_id="t", job="{}")\n'
    )
    viewer = bearer(auth, "viewer")
    for name in ("first", "second"):
        dag = load_dag(dags, body.format(f"{rel}/{name}"), "versions")
        states, _ = run_dag(dag, capfd, caplog)
        assert states == {"t": "success"}
        listed = {j["jobId"]: j for j in client.get("/api/jobs", headers=viewer).json()["jobs"]}
        uses = [u for j in listed.values() for u in j["usedBy"] if u["dag_id"] == "versions"]
        assert [(u["task_id"], u["task_state"]) for u in uses] == [("t", "success")]
        assert name in listed, (name, {k: v["usedBy"] for k, v in listed.items()})
        assert any(u["dag_id"] == "versions" for u in listed[name]["usedBy"])


def test_a_slow_catalog_holds_up_neither_the_event_loop_nor_more_than_its_own_threads(
    auth, key, uploads, monkeypatch
) -> None:
    """Four viewers at once on a catalog whose database takes a second: a request that needs only
    the event loop is answered at once, and the viewers share the DAG reads (one call serves those
    that arrive while another runs), never more than one at a time."""
    import threading

    import httpx

    from airflow_python_exec.plugins import app as plugin_app
    from airflow_python_exec.plugins import catalog

    busy, most, calls, lock = [0], [0], [0], threading.Lock()

    def slow_tasks():
        with lock:
            busy[0] += 1
            calls[0] += 1
            most[0] = max(most[0], busy[0])
        time.sleep(1.0)
        with lock:
            busy[0] -= 1
        return []

    monkeypatch.setattr(catalog, "dag_task_jobs", slow_tasks)
    viewer = bearer(auth, "viewer")

    async def scenario() -> tuple[float, list[int]]:
        transport = httpx.ASGITransport(app=plugin_app.create_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            pages = [asyncio.create_task(http.get("/api/jobs", headers=viewer)) for _ in range(4)]
            await asyncio.sleep(0.3)  # the first is now inside the slow catalog, the others wait for the next
            started = time.monotonic()
            quick = await http.get("/python-exec-no-such-route")
            quick_s = time.monotonic() - started
            answers = await asyncio.gather(*pages)
            return quick_s, [a.status_code for a in [*answers, quick]]

    quick_s, statuses = asyncio.run(scenario())
    assert statuses == [200, 200, 200, 200, 404]
    assert quick_s < 0.3, f"a request unrelated to the catalog waited {quick_s:.2f} s"
    assert most[0] == 1 and 1 <= calls[0] < 4, (most, calls)


def test_a_dag_without_a_run_has_no_last_run() -> None:
    from airflow_python_exec.plugins.operator_tasks import latest_runs

    assert latest_runs(["no-such-dag"]) == {}
