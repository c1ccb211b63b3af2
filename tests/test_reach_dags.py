"""Jobs as DAGs, attacked through what an upload names (DESIGN.md "Reach: what a job may name"):
a parameter name written as Jinja, and a job.json too large to parse."""

from __future__ import annotations

import json
import logging
import os
import resource
from pathlib import Path

import pytest
from conftest import write_job
from test_airflow import _engine, dags, run_dag  # noqa: F401 - fixtures
from test_job_dags import dag_file, jobs  # noqa: F401 - fixture

from airflow_python_exec import PythonExecutionService
from airflow_python_exec.errors import JobConfigError
from airflow_python_exec.plugins.catalog import dotenv_keys

SECRET_PASSWORD = "pw-of-the-prod-db-7781"
SECRET_VARIABLE = "variable-secret-5523"

HANDLER = """
def run(**kwargs):
    for name, value in sorted(kwargs.items()):
        print(f"got {name!r}={value!r}")
"""


def warnings_for(caplog, folder: Path) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and str(folder) in r.getMessage()]


def test_a_jinja_parameter_name_is_never_rendered_the_folder_gets_no_dag_and_one_warning(
    dags, jobs, capfd, caplog, monkeypatch
) -> None:
    """Issue 23, point 3, as the attacker wrote it: an uploaded job whose parameter keys are Jinja
    reading a Connection's password and a Variable. Before, the key became template text and the
    handler received both secrets, sandbox or not."""
    monkeypatch.setenv("AIRFLOW_CONN_PROD_DB", json.dumps({"conn_type": "generic", "password": SECRET_PASSWORD}))
    monkeypatch.setenv("AIRFLOW_VAR_SECRET", SECRET_VARIABLE)
    evil = write_job(
        jobs / "jinja_names",
        HANDLER,
        name="mod.py",
        job={
            "jobId": "jinja_names",
            "function": {
                "handler": "mod:run",
                "parameters": {"{{ conn.prod_db.password }}": 1, "{{ var.value.secret }}": 2},
            },
        },
    )
    # A valid name whose *value* is Jinja: passed to the handler as the text it is.
    write_job(
        jobs / "jinja_value",
        HANDLER,
        name="mod.py",
        job={
            "jobId": "jinja_value",
            "function": {"handler": "mod:run", "parameters": {"note": "{{ var.value.secret }}"}},
            "runtimeConfig": {"macros": [{"key": "GREETING", "value": "{{ conn.prod_db.password }}"}]},
        },
    )
    with caplog.at_level(logging.WARNING):
        made = dag_file(dags, "reach_jinja_dags", [jobs])
    assert "job_jinja_names" not in made
    (warning,) = warnings_for(caplog, evil)
    assert "is not an identifier" in warning and "\n" not in warning
    states, log = run_dag(made["job_jinja_value"], capfd, caplog)
    assert states == {"jinja_value": "success"}
    assert "got 'note'='{{ var.value.secret }}'" in log
    assert SECRET_PASSWORD not in log and SECRET_VARIABLE not in log


def test_a_huge_sparse_job_json_is_refused_quickly_in_bounded_memory_and_other_dags_stay(dags, jobs, caplog) -> None:
    """Issue 23, point 10: a 256 MiB job.json (sparse: it zips to almost nothing) cost the DAG file
    17 to 21 s and 905 MB, so every job DAG of the file was lost at the parse timeout."""
    huge = jobs / "huge"
    huge.mkdir(parents=True)
    (huge / "app.py").write_text("print('never')\n")
    with open(huge / "job.json", "wb") as f:
        f.write(b'{"jobId": "huge", "packageName": "app.py", "x": "')
        f.truncate(256 << 20)
    write_job(jobs / "small", "print('hi')\n", job={"jobId": "small"})
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with caplog.at_level(logging.WARNING):
        made = dag_file(dags, "reach_huge_dags", [jobs])
    assert "job_small" in made and "job_huge" not in made
    (warning,) = warnings_for(caplog, huge)
    assert "larger than the 4 MiB a job.json may hold" in warning
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 64 << 10  # KiB: < 64 MiB more
    assert os.path.getsize(huge / "job.json") == 256 << 20


def test_a_huge_sparse_dotenv_is_refused_in_one_line_before_the_start(tmp_path, settings) -> None:
    """``.env`` is read with the same cap, on the open file, for ``dotenv_as_macros`` and for the
    Python jobs page's list of its keys."""
    job = write_job(tmp_path / "job", "open('started', 'w')\n", job={"jobId": "dotenv_huge"})
    with open(job / ".env", "wb") as f:
        f.write(b"A=1\n")
        f.truncate(256 << 20)
    with pytest.raises(JobConfigError, match=r"\.env is larger than the 4 MiB a \.env may hold") as info:
        PythonExecutionService(settings).run(job, dotenv_as_macros=True)
    assert "\n" not in str(info.value) and not (job / "started").exists()
    assert dotenv_keys(job / ".env") == []
