"""The "Python jobs" UI plugin: a real FastAPI TestClient against the plugin's app, real JWTs from
Airflow's simple auth manager (users ``admin`` and ``viewer``), real zip bundles, real ``dag.test()``.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ENV_SECRET, SECRET, bearer, bundle, hello_files, post_bundle, tree_digest, write_job
from test_airflow import dags, load_dag, run_dag  # noqa: F401 - dags is a fixture

from airflow_python_exec.crypto import decrypt, encrypt, multi_fernet


def assert_no_secret(text: str, *tokens: str) -> None:
    for secret in (SECRET, ENV_SECRET, *tokens):
        assert secret not in text


# -- authentication and authorization ------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/api/jobs"),
        ("GET", "/api/jobs/hello"),
        ("GET", "/"),
        ("GET", "/jobs/hello"),
        ("POST", "/api/encrypt"),
        ("POST", "/api/jobs"),
        ("POST", "/encrypt"),
        ("POST", "/upload"),
    ],
)
def test_every_endpoint_needs_a_token(client, method, path) -> None:
    assert client.request(method, path).status_code == 401
    assert client.request(method, path, headers={"Authorization": "Bearer not-a-jwt"}).status_code in (401, 403)


def test_viewer_reads_but_cannot_encrypt_or_upload(client, auth, key, uploads) -> None:
    headers = bearer(auth, "viewer")
    assert client.get("/api/jobs", headers=headers).status_code == 200
    assert client.get("/", headers=headers).status_code == 200
    assert client.post("/api/encrypt", json={"value": "x"}, headers=headers).status_code == 403
    assert post_bundle(client, auth, bundle(hello_files(key)), user="viewer").status_code == 403
    assert client.post("/encrypt", data={"value": "x"}, headers=headers).status_code == 403


def test_the_browser_session_cookie_is_accepted(client, auth, key) -> None:
    client.cookies.set("_token", auth("viewer"))
    try:
        assert client.get("/api/jobs").status_code == 200
    finally:
        client.cookies.clear()


# -- encrypt -------------------------------------------------------------------------------------


def test_encrypt_returns_a_token_made_with_the_servers_key(client, auth, key) -> None:
    answer = client.post("/api/encrypt", json={"value": SECRET}, headers=bearer(auth, "admin"))
    assert answer.status_code == 200
    assert decrypt(answer.json()["token"], multi_fernet([key])) == SECRET
    page = client.post("/encrypt", data={"value": SECRET}, headers=bearer(auth, "admin"))
    assert page.status_code == 200 and "gAAAAA" in page.text and SECRET not in page.text


# -- upload and listing --------------------------------------------------------------------------


def test_upload_is_refused_with_upload_folder_unset(client, auth, key, monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER", raising=False)
    answer = post_bundle(client, auth, bundle(hello_files(key)))
    assert answer.status_code == 403
    assert "upload_folder" in answer.json()["detail"]


def test_upload_then_list_and_detail_show_no_secret(client, auth, key, uploads) -> None:
    files = hello_files(key)
    token = json.loads(files["job.json"])["runtimeConfig"]["macros"][1]["value"]
    answer = post_bundle(client, auth, bundle(files))
    assert answer.status_code == 201, answer.text
    assert answer.json()["jobId"] == "hello" and answer.json()["previousVersion"] is None
    assert (uploads / "hello" / "app.py").is_file() and (uploads / "hello" / ".env").is_file()
    assert (uploads / ".airflowignore").is_file()  # the DAG processor never imports an uploaded script

    admin, viewer = bearer(auth, "admin"), bearer(auth, "viewer")
    listed = client.get("/api/jobs", headers=viewer)
    job = next(j for j in listed.json()["jobs"] if j["jobId"] == "hello")
    assert job["script"] == "app.py" and job["envKeys"] == ["DB_PASSWORD", "REGION"]
    assert {m["key"]: m["value"] for m in job["macros"]} == {"APP_NAME": "demo", "API_TOKEN": "secure"}
    detail = client.get("/api/jobs/hello", headers=viewer)
    assert detail.status_code == 200 and detail.json()["folder"] == str((uploads / "hello").resolve())
    assert client.get("/api/jobs/nope", headers=viewer).status_code == 404
    pages = [client.get("/", headers=admin), client.get("/jobs/hello", headers=viewer)]
    assert all(page.status_code == 200 for page in pages)
    assert ">secure<" in pages[1].text and "DB_PASSWORD" in pages[1].text
    for text in (answer.text, listed.text, detail.text, *(page.text for page in pages)):
        assert_no_secret(text, token)


def test_a_second_upload_keeps_the_previous_version(client, auth, key, uploads) -> None:
    assert post_bundle(client, auth, bundle(hello_files(key, "v1"))).status_code == 201
    # The root layout (files at the archive's root) is accepted too; job.json names the job.
    second = post_bundle(client, auth, bundle(hello_files(key, "v2"), top=None), name="anything.zip")
    assert second.status_code == 201, second.text
    previous = Path(second.json()["previousVersion"])
    assert previous.parent == uploads / ".versions" / "hello"
    assert "hello v1" in (previous / "app.py").read_text()
    assert "hello v2" in (uploads / "hello" / "app.py").read_text()
    assert sorted(p.name for p in (uploads / ".versions" / "hello").iterdir()) == [previous.name]


def _raw(name: str, mode: int | None = None) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    if mode is not None:
        info.external_attr = mode << 16
    return info


UNSAFE = {
    "absolute path": dict(extra=[_raw("/etc/evil.py")]),
    "dotdot": dict(extra=[_raw("hello/../../evil.py")]),
    "symlink": dict(links={"data": "/etc"}),
    "device": dict(extra=[_raw("hello/dev", 0o020644)]),
    "fifo": dict(extra=[_raw("hello/fifo", 0o010644)]),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_archives_are_refused_and_upload_folder_is_unchanged(client, auth, key, uploads, case) -> None:
    assert post_bundle(client, auth, bundle(hello_files(key, "v1"))).status_code == 201
    before = tree_digest(uploads)
    answer = post_bundle(client, auth, bundle(hello_files(key, "v2"), **UNSAFE[case]))
    assert answer.status_code == 400, answer.text
    assert "refused" in answer.json()["detail"] or "'..'" in answer.json()["detail"]
    assert tree_digest(uploads) == before


@pytest.mark.parametrize(
    "case",
    [
        "bad job.json",
        "unknown pythonEnv key",
        "script outside",
        "unsafe jobId",
        "too many entries",
        "too many bytes",
        "not a zip",
        "empty",
    ],
)
def test_bundles_breaking_a_rule_are_refused_and_upload_folder_is_unchanged(
    client, auth, key, uploads, monkeypatch, case
) -> None:
    import airflow_python_exec.plugins.upload as upload

    files = hello_files(key)
    job = json.loads(files["job.json"])
    data = None
    if case == "bad job.json":
        files["job.json"] = "{not json"
    elif case == "unknown pythonEnv key":
        files["job.json"] = json.dumps({**job, "pythonEnv": {"pylok": "pylock.toml"}})
    elif case == "script outside":
        files["job.json"] = json.dumps({**job, "packageName": "../app.py"})
    elif case == "unsafe jobId":
        files["job.json"] = json.dumps({**job, "jobId": ".hidden"})
    elif case == "too many entries":
        monkeypatch.setattr(upload, "MAX_ENTRIES", 2)
    elif case == "too many bytes":
        monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__MAX_SOURCE_BYTES", "100")
    elif case == "not a zip":
        data = b"this is not a zip"
    elif case == "empty":
        data = bundle({}, top=None)
    before = tree_digest(uploads)
    answer = post_bundle(client, auth, data if data is not None else bundle(files))
    assert answer.status_code == 400, answer.text
    assert tree_digest(uploads) == before
    assert "\n" not in answer.json()["detail"]


# -- the uploaded job runs -----------------------------------------------------------------------


def test_an_uploaded_job_runs_from_a_dag(client, auth, key, dags, monkeypatch, capfd, caplog) -> None:
    """Upload through the API into an upload_folder inside the DAGs folder; a DAG naming
    ``upload_folder/<jobId>`` runs it with ``dag.test()``; the page then shows the task's last run."""
    uploads = dags / "uploads"
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER", str(uploads))
    assert post_bundle(client, auth, bundle(hello_files(key, "from upload"))).status_code == 201
    dag = load_dag(
        dags,
        """
        with DAG("uploaded_job", schedule=None, start_date=START) as dag:
            PythonJobOperator(task_id="hello", job="uploads/hello")
    """,
        "uploaded_job",
    )
    states, log = run_dag(dag, capfd, caplog)
    assert states == {"hello": "success"}
    assert f"hello from upload {len(SECRET)}" in log
    assert SECRET not in log
    job = client.get("/api/jobs/hello", headers=bearer(auth, "viewer")).json()
    use = next(u for u in job["usedBy"] if u["dag_id"] == "uploaded_job")
    assert use["task_id"] == "hello" and use["task_state"] == "success"


