"""An upload and the job DAGs: it may not take the ``jobId`` of another job folder (a shipped
``folders=`` job keeps ``job_<jobId>``), and it asks Airflow to re-parse the DAG files that expose
uploads, as the UI's "Reparse" button does. Job DAGs are made by ``load_job_dags`` and written to the
metadata database as the DAG processor writes them; real uploads through the plugin's app.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
from conftest import bearer, bundle, hello_files, post_bundle, save_parsed_dags, write_job
from test_python_jobs_paging import drop_dags


def serialize(dags: dict, fileloc: str) -> None:
    """Write ``dags`` to the metadata database as parsed from ``fileloc`` (bundle ``dags-folder``)."""
    from airflow.serialization.serialized_objects import LazyDeserializedDAG

    made = []
    for dag in dags.values():
        dag.fileloc, dag.relative_fileloc = fileloc, fileloc.rsplit("/", 1)[-1]
        made.append(LazyDeserializedDAG.from_dag(dag))
    save_parsed_dags(made)


@pytest.fixture
def job_id():
    """A jobId of this test alone; its DAG is deleted after it."""
    name = f"billing_{uuid.uuid4().hex[:8]}"
    yield name
    drop_dags(f"job_{name}")


def job_files(key: str, job_id: str) -> dict[str, str]:
    files = hello_files(key)
    files["job.json"] = files["job.json"].replace('"jobId": "hello"', json.dumps(job_id).join(['"jobId": ', ""]))
    return files


def test_an_upload_cannot_take_the_job_id_of_a_shipped_job(client, auth, key, uploads, tmp_path, job_id) -> None:
    """The attack: upload a bundle whose jobId is a reviewed job's, shipped in ``folders=``. Refused with
    409 and one line naming that folder; nothing written; the shipped job keeps its DAG."""
    from airflow_python_exec.job_dags import load_job_dags

    shipped = write_job(tmp_path / "shipped" / job_id, "print('reviewed')", job={"jobId": job_id})
    dags_file = tmp_path / "python_jobs.py"
    dags_file.write_text("# load_job_dags(globals(), folders=[...])\n")
    serialize(load_job_dags({}, folders=[tmp_path / "shipped"]), str(dags_file))

    answer = post_bundle(client, auth, bundle(job_files(key, job_id), top=job_id), name=f"{job_id}.zip")
    assert answer.status_code == 409, answer.text
    detail = answer.json()["detail"]
    assert f"jobId {job_id!r} is already the job of {shipped.resolve()} (DAG job_{job_id})" in detail
    assert "\n" not in detail
    assert not (uploads / job_id).exists()
    page = client.post(
        "/upload",
        files={"file": (f"{job_id}.zip", bundle(job_files(key, job_id), top=job_id))},
        headers=bearer(auth, "admin"),
    )
    assert page.status_code == 409 and "already the job of" in page.text


def test_an_upload_may_replace_its_own_job_and_asks_for_a_reparse(client, auth, key, uploads, tmp_path, job_id) -> None:
    """A new version of an upload whose DAG runs that very folder is taken (201), and asks the DAG
    processor to re-parse the file holding the job DAGs: one pending request per file, not two."""
    from airflow.models.dagbag import DagPriorityParsingRequest
    from airflow.utils.session import create_session
    from sqlalchemy import delete, select

    from airflow_python_exec.job_dags import load_job_dags

    with create_session() as session:
        session.execute(delete(DagPriorityParsingRequest))
    first = post_bundle(client, auth, bundle(job_files(key, job_id), top=job_id), name=f"{job_id}.zip")
    assert first.status_code == 201, first.text
    dags_file = tmp_path / f"jobs_{job_id}.py"
    dags_file.write_text("from airflow_python_exec.job_dags import load_job_dags\n\nload_job_dags(globals())\n")
    serialize(load_job_dags({}), str(dags_file))
    os.utime(dags_file, (1_000_000_000, 1_000_000_000))  # older than every other DAG file

    for _ in range(2):
        again = post_bundle(client, auth, bundle(job_files(key, job_id), top=job_id), name=f"{job_id}.zip")
        assert again.status_code == 201, again.text
        assert f"dags-folder:{dags_file.name}" in again.json()["reparse"]
    with create_session() as session:
        pending = session.execute(
            select(DagPriorityParsingRequest.bundle_name, DagPriorityParsingRequest.relative_fileloc)
        ).all()
    assert pending.count(("dags-folder", dags_file.name)) == 1
    # the newest file: the DAG processor sorts its queue by modification time when it refreshes the bundle
    assert dags_file.stat().st_mtime > time.time() - 60
    listed = client.get(f"/api/jobs?search={job_id}", headers=bearer(auth, "viewer")).json()["jobs"]
    assert [(j["jobId"], j["parsing"]) for j in listed] == [(job_id, False)]
