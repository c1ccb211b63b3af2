"""Jobs as DAGs on the "Python jobs" page: a job uploaded through the page becomes its DAG at the next
parse of the one-line DAG file; the page links the job to that DAG and to its last run's task log; a
new version updates the DAG's Params and schedule. Real uploads, real ``dag.test()``."""

from __future__ import annotations

import html
import importlib.util
import json
import urllib.parse
from pathlib import Path

from conftest import SECRET, bearer, bundle, forget_job_dags, post_bundle
from test_airflow import dags, run_dag  # noqa: F401 - dags is a fixture

from airflow_python_exec.crypto import encrypt

JOB_ID = "page_job"


def job_files(key: str, message: str, *, dag: dict | None = None, region: str | None = None) -> dict[str, str]:
    macros = [
        {"key": "APP_NAME", "value": "from job.json"},
        {"key": "API_TOKEN", "value": encrypt(SECRET, [key]), "secure": True},
    ]
    if region is not None:
        macros.append({"key": "REGION", "value": region})
    config = {"jobId": JOB_ID, "packageName": "app.py", "runtimeConfig": {"macros": macros}}
    return {
        "app.py": f"import os\nprint({message!r}, os.environ['APP_NAME'], os.environ['API_TOKEN'])\n",
        "job.json": json.dumps({**config, **({"dag": dag} if dag else {})}),
    }


def parse(dags: Path, name: str) -> dict:
    """The deployment's one-line DAG file, imported as the DAG processor does; its globals."""
    path = dags / f"{name}.py"
    path.write_text("from airflow_python_exec.job_dags import load_job_dags\n\nload_job_dags(globals())\n")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return vars(module)


def test_an_upload_becomes_its_dag_and_the_page_links_the_dag_and_the_task_log(
    client, auth, key, dags, monkeypatch, capfd, caplog
) -> None:
    uploads = dags / "uploads"
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER", str(uploads))
    forget_job_dags()  # an earlier run's job_page_job would own the jobId
    assert post_bundle(client, auth, bundle(job_files(key, "v1"), top=JOB_ID)).status_code == 201
    page = client.get("/", headers=bearer(auth, "viewer")).text
    assert f"DAG <code>job_{JOB_ID}</code> at the next parse" in page  # uploaded, not parsed yet

    dag = parse(dags, "page_jobs_v1")[f"job_{JOB_ID}"]
    states, log = run_dag(dag, capfd, caplog, run_conf={"APP_NAME": "the Trigger form"})
    assert states == {JOB_ID: "success"}
    assert "v1 the Trigger form ***" in log and SECRET not in log

    page = html.unescape(client.get("/", headers=bearer(auth, "viewer")).text)
    assert f'DAG <a href="/dags/job_{JOB_ID}" target="_top">job_{JOB_ID}</a>' in page
    use = next(
        u
        for u in client.get(f"/api/jobs/{JOB_ID}", headers=bearer(auth, "viewer")).json()["usedBy"]
        if u["dag_id"] == f"job_{JOB_ID}"
    )
    run_id = urllib.parse.quote(use["last_run"]["run_id"], safe="/")
    log_link = f'href="/dags/job_{JOB_ID}/runs/{run_id}/tasks/{JOB_ID}"'
    assert log_link in page
    detail = html.unescape(client.get(f"/jobs/{JOB_ID}", headers=bearer(auth, "viewer")).text)
    assert log_link in detail and f'href="/dags/job_{JOB_ID}"' in detail
    assert SECRET not in page + detail

    # A new version: a new Param and a schedule at the next parse.
    new = job_files(key, "v2", dag={"schedule": "@hourly"}, region="eu")
    assert post_bundle(client, auth, bundle(new, top=JOB_ID)).status_code == 201
    dag = parse(dags, "page_jobs_v2")[f"job_{JOB_ID}"]
    assert set(dag.params) == {"APP_NAME", "REGION"} and dag.schedule == "@hourly"
