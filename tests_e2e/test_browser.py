"""The UI in a real browser: what a person clicks, and what they then see."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
import urllib.error
import uuid
import zipfile
from pathlib import Path
from urllib.parse import unquote

import pytest
from conftest import REPO, UI_TIMEOUT_MS, UPLOADS, events, python_jobs_frame, screenshot
from playwright.sync_api import expect

from airflow_python_exec.crypto import encrypt

GREETING = "changed in the browser"


def test_trigger_form_param_reaches_the_task_log(browser_page, base_url: str, deployment) -> None:
    page = browser_page
    page.goto(f"{base_url}/dags/hello_python_exec", wait_until="networkidle")
    page.get_by_role("button", name="Trigger Dag").click()
    form = page.get_by_role("dialog")
    # The Param's field has no label of its own: it is the textbox in the group that names the Param.
    field = form.get_by_role("group").filter(has_text="app_name").get_by_role("textbox")
    expect(field).to_have_value("HelloWorld from the UI")
    field.fill(GREETING)
    # A paused DAG's form offers "Unpause ... on trigger", ticked by default: the run then starts.
    screenshot(page, "hello_trigger_form")
    form.get_by_role("button", name="Trigger").click()

    # The UI opens the new run: its id is in the address.
    page.wait_for_url(re.compile(r"/dags/hello_python_exec/runs/[^/]+"))
    run_id = re.search(r"/runs/([^/?#]+)", page.url).group(1)
    assert deployment.wait("hello_python_exec", unquote(run_id)) == "success"

    page.reload(wait_until="networkidle")
    page.get_by_role("table").get_by_role("link", name="macro_from_param").click()
    log_line = page.get_by_text(f"Hello from {GREETING}", exact=True)
    expect(log_line).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text("API token: ***", exact=True)).to_be_visible()
    screenshot(page, "hello_task_log")


# -- Jobs as DAGs: upload a job on the "Python jobs" page, trigger it, schedule it ------------------

MACRO_JOB = "e2e_macro_job"
SCHEDULED_JOB = "e2e_every_minute"
SECRET = "e2e-jobdag-secret-value"


def job_bundle(path: Path, job_id: str, script: str, config: dict) -> Path:
    """``path``: a zip of the job folder ``<job_id>/`` holding ``app.py`` and ``job.json``."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{job_id}/app.py", script)
        zf.writestr(f"{job_id}/job.json", json.dumps({"jobId": job_id, "packageName": "app.py", **config}))
    return path


def upload_on_the_page(page, base_url: str, bundle: Path) -> None:
    frame = python_jobs_frame(page, base_url)
    frame.locator("#file").set_input_files(str(bundle))
    frame.locator("button", has_text="Upload").click()
    frame.locator("h1", has_text="Uploaded").wait_for(timeout=30_000)


def forget_job(deployment, job_id: str) -> None:
    """No upload and no DAG of ``job_id`` left (so the next upload makes a new DAG, as a first one does)."""
    shutil.rmtree(UPLOADS / job_id, ignore_errors=True)
    shutil.rmtree(UPLOADS / ".versions" / job_id, ignore_errors=True)
    with contextlib.suppress(urllib.error.HTTPError):  # 404: no such DAG
        deployment.call("DELETE", f"/api/v2/dags/job_{job_id}")


