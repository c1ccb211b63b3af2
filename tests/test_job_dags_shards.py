"""Jobs as DAGs at thousands of folders: ``load_job_dags(globals(), shard=(i, n))`` splits the jobs into
stable shares over several DAG files, one file's failure leaves the others' DAGs, an unchanged folder
is not read again by the same process, and a shipped job keeps its DAG against an upload of its jobId.
Real DAG files parsed by Airflow's own ``DagBag``."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import pytest
from conftest import write_job
from test_airflow import _engine  # noqa: F401 - fixture

from airflow_python_exec.job_dags import load_job_dags, shard_of

JOB_IDS = [f"sh_{n:02d}" for n in range(24)]


@pytest.fixture
def many_jobs(tmp_path, _engine):
    jobs = tmp_path / "jobs"
    for job_id in JOB_IDS:
        write_job(jobs / job_id, "print(1)", job={"jobId": job_id})
    return jobs


def shard_file(folder, index: int, count: int, jobs, tail: str = "") -> None:
    (folder / f"python_jobs_{index}.py").write_text(
        "from airflow_python_exec.job_dags import load_job_dags\n\n"
        f"load_job_dags(globals(), folders=[{str(jobs)!r}], shard=({index}, {count}))\n{tail}"
    )


def test_shards_split_the_jobs_and_a_failing_file_takes_only_its_own_share(many_jobs, tmp_path) -> None:
    """Three DAG files: every job DAG in exactly one; the file that fails to import loses its share only."""
    from airflow.dag_processing.dagbag import DagBag

    folder = tmp_path / "dags"
    folder.mkdir()
    for index in range(3):
        shard_file(folder, index, 3, many_jobs, tail="raise RuntimeError('broken file')\n" if index == 2 else "")
    bag = DagBag(dag_folder=str(folder))
    by_file = {index: {d for d, dag in bag.dags.items() if dag.fileloc.endswith(f"_{index}.py")} for index in range(3)}
    assert list(bag.import_errors) == [str(folder / "python_jobs_2.py")]
    for index in (0, 1):
        assert by_file[index] == {f"job_{j}" for j in JOB_IDS if shard_of(j, 3) == index}
    assert by_file[2] == set()
    assert all(by_file[0]) and all(by_file[1]) and 0 < len(by_file[0] | by_file[1]) < len(JOB_IDS)


def test_a_jobs_share_is_the_same_in_every_process(many_jobs) -> None:
    """Another process (another string hash seed) puts every job in the same share."""
    here = {i: sorted(load_job_dags({}, folders=[many_jobs], shard=(i, 4))) for i in range(4)}
    assert sorted(d for ids in here.values() for d in ids) == sorted(f"job_{j}" for j in JOB_IDS)
    script = (
        "import json, sys\nfrom airflow_python_exec.job_dags import load_job_dags\n"
        "print(json.dumps({i: sorted(load_job_dags({}, folders=[sys.argv[1]], shard=(i, 4))) for i in range(4)}))"
    )
    other = subprocess.run(
        [sys.executable, "-c", script, str(many_jobs)],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
        timeout=240,
    )
    assert json.loads(other.stdout.strip().splitlines()[-1]) == {str(i): ids for i, ids in here.items()}


@pytest.mark.parametrize("shard", [(4, 4), (-1, 2), (0, 0), ("0", 2), (0,)])
def test_a_bad_shard_is_refused_naming_it(shard) -> None:
    with pytest.raises(ValueError, match=r"shard=.* is not \(i, n\)"):
        load_job_dags({}, folders=[], shard=shard)


def test_an_unchanged_folder_is_not_read_again_by_the_same_process(many_jobs, monkeypatch) -> None:
    """A second parse in the same process reads no job.json; an edited one is read again, alone."""
    from airflow_python_exec import job_dags

    reads: list[str] = []
    load = job_dags.PythonJob.load
    monkeypatch.setattr(job_dags.PythonJob, "load", lambda path: reads.append(os.fspath(path)) or load(path))
    first = load_job_dags({}, folders=[many_jobs])
    assert len(reads) == len(JOB_IDS)
    reads.clear()
    second = load_job_dags({}, folders=[many_jobs])
    assert reads == [] and set(second) == set(first)
    edited = many_jobs / "sh_03" / "job.json"
    edited.write_text(json.dumps({"jobId": "sh_03", "packageName": "app.py", "dag": {"schedule": "@daily"}}))
    os.utime(edited, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    third = load_job_dags({}, folders=[many_jobs])
    assert reads == [str(many_jobs / "sh_03")] and third["job_sh_03"].schedule == "@daily"


def test_an_upload_with_a_shipped_jobs_id_gets_no_dag_and_a_warning(tmp_path, monkeypatch, caplog, _engine) -> None:
    """The shipped job (``folders=``) keeps ``job_nightly_billing``; the upload of the same jobId is the
    duplicate, named in one warning."""
    shipped = write_job(tmp_path / "shipped" / "nightly_billing", "print('reviewed')", job={"jobId": "nightly_billing"})
    uploads = tmp_path / "uploads"
    write_job(uploads / "nightly_billing", "print('taken over')", job={"jobId": "nightly_billing"})
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER", str(uploads))
    with caplog.at_level(logging.WARNING, logger="airflow_python_exec"):
        made = load_job_dags({}, folders=[tmp_path / "shipped"])
    assert made["job_nightly_billing"].get_task("nightly_billing").job == str(shipped.resolve())
    assert f"job folder {uploads / 'nightly_billing'} has no DAG: jobId 'nightly_billing' is also the job in" in (
        caplog.text
    )
