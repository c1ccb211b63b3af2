"""Security rules of the "Python jobs" UI plugin (README "Python jobs page"): authorization that no
request value widens, per-DAG listing, no credentials or secrets shown or echoed, CSRF, archive and
request limits, what an upload may replace. Same harness as tests/test_python_jobs_page.py: the
plugin's real FastAPI app in a TestClient, real JWTs from Airflow's simple auth manager, real zips.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from conftest import ENV_SECRET, bearer, bundle, hello_files, post_bundle, tree_digest, write_job

GIT_TOKEN = "ghp_TESTtoken0123456789abcdefABCDEF"


class BodyCounter:
    """ASGI wrapper counting the request-body bytes the wrapped app actually pulled from the client."""

    def __init__(self, app) -> None:
        self.app, self.received = app, 0

    async def __call__(self, scope, receive, send):
        async def counting_receive():
            message = await receive()
            if message.get("type") == "http.request":
                self.received += len(message.get("body", b""))
            return message

        await self.app(scope, counting_receive, send)


@pytest.fixture
def counted(auth):
    from fastapi.testclient import TestClient

    from airflow_python_exec.plugins.app import create_app

    counter = BodyCounter(create_app())
    with TestClient(counter) as test_client:
        yield test_client, counter


def multipart(name: str, payload: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = "testboundary7MA4YWxkTrZu0gW"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/zip\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


# -- authorization: no ?dag_id= widening; the listing is filtered per DAG --------------------------


@pytest.fixture
def per_dag_manager(auth, monkeypatch):
    """An auth manager with DAG-level permissions (as FAB or Keycloak have): every user may list DAGs
    (``GET`` without details, what Airflow's own DAG list asks) but read and edit the DAG ``mine`` only."""
    from airflow.api_fastapi.app import get_auth_manager

    manager_type = type(get_auth_manager())

    def is_authorized_dag(self, *, method, user, access_entity=None, details=None):
        if details is None:
            return method == "GET"
        return details.id == "mine"

    monkeypatch.setattr(manager_type, "is_authorized_dag", is_authorized_dag)
    monkeypatch.setattr(manager_type, "get_authorized_dag_ids", lambda self, *, user, method="GET", **kw: {"mine"})


def test_a_dag_id_query_parameter_does_not_grant_encrypt_or_upload(client, auth, key, uploads, per_dag_manager) -> None:
    """Airflow's requires_access_dag takes dag_id from the query string on these routes; ours does not:
    a user allowed to edit one DAG only cannot encrypt or upload with ``?dag_id=mine``."""
    headers = bearer(auth, "viewer")
    assert client.post("/api/encrypt", json={"value": "x"}, headers=headers).status_code == 403  # holds
    assert client.post("/api/encrypt?dag_id=mine", json={"value": "x"}, headers=headers).status_code == 403
    data = bundle(hello_files(key))
    answer = client.post(
        "/api/jobs?dag_id=mine", files={"file": ("hello.zip", data, "application/zip")}, headers=headers
    )
    assert answer.status_code == 403, answer.text
    assert not (uploads / "hello").exists()


def test_the_catalog_shows_only_jobs_of_dags_the_user_may_read(
    client, auth, key, uploads, per_dag_manager, tmp_path, monkeypatch
) -> None:
    """Tasks, job folders and runs of DAGs the user may not read (get_authorized_dag_ids) are not listed."""
    from airflow_python_exec.plugins import catalog

    write_job(tmp_path / "jobs" / "mine_job", job={"jobId": "mine_job"})
    write_job(tmp_path / "jobs" / "other_job", job={"jobId": "other_job"})
    monkeypatch.setattr(
        catalog,
        "dag_task_jobs",
        lambda: [
            catalog.TaskJob("mine", "a", tmp_path / "jobs" / "mine_job", "jobs/mine_job", None),
            catalog.TaskJob("secret_team_dag", "b", tmp_path / "jobs" / "other_job", "jobs/other_job", None),
        ],
    )
    monkeypatch.setattr(catalog, "last_runs", lambda uses: None)
    answer = client.get("/api/jobs?dag_id=mine", headers=bearer(auth, "viewer"))
    assert answer.status_code == 200
    assert "secret_team_dag" not in answer.text and "other_job" not in answer.text


# -- CSRF: a cookie-authenticated post must come from this origin ---------------------------------


@pytest.mark.parametrize("origin", ["https://evil.example", "https://intranet-wiki.corp.example"])
def test_cookie_authenticated_upload_from_another_origin_is_refused(client, auth, key, uploads, origin) -> None:
    """SameSite=Lax stops a cross-SITE form, not a same-site one (a sibling subdomain, another port):
    the browser sends the _token cookie with that form's POST, which would replace a job's code."""
    client.cookies.set("_token", auth("admin"))
    try:
        answer = client.post(
            "/upload",
            files={"file": ("hello.zip", bundle(hello_files(key, "pwned")), "application/zip")},
            headers={"Origin": origin, "Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate"},
        )
    finally:
        client.cookies.clear()
    assert answer.status_code == 403, answer.status_code
    assert not (uploads / "hello").exists()


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "http://testserver"}, {"Referer": "http://testserver/python-exec/"}, {"Sec-Fetch-Site": "same-origin"}],
)
def test_a_cookie_authenticated_form_from_the_page_itself_is_accepted(client, auth, key, headers) -> None:
    """The page inside Airflow's UI (same origin) keeps working; it may be framed by that origin only."""
    client.cookies.set("_token", auth("admin"))
    try:
        answer = client.post("/encrypt", data={"value": "x"}, headers=headers)
    finally:
        client.cookies.clear()
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-frame-options"] == "SAMEORIGIN"


