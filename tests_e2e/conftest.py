"""End-to-end tests against a running local deployment (`make e2e`): no ``dag.test()``.

The session starts ``scripts/airflow_local.sh`` (api-server, scheduler, dag-processor, triggerer;
LocalExecutor, SQLite) on its own port with this folder's ``dags/`` as a second DAG bundle, talks to
it through the REST API (``/auth/token``, ``/api/v2``) as a user or the UI would, and stops it. The
browser fixtures (``browser_page``: a logged-in Playwright page; ``base_url``) drive the UI itself in
Debian's chromium, for any test of what a person sees (screenshots under ``$AIRFLOW_HOME/screenshots/``).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
HOME = Path(os.environ.get("AIRFLOW_HOME", REPO / ".airflow_home"))
PORT = os.environ.get("E2E_PORT", "8089")
BASE = f"http://127.0.0.1:{PORT}"
UPLOADS = REPO / "tests_e2e" / "dags" / "uploads"


class Api:
    """A minimal client of Airflow's REST API v2 with a bearer token from ``/auth/token``."""

    def __init__(self, user: str, password: str, base: str = BASE) -> None:
        self.base = base
        self.token = self.call("POST", "/auth/token", {"username": user, "password": password})["access_token"]

    def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if getattr(self, "token", None):
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, method=method, data=data, headers=headers)
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        """Unpause ``dag_id`` (waiting for the DAG processor to have parsed it) and trigger a run
        without a logical date, as the UI's Trigger button does; return the run id."""
        deadline = time.monotonic() + 120
        while True:
            try:
                self.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
                break
            except urllib.error.HTTPError as exc:
                if exc.code != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(2)
        run = self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def wait(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """Wait for a run to finish; return its state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}")["state"]
            if state in ("success", "failed"):
                return state
            time.sleep(2)
        raise AssertionError(f"{dag_id} run {run_id} did not finish within {timeout:.0f} s")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        tis = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti["state"] for ti in tis}

    def log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> list[dict]:
        """The task log as structured records (``event``, ``logger``, ``level``, ...)."""
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}/logs/{try_number}"
            f"?full_content=true&map_index={map_index}"
        )
        return [item for item in self.call("GET", path)["content"] if isinstance(item, dict)]


def _q(run_id: str) -> str:
    return urllib.parse.quote(run_id, safe="")


def events(records: list[dict], logger: str | None = None) -> list[str]:
    """The messages of ``records``, only those of ``logger`` when given."""
    return [str(r.get("event", "")) for r in records if logger is None or r.get("logger") == logger]


@pytest.fixture(scope="session")
def deployment() -> Api:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW_PORT": PORT,
        "EXTRA_DAGS_FOLDER": str(REPO / "tests_e2e" / "dags"),
        "BIN": str(REPO / ".venv" / "bin"),
        # The "Python jobs" page's uploads, inside the e2e DAG bundle (DAGs name them as uploads/<jobId>).
        "AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER": str(UPLOADS),
    }
    script = str(REPO / "scripts" / "airflow_local.sh")
    started = subprocess.run(["bash", script, "start"], env=env, capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail(f"make airflow failed:\n{started.stdout}\n{started.stderr}")
    try:
        password = json.loads((HOME / "run" / "passwords.json").read_text())["admin"]
        yield Api("admin", password)
    finally:
        subprocess.run(["bash", script, "stop"], env=env, capture_output=True, text=True)


# The browser part: Debian's chromium (make e2e installs it with scripts/ensure_debs.sh) driven by
# Playwright; Playwright never downloads a browser of its own here.
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags chromium dials out to Google's services at start; on a closed
# network those connections are refused and slow every page down.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Airflow 3's UI is a React app that keeps fetching after "load": the machine is shared and slow.
UI_TIMEOUT_MS = 90_000
SCREENSHOTS = HOME / "screenshots"


@pytest.fixture(scope="session")
def base_url(deployment: Api) -> str:
    """The UI's address (the deployment is up once this is known)."""
    return BASE


@pytest.fixture(scope="session")
def admin_password(deployment: Api) -> str:
    """The simple auth manager's generated password of ``admin`` (``run/passwords.json``)."""
    return json.loads((HOME / "run" / "passwords.json").read_text())["admin"]


@pytest.fixture(scope="session")
def browser(deployment: Api):
    """One headless chromium for the session."""
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/ensure_debs.sh chromium=chromium` (make e2e does)")
    # This session's screenshots only: an old "-failed" one must not pass for today's.
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def browser_page(browser, base_url: str, admin_password: str, request: pytest.FixtureRequest):
    """A Playwright page logged in as ``admin`` on the UI's home page; a failing test leaves a
    screenshot of where it stopped under ``$AIRFLOW_HOME/screenshots/``."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    try:
        login(page, base_url, "admin", admin_password)
        yield page
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            screenshot(page, f"{request.node.name}-failed")
    finally:
        context.close()


def login(page, base_url: str, user: str, password: str) -> None:
    """Sign in on the simple auth manager's login page, as a person does."""
    page.goto(base_url + "/", wait_until="networkidle")
    page.wait_for_url("**/auth/login**")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    page.wait_for_load_state("networkidle")


def screenshot(page, name: str) -> Path:
    """Keep a full-page screenshot for a person to look at: ``$AIRFLOW_HOME/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember each phase's report on the test item, so ``browser_page`` knows if the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def python_jobs_frame(page, base_url: str):
    """Open "Python jobs" from the navigation; return the page's frame (the plugin's iframe)."""
    page.goto(base_url + "/")
    page.get_by_role("link", name="Python jobs").first.click()
    page.wait_for_url("**/plugin/python-jobs", timeout=30_000)
    frame = page.frame_locator("iframe").first
    frame.locator("h1", has_text="Python jobs").wait_for(timeout=30_000)
    return frame