def wait_for_dag(deployment, dag_id: str, timeout: float = 180) -> dict:
    """The DAG as the REST API shows it, once the DAG processor has parsed the upload."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return deployment.call("GET", f"/api/v2/dags/{dag_id}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404 or time.monotonic() > deadline:
                raise
        time.sleep(3)


@pytest.fixture
def macro_job(deployment):
    forget_job(deployment, MACRO_JOB)
    yield MACRO_JOB
    forget_job(deployment, MACRO_JOB)


@pytest.fixture
def scheduled_job(deployment):
    forget_job(deployment, SCHEDULED_JOB)
    yield SCHEDULED_JOB
    forget_job(deployment, SCHEDULED_JOB)


def test_upload_a_job_then_trigger_its_dag_with_a_changed_macro(
    browser_page, base_url, deployment, macro_job, tmp_path
):
    page = browser_page
    demo_key = (REPO / "example_dags" / "demo_fernet.key").read_text().strip()
    config = {
        "runtimeConfig": {
            "macros": [
                {"key": "GREETING", "value": "hello from job.json", "description": "who the job greets"},
                {"key": "API_TOKEN", "value": encrypt(SECRET, [demo_key]), "secure": True},
            ]
        }
    }
    script = "import os\nprint('Greeting:', os.environ['GREETING'])\nprint('Token:', os.environ['API_TOKEN'])\n"
    upload_on_the_page(page, base_url, job_bundle(tmp_path / "job.zip", macro_job, script, config))
    screenshot(page, "jobdag_uploaded")

    # At the next parse of example_dags/python_jobs.py the job is the DAG job_<jobId>, unpaused.
    dag_id = f"job_{macro_job}"
    assert wait_for_dag(deployment, dag_id)["is_paused"] is False
    frame = python_jobs_frame(page, base_url)
    row = frame.locator("tr", has=frame.locator("a", has_text=dag_id))
    screenshot(page, "jobdag_python_jobs_page")
    row.get_by_role("link", name=dag_id).first.click()  # the page's link to the job's DAG
    page.wait_for_url(re.compile(rf"/dags/{dag_id}$"))
    page.wait_for_load_state("networkidle")
    screenshot(page, "jobdag_dag_page")

    changed = f"changed in the Trigger form {uuid.uuid4().hex[:8]}"
    page.get_by_role("button", name="Trigger Dag").click()
    form = page.get_by_role("dialog")
    field = form.get_by_role("group").filter(has_text="GREETING").get_by_role("textbox")
    expect(field).to_have_value("hello from job.json")
    expect(form.get_by_text("API_TOKEN")).to_have_count(0)  # a secure macro is never a Param
    field.fill(changed)
    screenshot(page, "jobdag_trigger_form")
    form.get_by_role("button", name="Trigger").click()
    page.wait_for_url(re.compile(rf"/dags/{dag_id}/runs/[^/]+"))
    run_id = unquote(re.search(r"/runs/([^/?#]+)", page.url).group(1))
    assert deployment.wait(dag_id, run_id) == "success"

    # The Python jobs page links the job's last run to its task log.
    frame = python_jobs_frame(page, base_url)
    row = frame.locator("tr", has=frame.locator("a", has_text=dag_id))
    row.get_by_role("link", name="log", exact=True).first.click()
    page.wait_for_url(re.compile(rf"/dags/{dag_id}/runs/[^/]+/tasks/{macro_job}"))
    expect(page.get_by_text(f"Greeting: {changed}", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text("Token: ***", exact=True)).to_be_visible()
    screenshot(page, "jobdag_task_log")
    records = deployment.log(dag_id, run_id, macro_job)
    assert f"Greeting: {changed}" in events(records, "airflow_python_exec.job")
    assert SECRET not in json.dumps(records)


def test_a_scheduled_job_gets_its_run_from_the_scheduler(browser_page, base_url, deployment, scheduled_job, tmp_path):
    page = browser_page
    config = {"dag": {"schedule": "* * * * *", "description": "every minute, from job.json", "tags": ["e2e"]}}
    script = "print('scheduled run of an uploaded job')\n"
    upload_on_the_page(page, base_url, job_bundle(tmp_path / "job.zip", scheduled_job, script, config))
    dag_id = f"job_{scheduled_job}"
    dag = wait_for_dag(deployment, dag_id)
    assert dag["is_paused"] is False and dag["timetable_summary"] == "* * * * *"
    assert {t["name"] for t in dag["tags"]} == {"python-job", "e2e"}

    deadline = time.monotonic() + 300
    while True:
        runs = deployment.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?run_type=scheduled")["dag_runs"]
        done = [r for r in runs if r["state"] in ("success", "failed")]
        if done:
            break
        assert time.monotonic() < deadline, f"{dag_id} got no finished scheduled run within 300 s"
        time.sleep(3)
    assert done[0]["state"] == "success"
    lines = events(deployment.log(dag_id, done[0]["dag_run_id"], scheduled_job), "airflow_python_exec.job")
    assert "scheduled run of an uploaded job" in lines

    page.goto(f"{base_url}/dags/{dag_id}", wait_until="networkidle")
    expect(page.get_by_text("* * * * *").first).to_be_visible()
    screenshot(page, "jobdag_scheduled")