def test_dag_tasks_are_mapped_to_their_job_folders(tmp_path, key) -> None:
    """The DAG -> job mapping read from a serialized DAG (as the api-server reads the metadata DB)."""
    import pendulum
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    from airflow_python_exec import PythonJobOperator
    from airflow_python_exec.plugins import catalog

    write_job(
        tmp_path / "jobs" / "hello",
        job={
            "jobId": "hello",
            "runtimeConfig": {"macros": [{"key": "API_TOKEN", "value": encrypt(SECRET, [key]), "secure": True}]},
        },
    )
    with DAG("mapped", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        PythonJobOperator(task_id="a", job="jobs/hello")
        PythonJobOperator(task_id="b", handler="mod:fn", code="def fn(): pass")
        PythonJobOperator(task_id="c", job="jobs/{{ params.name }}")
        PythonJobOperator.partial(task_id="d", job="jobs/hello").expand(parameters=[{"n": 1}, {"n": 2}])
    dag.fileloc = str(tmp_path / "mapped.py")
    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    entries = catalog.build_catalog(None, catalog.task_jobs_of(serialized), with_runs=False)
    by_id = {e.job_id: e for e in entries}
    assert by_id["hello"].folder == str((tmp_path / "jobs" / "hello").resolve())
    assert [(u.dag_id, u.task_id) for u in by_id["hello"].used_by] == [("mapped", "a"), ("mapped", "d")]
    assert by_id["b"].details["handler"] == "mod:fn"
    assert "template" in by_id["c"].error
    assert SECRET not in json.dumps([e.as_dict() for e in entries], default=str)


def test_the_plugin_is_registered_and_cheap_to_import() -> None:
    """Airflow finds the plugin through the entry point; loading it (as every task process does)
    builds neither the app nor the api-server's auth dependencies."""
    import subprocess

    code = (
        "import sys; from airflow_python_exec.plugins.python_jobs import PythonJobsPlugin as P; "
        "print(P.fastapi_apps[0]['url_prefix'], P.external_views[0]['name'], "
        "'airflow_python_exec.plugins.app' in sys.modules, 'airflow.api_fastapi.core_api.security' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["/python-exec", "Python", "jobs", "False", "False"]
    from importlib.metadata import entry_points

    plugins = {ep.name: ep.value for ep in entry_points(group="airflow.plugins")}
    assert plugins["python_exec"] == "airflow_python_exec.plugins.python_jobs:PythonJobsPlugin"
