"""The operator, hook and decorator in real Airflow: ``dag.test()`` on the SQLite metadata database."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import task_log_lines, write_job

from airflow_python_exec.crypto import encrypt, generate_key


def load_dag(dags: Path, body: str, name: str):
    """Write ``body`` as DAG file ``name`` in the DAGs folder and import it (``fileloc`` is that file)."""
    path = dags / f"{name}.py"
    path.write_text(
        textwrap.dedent(
            """
        import pendulum
        from airflow.sdk import DAG, Param, task
        from airflow_python_exec import Macro, PythonJobOperator
        START = pendulum.datetime(2026, 1, 1, tz="UTC")
        """
        )
        + textwrap.dedent(body)
    )
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def run_dag(dag, capfd, caplog, **kwargs) -> tuple[dict[str, str], str]:
    """Run ``dag.test()``; return each task's final state and everything logged.

    Task log lines go to stdout; stdlib log records (ours included) are held by pytest's caplog.
    """
    with caplog.at_level(logging.INFO):
        dag_run = dag.test(**kwargs)
    out, err = capfd.readouterr()
    err += caplog.text
    states = {
        ti.task_id: str(ti.state.value if hasattr(ti.state, "value") else ti.state)
        for ti in dag_run.get_task_instances()
    }
    return states, out + err


@pytest.fixture(scope="module")
def dags(tmp_path_factory) -> Path:
    """One DAGs folder for this module (Airflow caches its DAG bundle per process); jobs ignored.

    Module scope: the setting is undone before other modules run `airflow` commands.
    """
    from airflow import settings

    folder = tmp_path_factory.mktemp("dags")
    (folder / ".airflowignore").write_text("jobs/\n")
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(folder))
    # Airflow reads [core] dags_folder once per process: a module run earlier has set it already.
    mp.setattr(settings, "DAGS_FOLDER", str(folder))
    yield folder
    mp.undo()


@pytest.fixture
def jobs(dags: Path, request) -> Path:
    """This test's jobs folder, inside the DAGs folder (relative job paths resolve against it)."""
    return dags / "jobs" / request.node.name.replace("[", "_").replace("]", "")


@pytest.fixture(autouse=True)
def _engine(monkeypatch, tmp_path: Path):
    """Airflow-side settings for these tests: this interpreter, a private cache, one Fernet key."""
    key = generate_key()
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__INSTALL_PATH", sys.prefix)
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__FERNET_KEY", key)
    return key


def test_output_reaches_the_task_log_and_secrets_do_not(dags, jobs, capfd, caplog, _engine) -> None:
    secret = "correct-horse-battery-staple"
    token = encrypt(secret, [_engine])
    write_job(
        jobs / "hello",
        """
        import os
        print("Hello from", os.environ["APP_NAME"])
        print("token is", os.environ["API_TOKEN"])
    """,
        job={
            "jobId": "hello",
            "runtimeConfig": {
                "macros": [
                    {"key": "APP_NAME", "value": "the task log"},
                    {"key": "API_TOKEN", "value": token, "secure": True},
                ]
            },
        },
    )
    dag = load_dag(
        dags,
        f"""
        with DAG("log_dag", schedule=None, start_date=START) as dag:
            PythonJobOperator(task_id="hello", job="jobs/{jobs.name}/hello")
    """,
        "log_dag",
    )
    states, log = run_dag(dag, capfd, caplog)
    assert states == {"hello": "success"}
    assert "Hello from the task log" in log
    assert "token is ***" in log
    assert secret not in log
    from airflow.sdk.log import _secrets_masker  # registered with Airflow's masker as well

    assert secret not in str(_secrets_masker().redact(f"x {secret} y"))


def logged_env(log: str) -> dict[str, str]:
    """The environment a DUMP_ENV script printed into the task log."""
    line = next(line for line in log.splitlines() if "ENV={" in line)
    obj, _ = json.JSONDecoder().raw_decode(line[line.index("ENV=") + 4 :])
    return obj


