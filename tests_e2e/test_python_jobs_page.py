"""The "Python jobs" page in a browser against the running deployment: log in through the simple auth
manager's login page, open "Python jobs" from the navigation, see the hello job's secure macro shown as
``secure``, encrypt a value, upload two versions of a job, run a DAG that names the upload and find
the new output in its task log. Screenshots go to ``$AIRFLOW_HOME/screenshots/``.

The logged-in page is conftest's ``browser_page`` (Playwright driving Debian's chromium).
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile

from conftest import UPLOADS, events, python_jobs_frame, screenshot


def job_zip(job_id: str, message: str) -> bytes:
    """A job bundle: ``<job_id>/app.py`` printing ``message``, and its ``job.json``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{job_id}/app.py", f"print({message!r})\n")
        zf.writestr(f"{job_id}/job.json", json.dumps({"jobId": job_id, "packageName": "app.py"}))
    return buf.getvalue()


def test_python_jobs_page_in_a_browser(browser_page, base_url, deployment, tmp_path) -> None:
    page = browser_page
    frame = python_jobs_frame(page, base_url)
    hello = frame.locator("tr", has=page.locator("a", has_text="hello")).first
    assert "secure" in hello.inner_text() and "gAAAA" not in hello.inner_text()
    screenshot(page, "python_jobs_page")

    frame.locator("#value").fill("e2e-secret")
    frame.locator("button", has_text="Encrypt").click()
    token = frame.locator("#token").inner_text(timeout=30_000)
    assert token.startswith("gAAAAA") and "e2e-secret" not in token
    screenshot(page, "python_jobs_encrypt")

    marker = uuid.uuid4().hex[:8]
    for version in ("v1", f"v2 {marker}"):
        bundle = tmp_path / "e2e_greet.zip"
        bundle.write_bytes(job_zip("e2e_greet", f"greetings {version}"))
        frame = python_jobs_frame(page, base_url)
        frame.locator("#file").set_input_files(str(bundle))
        frame.locator("button", has_text="Upload").click()
        frame.locator("h1", has_text="Uploaded").wait_for(timeout=30_000)
    assert "previous version was kept" in frame.locator("body").inner_text()
    screenshot(page, "python_jobs_upload")
    assert f"greetings v2 {marker}" in (UPLOADS / "e2e_greet" / "app.py").read_text()
    assert any("greetings v1" in (v / "app.py").read_text() for v in (UPLOADS / ".versions" / "e2e_greet").iterdir())

    run_id = deployment.trigger("e2e_uploaded_job")
    assert deployment.wait("e2e_uploaded_job", run_id) == "success"
    lines = events(deployment.log("e2e_uploaded_job", run_id, "greet"), "airflow_python_exec.job")
    assert any(f"greetings v2 {marker}" in line for line in lines)