@pytest.mark.parametrize("path", ["/upload", "/api/jobs", "/encrypt", "/api/encrypt"])
def test_a_cross_origin_post_with_a_basic_authorization_header_is_refused(client, auth, key, uploads, path) -> None:
    """Behind an HTTP Basic proxy the browser adds ``Authorization: Basic ...`` to every request,
    a cross-origin form post too; Airflow ignores that header and authenticates from the ``_token``
    cookie, so the origin must be checked: no token made, nothing uploaded."""
    client.cookies.set("_token", auth("admin"))
    attack = {"Authorization": "Basic YWRtaW46YWRtaW4=", "Origin": "https://evil.example"}
    try:
        if path in ("/upload", "/api/jobs"):
            data = bundle(hello_files(key, "pwned"))
            answer = client.post(path, files={"file": ("hello.zip", data, "application/zip")}, headers=attack)
        elif path == "/encrypt":
            answer = client.post(path, data={"value": "attacker-value"}, headers=attack)
        else:
            answer = client.post(path, json={"value": "attacker-value"}, headers=attack)
    finally:
        client.cookies.clear()
    assert answer.status_code == 403, (answer.status_code, answer.text)
    assert "gAAAAA" not in answer.text
    assert not (uploads / "hello").exists()


def test_a_basic_authorization_header_alone_does_not_let_a_body_in(counted) -> None:
    """No Bearer token and no cookie: nothing can authenticate the request, 401 before the body is read."""
    test_client, counter = counted
    body, headers = multipart("big.zip", b"\0" * (8 * 1024 * 1024))
    answer = test_client.post("/upload", content=body, headers={**headers, "Authorization": "Basic YTpi"})
    assert answer.status_code == 401
    assert counter.received < 1024 * 1024, f"read {counter.received} bytes before answering 401"


def test_a_cookie_authenticated_post_without_origin_is_refused(client, auth, key) -> None:
    client.cookies.set("_token", auth("admin"))
    try:
        assert client.post("/encrypt", data={"value": "x"}).status_code == 403
    finally:
        client.cookies.clear()


# -- nothing secret shown: URL credentials, pythonEnv.env values, bare .env lines -------------------


def _upload_job(client, auth, files: dict[str, str], name: str = "job.zip"):
    answer = post_bundle(client, auth, bundle(files, top=None), name=name)
    assert answer.status_code == 201, answer.text
    return answer