def test_context_variables_and_hidden_airflow_secrets(dags, jobs, capfd, caplog, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", "postgres://user:pw@db/warehouse")
    write_job(jobs / "env")
    dag = load_dag(
        dags,
        f"""
        with DAG("ctx_dag", schedule=None, start_date=START) as dag:
            PythonJobOperator(task_id="dump", job="jobs/{jobs.name}/env")
    """,
        "ctx_dag",
    )
    states, log = run_dag(dag, capfd, caplog)
    assert states == {"dump": "success"}
    env = logged_env(log)
    assert env["AIRFLOW_CTX_DAG_ID"] == "ctx_dag"
    assert env["AIRFLOW_CTX_TASK_ID"] == "dump"
    assert env["AIRFLOW_CTX_TRY_NUMBER"] == "1"
    assert env["AIRFLOW_CTX_DAG_RUN_ID"] and env["AIRFLOW_CTX_LOGICAL_DATE"]
    assert [k for k in env if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "_AIRFLOW"))] == []


def test_exit_codes_skip_refusals_and_xcom(dags, jobs, capfd, caplog, tmp_path) -> None:
    write_job(jobs / "exit3", "import sys\nprint('failing now')\nsys.exit(3)\n")
    write_job(jobs / "exit99", "import sys\nsys.exit(99)\n")
    write_job(jobs / "marker", "open('started', 'w')\nprint('first')\nprint('last line')\n")
    write_job(jobs / "escape", job={"jobId": "escape", "packageName": "../escape.py"})
    bad_token = encrypt("never-seen", [generate_key()])
    dag = load_dag(
        dags,
        f"""
        J = "jobs/{jobs.name}"
        with DAG("outcomes_dag", schedule=None, start_date=START) as dag:
            PythonJobOperator(task_id="fails", job=J + "/exit3")
            PythonJobOperator(task_id="skipped", job=J + "/exit99", skip_on_exit_code=[99])
            PythonJobOperator(task_id="refused", job=J + "/marker", install_path="/nonexistent/python")
            PythonJobOperator(task_id="bad_job", job=J + "/escape")
            ok = PythonJobOperator(task_id="ok", job=J + "/marker",
                                   macros=[Macro(key="TOK", value="{bad_token}", secure=True)])

            @task
            def keep(value):
                open("{tmp_path / "xcom"}", "w").write(value)

            keep(ok.output)
    """,
        "outcomes_dag",
    )
    states, log = run_dag(dag, capfd, caplog)
    assert states == {
        "fails": "failed",
        "skipped": "skipped",
        "refused": "failed",
        "bad_job": "failed",
        "ok": "success",
        "keep": "success",
    }
    assert "failing now" in log and "exited with code 3" in log
    assert "install_path /nonexistent/python does not exist" in log
    assert "contains '..'" in log
    assert "secure macro TOK skipped" in log
    assert (tmp_path / "xcom").read_text() == "last line"


