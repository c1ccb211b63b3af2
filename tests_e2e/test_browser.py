"""The UI in a real browser: what a person clicks, and what they then see."""

from __future__ import annotations

import re
from urllib.parse import unquote

from conftest import UI_TIMEOUT_MS, screenshot
from playwright.sync_api import expect

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