def test_credentials_in_function_source_are_not_shown(client, auth, key, uploads) -> None:
    """A git token in function.source is shown as *** (sources.redact_url), in the API and the pages."""
    source = f"git+https://ci-bot:{GIT_TOKEN}@github.com/corp/private.git@main"
    _upload_job(
        client,
        auth,
        {
            "app.py": "def fn():\n    return 1\n",
            "job.json": json.dumps(
                {"jobId": "fromgit", "packageName": "app.py", "function": {"handler": "mod:fn", "source": source}}
            ),
        },
    )
    viewer = bearer(auth, "viewer")
    for answer in (
        client.get("/api/jobs", headers=viewer),
        client.get("/api/jobs/fromgit", headers=viewer),
        client.get("/jobs/fromgit", headers=viewer),
        client.get("/", headers=viewer),
    ):
        assert answer.status_code == 200
        assert GIT_TOKEN not in answer.text


def test_credentials_in_python_env_urls_are_not_shown(client, auth, key, uploads) -> None:
    """A token in a PEP 508 direct URL of pythonEnv.requirements is shown as ***."""
    req = f"private-lib @ https://__token__:{GIT_TOKEN}@pypi.corp.example/private_lib-1.0-py3-none-any.whl"
    _upload_job(
        client,
        auth,
        {
            "app.py": "print(1)\n",
            "job.json": json.dumps({"jobId": "withreq", "packageName": "app.py", "pythonEnv": {"requirements": [req]}}),
        },
    )
    answer = client.get("/api/jobs/withreq", headers=bearer(auth, "viewer"))
    assert answer.status_code == 200
    assert GIT_TOKEN not in answer.text


URL_FORMS = {
    "git+https token as user": f"git+https://{GIT_TOKEN}@github.com/corp/private.git@v1",
    "zip+https user and password": f"zip+https://ci-bot:{GIT_TOKEN}@files.corp.example/lib.zip",
    "PEP 508 name @ git+https token": f"private-lib @ git+https://{GIT_TOKEN}@github.com/corp/lib.git",
    "git+ssh user and password": f"git+ssh://deploy:{GIT_TOKEN}@git.corp.example/lib.git",
    "at sign inside the password": f"lib @ https://bot:{GIT_TOKEN}@x@pypi.corp.example/lib-1.0-py3-none-any.whl",
}


def _pages(client, auth, job_id: str):
    viewer = bearer(auth, "viewer")
    return [
        client.get("/api/jobs", headers=viewer),
        client.get(f"/api/jobs/{job_id}", headers=viewer),
        client.get(f"/jobs/{job_id}", headers=viewer),
        client.get("/", headers=viewer),
    ]


@pytest.mark.parametrize("form", sorted(URL_FORMS))
def test_a_viewer_sees_no_url_credentials_in_requirements(client, auth, key, uploads, form) -> None:
    """A viewer harvesting the page: the user info of every URL form in pythonEnv.requirements is
    hidden, not only that of plain http(s)."""
    write_job(
        uploads / "withreq",
        "print(1)\n",
        job={"jobId": "withreq", "pythonEnv": {"requirements": [URL_FORMS[form], "pandas==2.2.3"]}},
    )
    for answer in _pages(client, auth, "withreq"):
        assert answer.status_code == 200, answer.text
        assert GIT_TOKEN not in answer.text, answer.request.url
    assert "***@" in _pages(client, auth, "withreq")[1].text


@pytest.mark.parametrize(
    "source",
    [
        f"git+https://{GIT_TOKEN}@github.com/corp/private.git#bogus=1",
        f"git+https://x-access-token:{GIT_TOKEN}@github.com/corp/private.git#sha256=12",
        f"zip+https://ci-bot:{GIT_TOKEN}@files.corp.example/lib.zip#sha256=nothex",
        f"ftp://{GIT_TOKEN}@files.corp.example/lib.zip",
    ],
)
def test_a_viewer_sees_no_url_credentials_in_a_jobs_error_line(client, auth, key, uploads, source) -> None:
    """A job whose function.source fails its check is listed with its one-line error, which quotes
    the source: its user info is hidden there too (and in the upload's 400 answer)."""
    job = {"jobId": "badsource", "function": {"handler": "mod:fn", "source": source}}
    write_job(uploads / "badsource", "def fn():\n    return 1\n", job=job)
    pages = _pages(client, auth, "badsource")
    for answer in pages:
        assert answer.status_code == 200, answer.text
        assert GIT_TOKEN not in answer.text, answer.request.url
    assert pages[1].json()["error"], "the job should be listed with its error line"
    refused = post_bundle(client, auth, bundle({"app.py": "print(1)\n", "job.json": json.dumps(job)}), name="b.zip")
    assert refused.status_code == 400 and GIT_TOKEN not in refused.text, refused.text