def test_undecryptable_secure_macro_fail_fails_the_task_without_retries(
    dags, jobs, capfd, caplog, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__UNDECRYPTABLE_SECURE_MACRO", "fail")
    marker = tmp_path / "started"
    write_job(jobs / "secret", f"open({str(marker)!r}, 'w').write('ran')\n")
    token = encrypt("never-seen", [generate_key()])  # made with a key the worker does not have
    dag = load_dag(
        dags,
        f"""
        with DAG("strict_secret_dag", schedule=None, start_date=START) as dag:
            PythonJobOperator(task_id="secret", job="jobs/{jobs.name}/secret", retries=3,
                              macros=[Macro(key="PW", value="{token}", secure=True)])
    """,
        "strict_secret_dag",
    )
    states, log = run_dag(dag, capfd, caplog)
    assert states == {"secret": "failed"}  # not up_for_retry: the same token would be refused again
    assert "secure macro PW refused ([python_exec] undecryptable_secure_macro = fail)" in log
    assert "secure macro PW skipped" not in log
    assert not marker.exists()


def test_templated_job_and_macros_from_params_conf_and_variables(dags, jobs, capfd, caplog, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_GREETING", "hello from a Variable")
    write_job(jobs / "templated", "import os\nprint('P=' + os.environ['P'], 'V=' + os.environ['V'])\n")
    dag = load_dag(
        dags,
        f"""
        with DAG("templates_dag", schedule=None, start_date=START,
                 params={{"app_name": Param("default name", type="string"), "job": "templated"}}) as dag:
            PythonJobOperator(
                task_id="templated",
                job="jobs/{jobs.name}/{{{{ params.job }}}}",
                macros={{"P": "{{{{ params.app_name }}}}", "V": "{{{{ var.value.greeting }}}}"}},
            )
            PythonJobOperator(
                task_id="macro_objects",
                job="jobs/{jobs.name}/templated",
                macros=[Macro(key="P", value="{{{{ params.app_name }}}}"), Macro(key="V", value="{{{{ ds }}}}")],
            )
    """,
        "templates_dag",
    )
    states, log = run_dag(dag, capfd, caplog, run_conf={"app_name": "typed in the UI"})
    assert states == {"templated": "success", "macro_objects": "success"}
    assert "P=typed in the UI V=hello from a Variable" in log
    assert re.search(r"P=typed in the UI V=\d{4}-\d{2}-\d{2}", log)


def test_execution_timeout_stops_the_script_and_every_descendant(dags, jobs, capfd, caplog) -> None:
    from test_containment import escaping_job, left_behind

    escaping_job(jobs / "slow", then="time.sleep(600)")
    dag = load_dag(
        dags,
        f"""
        from datetime import timedelta
        with DAG("timeout_dag", schedule=None, start_date=START) as dag:
            PythonJobOperator(task_id="slow", job="jobs/{jobs.name}/slow", execution_timeout=timedelta(seconds=3))
    """,
        "timeout_dag",
    )
    states, log = run_dag(dag, capfd, caplog)
    assert states == {"slow": "failed"}
    assert re.search(r"\[python_exec\] job slow timed out in \d+\.\d+ s", log)
    assert left_behind(jobs / "slow") == []


def test_refused_jobs_fail_without_retries_and_failed_scripts_are_retried(dags, jobs, capfd, caplog) -> None:
    write_job(jobs / "spark", job={"jobId": "spark", "engineType": "SPARK"})
    write_job(jobs / "crash", "raise SystemExit(1)\n")
    write_job(jobs / "ok", "print('fine')\n")
    dag = load_dag(
        dags,
        f"""
        from datetime import timedelta
        with DAG("retry_dag", schedule=None, start_date=START,
                 default_args={{"retries": 1, "retry_delay": timedelta(seconds=0.5)}}) as dag:
            PythonJobOperator(task_id="spark", job="jobs/{jobs.name}/spark")
            PythonJobOperator(task_id="bad_macro", job="jobs/{jobs.name}/ok", macros={{"REPORT-NAME": "x"}})
            PythonJobOperator(task_id="crash", job="jobs/{jobs.name}/crash")
    """,
        "retry_dag",
    )
    with caplog.at_level(logging.INFO):
        dag_run = dag.test()
    log = "".join(capfd.readouterr()) + caplog.text
    tries = {ti.task_id: (ti.state, ti.try_number) for ti in dag_run.get_task_instances()}
    assert tries == {"spark": ("failed", 1), "bad_macro": ("failed", 1), "crash": ("failed", 2)}
    assert "engineType 'SPARK' is not PYTHON" in log
    assert re.search(r"PythonJobOperator macros: .*'REPORT-NAME' is not a valid environment variable name", log)


def test_task_log_separates_provider_lines_from_the_job_output(dags, jobs, capfd, caplog) -> None:
    write_job(jobs / "two_lines", "print('first line')\nprint('second line')\n")
    dag = load_dag(
        dags,
        f"""
        with DAG("sources_dag", schedule=None, start_date=START) as dag:
            PythonJobOperator(task_id="two_lines", job="jobs/{jobs.name}/two_lines")
    """,
        "sources_dag",
    )
    states, log = run_dag(dag, capfd, caplog)
    assert states == {"two_lines": "success"}
    ours = [r.getMessage() for r in caplog.records if r.name == "airflow_python_exec"]
    assert task_log_lines(log) == ["first line", "second line"]
    assert not any(line.startswith("[python_exec]") for line in task_log_lines(log))
    assert ours and all(line.startswith("[python_exec] ") for line in ours)
    assert re.fullmatch(
        r"\[python_exec\] running job two_lines: \S+ \S+app\.py \(Python 3\.\d+\.\d+, no environment; "
        r"sandbox off; no limits\)",
        ours[0],
    )
    assert re.fullmatch(r"\[python_exec\] job two_lines exited with code 0 in \d+\.\d\d s", ours[-1])


def test_task_python_job_decorator(dags, jobs, capfd, caplog) -> None:
    write_job(jobs / "deco", "import os\nprint('decorated', os.environ['WHO'])\n")
    dag = load_dag(
        dags,
        f"""
        with DAG("decorator_dag", schedule=None, start_date=START) as dag:
            @task.python_job(macros={{"WHO": "via TaskFlow"}})
            def deco():
                return "jobs/{jobs.name}/deco"

            deco()
    """,
        "decorator_dag",
    )
    states, log = run_dag(dag, capfd, caplog)
    assert states == {"deco": "success"}
    assert "decorated via TaskFlow" in log


def test_secrets_inside_xcom_values_are_masked_and_a_templated_cwd_cannot_leave_the_job(
    dags, jobs, capfd, caplog, tmp_path, _engine
) -> None:
    """Issue 15 as the attacker wrote it: a handler returns the secret inside strings, in a key and as
    a number; a DAG param points ``cwd`` at AIRFLOW_HOME. The XCom that Airflow stores holds ``***``;
    the cwd task fails without running its script."""
    secret, pin = "hunter2-xcom-secret-1234", "73519"
    write_job(
        jobs / "leaky",
        """
        import os
        def handler():
            s, pin = os.environ["TOKEN"], os.environ["PIN"]
            return {"header": "Bearer " + s, "url": f"postgresql://app:{s}@db/x", f"k-{s}": 1, "pin": int(pin)}
        """,
        job={
            "jobId": "leaky",
            "function": {"handler": "app:handler"},
            "runtimeConfig": {
                "macros": [
                    {"key": "TOKEN", "value": encrypt(secret, [_engine]), "secure": True},
                    {"key": "PIN", "value": encrypt(pin, [_engine]), "secure": True},
                ]
            },
        },
    )
    write_job(jobs / "plain", "print('SCRIPT-RAN')\n")
    dag = load_dag(
        dags,
        f"""
        J = "jobs/{jobs.name}"
        with DAG("hostile_dag", schedule=None, start_date=START, params={{"where": "/tmp"}}) as dag:
            leaky = PythonJobOperator(task_id="leaky", job=J + "/leaky")
            PythonJobOperator(task_id="cwd", job=J + "/plain", cwd="{{{{ params.where }}}}", retries=2)

            @task
            def keep(value):
                import json
                open("{tmp_path / "xcom"}", "w").write(json.dumps(value))

            keep(leaky.output)
    """,
        "hostile_dag",
    )
    states, log = run_dag(dag, capfd, caplog)
    assert states == {"leaky": "success", "keep": "success", "cwd": "failed"}
    stored = (tmp_path / "xcom").read_text()
    assert secret not in stored and pin not in stored
    assert json.loads(stored) == {"header": "Bearer ***", "url": "postgresql://app:***@db/x", "k-***": 1, "pin": "***"}
    assert "cwd '/tmp' is outside the job folder" in log
    assert "SCRIPT-RAN" not in log
