"""The "Python jobs" page in a browser against the running deployment: log in through the simple auth
manager's login page, open "Python jobs" from the navigation, see the hello job's secure macro shown as
``secure``, encrypt a value, upload two versions of a job, run a DAG that names the upload and find
the new output in its task log. Screenshots go to ``$AIRFLOW_HOME/e2e/``.

Playwright for Python drives Debian's chromium (``/usr/bin/chromium``; no browser is downloaded).
The local ``page`` fixture is meant to be folded into a shared logged-in page fixture.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from pathlib import Path

import pytest

from conftest import BASE, HOME, UPLOADS, events

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = HOME / "e2e"


@pytest.fixture(scope="module")
def page(deployment):
    """A chromium page logged in to the deployment as admin through the login page."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing; install it with scripts/ensure_debs.sh chromium=chromium")
    SHOTS.mkdir(parents=True, exist_ok=True)
    password = json.loads((HOME / "run" / "passwords.json").read_text())["admin"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(BASE + "/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/auth/login" not in url, timeout=60_000)
        yield page
        browser.close()


def job_zip(job_id: str, message: str) -> bytes:
    """A job bundle: ``<job_id>/app.py`` printing ``message``, and its ``job.json``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{job_id}/app.py", f"print({message!r})\n")
        zf.writestr(f"{job_id}/job.json", json.dumps({"jobId": job_id, "packageName": "app.py"}))
    return buf.getvalue()


def open_python_jobs(page):
    """Click "Python jobs" in the navigation; return the page's frame (the plugin is shown in an iframe)."""
    page.goto(BASE + "/")
    page.get_by_role("link", name="Python jobs").first.click()
    page.wait_for_url("**/plugin/python-jobs", timeout=30_000)
    frame = page.frame_locator("iframe").first
    frame.locator("h1", has_text="Python jobs").wait_for(timeout=30_000)
    return frame


def test_python_jobs_page_in_a_browser(page, deployment, tmp_path) -> None:
    frame = open_python_jobs(page)
    hello = frame.locator("tr", has=page.locator("a", has_text="hello")).first
    assert "secure" in hello.inner_text() and "gAAAA" not in hello.inner_text()
    page.screenshot(path=str(SHOTS / "python_jobs_page.png"))

    frame.locator("#value").fill("e2e-secret")
    frame.locator("button", has_text="Encrypt").click()
    token = frame.locator("#token").inner_text(timeout=30_000)
    assert token.startswith("gAAAAA") and "e2e-secret" not in token
    page.screenshot(path=str(SHOTS / "python_jobs_encrypt.png"))

    marker = uuid.uuid4().hex[:8]
    for version in ("v1", f"v2 {marker}"):
        bundle = tmp_path / "e2e_greet.zip"
        bundle.write_bytes(job_zip("e2e_greet", f"greetings {version}"))
        frame = open_python_jobs(page)
        frame.locator("#file").set_input_files(str(bundle))
        frame.locator("button", has_text="Upload").click()
        frame.locator("h1", has_text="Uploaded").wait_for(timeout=30_000)
    assert "previous version was kept" in frame.locator("body").inner_text()
    page.screenshot(path=str(SHOTS / "python_jobs_upload.png"))
    assert f"greetings v2 {marker}" in (UPLOADS / "e2e_greet" / "app.py").read_text()
    assert any("greetings v1" in (v / "app.py").read_text() for v in (UPLOADS / ".versions" / "e2e_greet").iterdir())

    run_id = deployment.trigger("e2e_uploaded_job")
    assert deployment.wait("e2e_uploaded_job", run_id) == "success"
    lines = events(deployment.log("e2e_uploaded_job", run_id, "greet"), "airflow_python_exec.job")
    assert any(f"greetings v2 {marker}" in line for line in lines)