def test_python_env_env_values_are_not_shown(client, auth, key, uploads) -> None:
    """pythonEnv.env is environment the job gets, like .env: only its keys are shown."""
    _upload_job(
        client,
        auth,
        {
            "app.py": "print(1)\n",
            "job.json": json.dumps(
                {"jobId": "withenv", "packageName": "app.py", "pythonEnv": {"env": {"DB_PASSWORD": ENV_SECRET}}}
            ),
        },
    )
    answer = client.get("/api/jobs/withenv", headers=bearer(auth, "viewer"))
    assert answer.status_code == 200
    assert ENV_SECRET not in answer.text


def test_a_dotenv_line_without_equals_is_not_shown_as_a_key(client, auth, key, uploads) -> None:
    """dotenv_values() turns a bare line (a pasted token) into a key without value: not shown."""
    files = hello_files(key)
    files[".env"] = f"REGION=eu\n{ENV_SECRET}\n"
    post = post_bundle(client, auth, bundle(files))
    assert post.status_code == 201, post.text
    answer = client.get("/api/jobs/hello", headers=bearer(auth, "viewer"))
    assert ENV_SECRET not in answer.text


# -- nothing served without a token, nothing echoed ------------------------------------------------


def test_no_openapi_schema_or_docs_are_served(client) -> None:
    """FastAPI serves its schema and docs without the routes' auth dependency: none is served."""
    for path in ("/api/openapi.json", "/openapi.json", "/docs", "/redoc"):
        assert client.get(path).status_code in (401, 404), path


def test_a_refused_encrypt_value_is_not_echoed(client, auth, key) -> None:
    """FastAPI's default 422 answer returns the submitted input: a too-long secret would come back
    whole (and reach any proxy or APM capturing error bodies). The page answers HTML, the API JSON."""
    value = "S3cret" * 11_000
    for answer in (
        client.post("/api/encrypt", json={"value": value}, headers=bearer(auth, "admin")),
        client.post("/encrypt", data={"value": value}, headers=bearer(auth, "admin")),
    ):
        assert answer.status_code in (400, 413, 422)
        assert value[:1000] not in answer.text
        assert "too long" in answer.text or "at most" in answer.text
        page = answer.headers["content-type"].startswith("text/html")
        assert page == (answer.request.url.path == "/encrypt")


# -- what an upload may replace and where it may write ---------------------------------------------


def test_a_job_id_naming_an_existing_file_does_not_move_it_away(client, auth, key, uploads) -> None:
    """jobId "README.txt" is a safe folder name, but upload_folder/README.txt is a file: renameat2 would
    exchange it with the new folder and move it under .versions/. Refused with 400, the file stays."""
    files = hello_files(key)
    files["job.json"] = json.dumps({**json.loads(files["job.json"]), "jobId": "README.txt"})
    answer = post_bundle(client, auth, bundle(files))
    assert answer.status_code == 400, answer.text
    assert (uploads / "README.txt").is_file()


def test_upload_folder_equal_to_the_dags_folder_does_not_hide_every_dag(
    client, auth, key, tmp_path, monkeypatch
) -> None:
    """An upload writes upload_folder/.airflowignore '*': in a folder holding DAG files (or a bundle
    root) that would hide every DAG. Such an upload is refused with one line naming the setting."""
    from airflow.utils.file import list_py_file_paths

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "etl.py").write_text("from airflow.sdk import DAG\ndag = DAG('etl')\n")
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER", str(dags))
    assert [Path(p).name for p in list_py_file_paths(str(dags))] == ["etl.py"]
    answer = post_bundle(client, auth, bundle(hello_files(key)))
    assert answer.status_code == 400, answer.text
    assert "upload_folder" in answer.json()["detail"] and "\n" not in answer.json()["detail"]
    assert [Path(p).name for p in list_py_file_paths(str(dags))] == ["etl.py"]


