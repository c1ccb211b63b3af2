"""Review B: attacks on uploads, the jobs page's visibility and the data platform handlers, each
written as the hostile uploader or job author would (one test per break found)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import bearer, bundle, hello_files, post_bundle

from airflow_python_exec.handlers.declared import decorator_outputs, project_dataitems
from airflow_python_exec.models import PythonJob
from airflow_python_exec.plugins.job_outputs import declared_outputs

#: Handler files that make CPython's parser give up with RecursionError or MemoryError, not SyntaxError.
HOSTILE_SOURCES = {
    "nested not": "x = " + "not " * 200_000 + "1\n",
    "nested minus": "x = " + "-" * 200_000 + "1\n",
    "long attribute chain": "x = a" + ".b" * 200_000 + "\n",
    "long call chain": "x = f" + "()" * 200_000 + "\n",
    "long sum": "x = " + "+".join(["1"] * 200_000) + "\n",
}


@pytest.mark.parametrize("source", HOSTILE_SOURCES.values(), ids=HOSTILE_SOURCES.keys())
def test_a_handler_file_the_parser_gives_up_on_declares_nothing_and_the_jobs_page_still_lists_it(
    tmp_path: Path, source: str
) -> None:
    # The attacker uploads a platform job whose app.py the worker's AST reader cannot parse: the
    # reader must say "declares nothing" (as for any file that does not parse), not raise into the
    # worker or into the Python jobs page, which describes every upload for every viewer.
    folder = tmp_path / "bomb"
    folder.mkdir()
    (folder / "app.py").write_text("from digitalhub_runtime_python import handler\n" + source)
    (folder / "job.json").write_text(json.dumps({"jobId": "bomb", "function": {"handler": "main"}}))
    assert decorator_outputs(folder / "app.py", "main") is None
    assert project_dataitems(folder / "app.py") == []
    assert declared_outputs(PythonJob.load(folder)) == []


@pytest.fixture
def team_editor(auth, monkeypatch):
    """DAG-level permissions (as FAB or Keycloak give): ``viewer`` may read and edit only the DAGs
    ``job_team_*`` (and DAGs in general, the question a list or an upload form asks); ``admin`` all."""
    from airflow.api_fastapi.app import get_auth_manager

    manager_type = type(get_auth_manager())
    original = manager_type.get_authorized_dag_ids

    def is_authorized_dag(self, *, method, user, access_entity=None, details=None):
        if user.get_name() == "admin" or details is None or details.id is None:
            return True
        return details.id.startswith("job_team_")

    def get_authorized_dag_ids(self, *, user, method="GET", **kw):
        ids = original(self, user=user, method=method, **kw)
        return ids if user.get_name() == "admin" else {d for d in ids if d.startswith("job_team_")}

    monkeypatch.setattr(manager_type, "is_authorized_dag", is_authorized_dag)
    monkeypatch.setattr(manager_type, "get_authorized_dag_ids", get_authorized_dag_ids)


def test_an_editor_of_some_dags_cannot_upload_over_a_job_whose_dag_they_may_not_edit(
    client, auth, key, uploads, team_editor
) -> None:
    # The admin's upload "hello" is the DAG job_hello, which the viewer may neither read nor edit. The
    # viewer, who may edit job_team_* only, uploads a bundle with the same jobId: it would replace the
    # code that job_hello runs (its schedule, its connections). Refused with 403, the folder untouched.
    assert post_bundle(client, auth, bundle(hello_files(key, "admin's"))).status_code == 201
    answer = post_bundle(client, auth, bundle(hello_files(key, "attacker's")), user="viewer")
    assert answer.status_code == 403, answer.text
    assert "admin's" in (uploads / "hello" / "app.py").read_text()
    assert not (uploads / ".versions" / "hello").exists() or not any((uploads / ".versions" / "hello").iterdir())
    # a new jobId outside the viewer's DAGs is refused too; one of theirs is accepted
    files = hello_files(key)
    files["job.json"] = files["job.json"].replace('"jobId": "hello"', '"jobId": "other"')
    assert post_bundle(client, auth, bundle(files, top="other"), name="other.zip", user="viewer").status_code == 403
    assert not (uploads / "other").exists()
    files["job.json"] = files["job.json"].replace('"jobId": "other"', '"jobId": "team_etl"')
    answer = post_bundle(client, auth, bundle(files, top="team_etl"), name="team_etl.zip", user="viewer")
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize("offset", [2**63, 10**30])
def test_a_huge_offset_is_an_empty_page_not_a_server_error(client, auth, key, uploads, offset) -> None:
    # A viewer asks for a page far past the end: the database's OFFSET is a 64-bit integer, and the
    # SQLite driver raised OverflowError (500) for a larger one.
    from airflow_python_exec.plugins.listing import ordered_dags, page_of

    page = page_of(None, offset, None)
    assert ordered_dags(["job_nobody"], limit=page.limit, offset=page.offset) == []
    answer = client.get(f"/api/jobs?offset={offset}", headers=bearer(auth, "viewer"))
    assert answer.status_code == 200 and answer.json()["jobs"] == [], answer.text


@pytest.mark.parametrize("project", ["dataitem", "artifact", "DataItem"])
def test_a_project_named_like_a_data_store_folder_is_refused(tmp_path: Path, project: str) -> None:
    # A hostile job sets project "dataitem": its store {data_store}/dataitem is the folder of every
    # job's tables without a project, so its item folders would sit among (and inside) theirs.
    from airflow_python_exec.errors import JobConfigError

    folder = tmp_path / "squat"
    folder.mkdir()
    (folder / "app.py").write_text("def main():\n    return 1\n")
    job = {"jobId": "squat", "project": project, "function": {"handler": "main"}}
    (folder / "job.json").write_text(json.dumps(job))
    with pytest.raises(JobConfigError, match="data store folder"):
        PythonJob.load(folder)


def test_a_folder_named_like_a_version_record_does_not_break_the_items_versions(tmp_path: Path) -> None:
    # An item folder named "<version>.json" beside the version records (a project "dataitem" output so
    # named, inside the item "dataitem" of the jobs without a project) made every reader of that item's
    # versions (get_dataitem before the start, data-items show) raise IsADirectoryError.
    from airflow_python_exec.handlers.store import version_records

    item = tmp_path / "dataitem" / "victim"
    (item / "20260101T000000000000Z-aaaaaa.json").mkdir(parents=True)
    (item / "20260101T000000000001Z-bbbbbb.json").write_text(json.dumps({"version": "20260101T000000000001Z-bbbbbb"}))
    records = version_records(f"file://{tmp_path}", "dataitem", "victim")
    assert [r["version"] for r in records] == ["20260101T000000000001Z-bbbbbb"]


def _hostile_outputs(tmp_path: Path, depth: int = 0, sparse: int = 0) -> Path:
    """What a hostile handler leaves in its outputs folder: a folder artifact ``model`` ``depth``
    folders deep, holding a sparse file of ``sparse`` bytes (a few blocks on the disk)."""
    out = tmp_path / "outputs"
    (out / "model" / "m").mkdir(parents=True)
    fd = os.open(out / "model" / "m", os.O_RDONLY)
    for _ in range(depth):  # by descriptor: deeper than PATH_MAX allows by path
        os.mkdir("a", dir_fd=fd)
        inner = os.open("a", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)
    if sparse:
        with open(out / "model" / "m" / "big", "wb") as f:
            f.truncate(sparse)
    manifest = {"outputs": [{"name": "model", "kind": "artifact", "format": "folder", "file": "model/m"}]}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_a_folder_artifact_nested_thousands_deep_fails_the_publish_in_one_line(tmp_path: Path) -> None:
    # RecursionError escaped the worker's publish (a traceback, not the run's one-line failure).
    from airflow_python_exec.handlers.outputs import PublishError, publish
    from airflow_python_exec.models.data_item_specs import parse_outputs

    out = _hostile_outputs(tmp_path, depth=3000)
    try:
        with pytest.raises(PublishError, match="folders deep"):
            publish(
                out,
                parse_outputs([{"name": "model", "kind": "artifact"}]),
                f"file://{tmp_path}/store",
                _store_reach(tmp_path),
                max_bytes=1 << 20,
                max_data_bytes=1 << 30,
            )
    finally:
        _flatten(out / "model" / "m")


def _store_reach(tmp_path: Path):
    """The reach of a run whose only writable place is the data store ``tmp_path/store``."""
    from airflow_python_exec.models.reach import Reach, Root

    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    return Reach((Root(str(store), os.path.realpath(store), writable=True),))


def _flatten(top: Path) -> None:
    """Remove a chain of folders ``top/a/a/...`` too deep for ``shutil.rmtree`` (pytest's clean-up):
    lift each level's child one up, so every path stays short."""
    while (top / "a").is_dir():
        if (top / "a" / "a").is_dir():
            os.rename(top / "a" / "a", top / "lifted")
            os.rmdir(top / "a")
            os.rename(top / "lifted", top / "a")
        else:
            os.rmdir(top / "a")


def test_a_sparse_file_in_an_artifact_is_copied_only_up_to_the_byte_cap(tmp_path: Path) -> None:
    # A 64 MiB sparse file costs the job nothing; the worker copied all of it into the data store
    # (a terabyte one fills the store): DESIGN "Reach" promises a byte cap on every output copy.
    from airflow_python_exec.handlers.outputs import PublishError, publish
    from airflow_python_exec.models.data_item_specs import parse_outputs

    out = _hostile_outputs(tmp_path, sparse=64 << 20)
    with pytest.raises(PublishError, match="max_data_bytes"):
        publish(
            out,
            parse_outputs([{"name": "model", "kind": "artifact"}]),
            f"file://{tmp_path}/store",
            _store_reach(tmp_path),
            max_bytes=1 << 20,
            max_data_bytes=1 << 20,
        )
    written = sum(p.stat().st_size for p in (tmp_path / "store").rglob("*") if p.is_file())
    assert written <= 2 << 20, written
