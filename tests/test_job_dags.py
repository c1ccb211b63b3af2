"""Jobs as DAGs (``load_job_dags``) in real Airflow: DAG files importing it, ``dag.test()`` with a
changed run configuration, Airflow's own ``DagBag`` parse, and ``airflow dags test`` from the CLI."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_job
from test_airflow import _engine, dags, run_dag  # noqa: F401 - fixtures

from airflow_python_exec.crypto import encrypt
from airflow_python_exec.errors import JobConfigError
from airflow_python_exec.models import PythonJob

#: A job script that leaves a marker when it is imported or run: parsing must never do either.
MARKER_SCRIPT = """
import os, pathlib
pathlib.Path(os.environ.get("MARKER", "{marker}")).write_text("ran")
print("APP_NAME is", os.environ.get("APP_NAME"))
print("token is", os.environ.get("API_TOKEN"))
"""


def dag_file(dags: Path, name: str, folders: list[Path]) -> dict:
    """Write the one-line DAG file (``load_job_dags(globals(), folders=...)``), import it as the DAG
    processor does, and return its globals."""
    path = dags / f"{name}.py"
    path.write_text(
        "from airflow_python_exec.job_dags import load_job_dags\n\n"
        f"load_job_dags(globals(), folders={[str(f) for f in folders]!r})\n"
    )
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return vars(module)


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    """A folder of job folders, outside the DAGs folder (as ``/srv/jobs`` would be)."""
    return tmp_path / "jobs"


def hello_job(jobs: Path, job_id: str, key: str, marker: Path, dag: dict | None = None) -> Path:
    token = encrypt("correct-horse-battery-staple", [key])
    config = {
        "jobId": job_id,
        "runtimeConfig": {
            "macros": [
                {"key": "APP_NAME", "value": "HelloWorld", "description": "who is greeted"},
                {"key": "API_TOKEN", "value": token, "secure": True},
            ]
        },
    }
    return write_job(
        jobs / job_id, MARKER_SCRIPT.format(marker=marker), job={**config, **({"dag": dag} if dag else {})}
    )


def test_a_plain_macro_is_a_param_that_reaches_the_script_and_a_secure_one_never_is(
    dags, jobs, tmp_path, capfd, caplog, _engine
) -> None:
    marker = tmp_path / "marker"
    hello_job(jobs, "jd_hello", _engine, marker)
    dag = dag_file(dags, "jd_hello_dags", [jobs])["job_jd_hello"]
    assert marker.exists() is False  # parsing ran nothing
    assert dict(dag.params.dump()) == {"APP_NAME": "HelloWorld"}  # API_TOKEN (secure) is no Param
    assert dag.params.get_param("APP_NAME").description == "who is greeted"
    assert "python-job" in dag.tags and dag.catchup is False and dag.schedule is None

    states, log = run_dag(dag, capfd, caplog, run_conf={"APP_NAME": "the Trigger form"})
    assert states == {"jd_hello": "success"}
    assert "APP_NAME is the Trigger form" in log
    assert "token is ***" in log and "correct-horse-battery-staple" not in log


def test_handler_parameters_are_typed_params_passed_with_their_types(dags, jobs, capfd, caplog) -> None:
    write_job(
        jobs / "jd_typed",
        """
        def report(limit, ratio, flag, names, country, options=None):
            for name, value in (("limit", limit), ("ratio", ratio), ("flag", flag), ("names", names),
                                ("country", country), ("options", options)):
                print(f"{name}={value!r} {type(value).__name__}")
        """,
        name="cities.py",
        job={
            "jobId": "jd_typed",
            "function": {
                "handler": "cities:report",
                "parameters": {
                    "limit": 3,
                    "ratio": 0.5,
                    "flag": True,
                    "names": ["a"],
                    "country": "IT",
                    "options": {"x": 1},
                },
            },
        },
    )
    dag = dag_file(dags, "jd_typed_dags", [jobs])["job_jd_typed"]
    params = dag.params
    assert {name: params.get_param(name).schema.get("type") for name in params} == {
        "limit": "integer",
        "ratio": "number",
        "flag": "boolean",
        "names": "array",
        "country": "string",
        "options": "object",
    }
    conf = {"limit": 7, "flag": False, "names": ["b", "c"], "country": "FR <&'\">"}
    states, log = run_dag(dag, capfd, caplog, run_conf=conf)
    assert states == {"jd_typed": "success"}
    for line in (
        "limit=7 int",
        "ratio=0.5 float",
        "flag=False bool",
        "names=['b', 'c'] list",
        "country='FR <&\\'\">' str",
        "options={'x': 1} dict",
    ):
        assert line in log


def test_the_dag_object_sets_schedule_description_tags_retries_and_max_active_runs(
    dags, jobs, tmp_path, _engine
) -> None:
    hello_job(
        jobs,
        "jd_sched",
        _engine,
        tmp_path / "marker",
        dag={
            "schedule": "*/5 * * * *",
            "description": "every five minutes",
            "tags": ["reports"],
            "retries": 2,
            "max_active_runs": 1,
        },
    )
    dag = dag_file(dags, "jd_sched_dags", [jobs])["job_jd_sched"]
    assert dag.schedule == "*/5 * * * *" and dag.timetable.expression == "*/5 * * * *"
    assert dag.description == "every five minutes"
    assert set(dag.tags) == {"python-job", "reports"}
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert dag.get_task("jd_sched").retries == 2
    hello_job(jobs, "jd_hourly", _engine, tmp_path / "marker", dag={"schedule": "@hourly"})
    assert dag_file(dags, "jd_hourly_dags", [jobs])["job_jd_hourly"].schedule == "@hourly"


@pytest.mark.parametrize(
    "dag,error",
    [
        ({"schedul": "@daily"}, "dag.schedul: unknown key 'schedul'; remove it or fix its spelling"),
        ({"catchup": True}, "dag.catchup: unknown key 'catchup'"),
        ({"schedule": "every day"}, "schedule 'every day' is not a cron expression"),
        ({"schedule": "@fortnightly"}, "schedule '@fortnightly' is not a preset"),
        ({"retries": -1}, "dag.retries: Input should be greater than or equal to 0"),
    ],
)
def test_a_bad_dag_object_is_a_one_line_job_error(tmp_path, dag, error) -> None:
    write_job(tmp_path / "j", "print(1)", job={"jobId": "j", "dag": dag})
    with pytest.raises(JobConfigError) as refused:
        PythonJob.load(tmp_path / "j")
    assert error in str(refused.value) and "\n" not in str(refused.value)


def test_a_broken_job_gets_one_warning_and_no_dag_and_the_others_theirs(dags, jobs, tmp_path, caplog, _engine) -> None:
    marker = tmp_path / "marker"
    hello_job(jobs, "jd_good", _engine, marker)
    write_job(jobs / "jd_typo", "print(1)", job={"jobId": "jd_typo", "dag": {"schedul": "@daily"}})
    write_job(jobs / "jd_noscript", "print(1)", job={"jobId": "jd_noscript", "packageName": "missing.py"})
    (jobs / "jd_badjson").mkdir()
    (jobs / "jd_badjson" / "job.json").write_text("{not json")
    hello_job(jobs, "jd_twin", _engine, marker)
    write_job(jobs / "jd_twin_copy", "print(1)", job={"jobId": "jd_twin"})
    (jobs / "not_a_job").mkdir()  # neither job.json nor app.py: silently not a job
    write_job(jobs / ".versions" / "jd_old", "print(1)", job={"jobId": "jd_old"})  # hidden: never a job

    with caplog.at_level(logging.WARNING, logger="airflow_python_exec"):
        found = dag_file(dags, "jd_broken_dags", [jobs, tmp_path / "does-not-exist"])
    dag_ids = {name for name, value in found.items() if name.startswith("job_")}
    assert dag_ids == {"job_jd_good", "job_jd_twin"}
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "has no DAG" in r.getMessage()
    ]
    assert len(warnings) == 4, warnings
    expected = {
        "jd_typo": "dag.schedul: unknown key 'schedul'; remove it or fix its spelling",
        "jd_noscript": "packageName 'missing.py' does not exist",
        "jd_badjson": "is not valid JSON",
        "jd_twin_copy": "jobId 'jd_twin' is also the job in",
    }
    for folder, error in expected.items():
        assert any(f"job folder {jobs / folder} has no DAG: " in w and error in w for w in warnings), (folder, warnings)
    assert not marker.exists()


def test_parsing_never_imports_or_runs_job_code(dags, jobs, tmp_path, _engine) -> None:
    """Airflow's own parse of the DAG file (``DagBag``, as the DAG processor does): a script and a
    handler module that would leave a marker when imported leave none."""
    from airflow.dag_processing.dagbag import DagBag

    marker = tmp_path / "marker"
    hello_job(jobs, "jd_script", _engine, marker)
    write_job(
        jobs / "jd_handler",
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\ndef run(n):\n    return n\n",
        name="mod.py",
        job={"jobId": "jd_handler", "function": {"handler": "mod:run", "parameters": {"n": 1}}},
    )
    dag_file(dags, "jd_parse_dags", [jobs])
    bag = DagBag(dag_folder=str(dags / "jd_parse_dags.py"))
    assert {"job_jd_script", "job_jd_handler"} <= set(bag.dag_ids)
    assert bag.import_errors == {}
    assert not marker.exists()


def test_a_new_version_updates_params_and_schedule_at_the_next_parse(dags, jobs, tmp_path, _engine) -> None:
    folder = hello_job(jobs, "jd_versions", _engine, tmp_path / "marker")
    first = dag_file(dags, "jd_versions_v1", [jobs])["job_jd_versions"]
    config = json.loads((folder / "job.json").read_text())
    config["runtimeConfig"]["macros"].append({"key": "REGION", "value": "eu"})
    config["dag"] = {"schedule": "@daily"}
    (folder / "job.json").write_text(json.dumps(config))
    second = dag_file(dags, "jd_versions_v2", [jobs])["job_jd_versions"]
    assert set(first.params) == {"APP_NAME"} and first.schedule is None
    assert set(second.params) == {"APP_NAME", "REGION"} and second.schedule == "@daily"


def test_a_macro_and_a_parameter_of_the_same_name_are_refused(dags, jobs, caplog) -> None:
    write_job(
        jobs / "jd_clash",
        "def run(limit):\n    return limit\n",
        job={
            "jobId": "jd_clash",
            "runtimeConfig": {"macros": [{"key": "limit", "value": "1"}]},
            "function": {"handler": "run", "parameters": {"limit": 2}},
        },
    )
    with caplog.at_level(logging.WARNING, logger="airflow_python_exec"):
        assert "job_jd_clash" not in dag_file(dags, "jd_clash_dags", [jobs])
    assert "'limit' is both a macro and a function parameter" in caplog.text


def test_upload_folder_and_the_prefix_setting_under_airflow_dags_test(tmp_path) -> None:
    """The real CLI: ``airflow dags test`` parses a DAGs folder whose one-line file exposes the jobs of
    ``[python_exec] upload_folder`` under ``[python_exec] job_dag_prefix``, and runs one with a changed Param."""
    dags_folder, uploads, marker = tmp_path / "dags", tmp_path / "uploads", tmp_path / "marker"
    dags_folder.mkdir()
    (dags_folder / "python_jobs.py").write_text(
        "from airflow_python_exec.job_dags import load_job_dags\n\nload_job_dags(globals())\n"
    )
    write_job(
        uploads / "jd_cli",
        MARKER_SCRIPT.format(marker=marker),
        job={"jobId": "jd_cli", "runtimeConfig": {"macros": [{"key": "APP_NAME", "value": "default"}]}},
    )
    env = {
        **os.environ,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER": str(uploads),
        "AIRFLOW__PYTHON_EXEC__JOB_DAG_PREFIX": "py_",
        "AIRFLOW__PYTHON_EXEC__INSTALL_PATH": sys.prefix,
        "AIRFLOW__PYTHON_EXEC__CACHE_DIR": str(tmp_path / "cache"),
    }
    airflow = str(Path(sys.executable).parent / "airflow")
    done = subprocess.run(
        [airflow, "dags", "test", "py_jd_cli", "-c", json.dumps({"APP_NAME": "the CLI"})],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "APP_NAME is the CLI" in output
    assert marker.read_text() == "ran"  # the run ran the job (and only the run)


def test_one_folder_given_alone_is_that_folder(jobs, tmp_path, _engine) -> None:
    from airflow_python_exec.job_dags import load_job_dags

    hello_job(jobs, "jd_alone", _engine, tmp_path / "marker")
    namespace: dict = {"__file__": str(tmp_path / "python_jobs.py")}
    assert list(load_job_dags(namespace, folders=jobs)) == ["job_jd_alone"]
    assert namespace["job_jd_alone"].fileloc == str(tmp_path / "python_jobs.py")


def test_dags_without_a_dag_object_take_airflows_configured_defaults(jobs, tmp_path, monkeypatch, _engine) -> None:
    from airflow_python_exec.job_dags import load_job_dags

    monkeypatch.setenv("AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG", "3")
    monkeypatch.setenv("AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG", "5")
    hello_job(jobs, "jd_defaults", _engine, tmp_path / "marker")
    hello_job(jobs, "jd_own", _engine, tmp_path / "marker", dag={"max_active_runs": 1})
    dags = load_job_dags({}, folders=[jobs])
    assert (dags["job_jd_defaults"].max_active_runs, dags["job_jd_defaults"].max_active_tasks) == (3, 5)
    assert dags["job_jd_own"].max_active_runs == 1