def test_upload_folder_equal_to_a_dag_bundle_root_is_refused(client, auth, key, tmp_path, monkeypatch) -> None:
    dags = tmp_path / "bundle"
    dags.mkdir()
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(dags))
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER", str(dags))
    answer = post_bundle(client, auth, bundle(hello_files(key)))
    assert answer.status_code == 400 and "DAG bundle root" in answer.json()["detail"], answer.text
    assert list(dags.iterdir()) == []


def test_a_deeply_nested_bundle_is_refused_with_400_and_leaves_nothing(auth, key, uploads) -> None:
    """An entry 'a/d/d/.../f.txt' 900-1200 levels deep would make mkdir(parents=True) or copytree raise
    RecursionError (a 500, leftovers in upload_folder): refused by the archive rules with 400."""
    from fastapi.testclient import TestClient

    from airflow_python_exec.plugins.app import create_app

    before = tree_digest(uploads)
    for depth in (900, 1200):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("a/app.py", "print(1)\n")
            zf.writestr("a/" + "d/" * depth + "f.txt", "x")
        with TestClient(create_app(), raise_server_exceptions=False) as test_client:
            answer = post_bundle(test_client, auth, buf.getvalue(), name="a.zip")
        assert answer.status_code == 400, (depth, answer.status_code)
        assert "levels deep" in answer.json()["detail"] and len(answer.json()["detail"]) < 400
        assert tree_digest(uploads) == before


@pytest.mark.parametrize(
    "name,rule",
    [
        ("/".join(["d"] * 65) + "/f", "levels deep"),
        ("/".join(["d" * 200] * 6), "characters"),
        ("a/" + "é" * 128, "bytes"),
    ],
)
def test_the_archive_rules_limit_depth_and_name_lengths(tmp_path, name, rule) -> None:
    """The rule is Sources' own, so a runtime zip source gets it too."""
    from airflow_python_exec.errors import JobConfigError
    from airflow_python_exec.isolation.archive import check_archive

    archive = tmp_path / "deep.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(name, "x")
    with pytest.raises(JobConfigError, match=rule):
        check_archive(archive, "source 'deep.zip'")


# -- request size: nothing read before authentication, nothing past the limit -------------------


def test_an_unauthenticated_upload_body_is_not_read(counted) -> None:
    """FastAPI parses (and spools) a form before the auth dependency runs: without credentials the
    answer is 401 before the body is read."""
    test_client, counter = counted
    body, headers = multipart("big.zip", b"\0" * (8 * 1024 * 1024))
    answer = test_client.post("/upload", content=body, headers=headers)
    assert answer.status_code == 401
    assert counter.received < 1024 * 1024, f"read {counter.received} bytes before answering 401"


def test_an_upload_larger_than_the_limit_is_refused_before_it_is_read(counted, auth, key, uploads, monkeypatch) -> None:
    """A Content-Length past max_source_bytes (plus framing) is refused before the body is read."""
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__MAX_SOURCE_BYTES", "100000")
    test_client, counter = counted
    body, headers = multipart("big.zip", b"\0" * (8 * 1024 * 1024))
    answer = test_client.post("/api/jobs", content=body, headers={**headers, **bearer(auth, "admin")})
    assert answer.status_code == 413
    assert counter.received < 2 * 1024 * 1024, f"read {counter.received} bytes of an over-limit upload"


def test_an_upload_without_content_length_is_cut_at_the_limit(client, auth, key, uploads, monkeypatch) -> None:
    """A chunked body has no Content-Length for BodyGuard to check: the copy stops at the limit."""
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__MAX_SOURCE_BYTES", "100000")
    body, headers = multipart("big.zip", b"\0" * (3 * 1024 * 1024))
    answer = client.post("/api/jobs", content=iter([body]), headers={**headers, **bearer(auth, "admin")})
    assert answer.status_code == 413, answer.text
    assert [p.name for p in uploads.iterdir()] == ["README.txt"]
