"""Handler jobs and results end to end: real ``dag.test()``, the real bootstrap, real uv and git.

The core modules' own tests (test_functions_core, test_sources, test_requirements) cover the
bootstrap, result parsing, archive rules and uv resolution one by one; these tests check that the
operator, the decorator, the CLI and the service wire them together.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import CLI, cli_env, write_job
from test_airflow import _engine, dags, jobs, load_dag, run_dag  # noqa: F401 - fixtures
from test_sources import git, make_zip
from wheels import write_wheel

CITIES = """
    def download_and_process(limit, country="IT", context=None):
        print("processing", country, "run", context.get("run_id"))
        return {"country": country, "cities": [f"{country}-{i}" for i in range(int(limit))],
                "task": context.get("task_id"), "params": context.get("params")}
"""


def function_job(folder: Path, handler: str, *, code: str = CITIES, name: str = "app.py", **config) -> Path:
    """A job folder whose job.json names a handler of ``name``."""
    return write_job(folder, code, name=name, job={"jobId": folder.name, "function": {"handler": handler, **config}})


def source_events(log: str) -> set[tuple[str, str]]:
    """``(source, what happened)`` for each source line of a run's log (a line shows up in several
    handlers' formats, hence a set)."""
    return set(
        re.findall(r"\[python_exec\] source (.+?): (saved as|unpacking|fetching commit|cache hit|commit \w+)", log)
    )


# -- handlers, parameters, results -------------------------------------------------------------


def test_handler_result_reaches_xcom_and_a_downstream_task(dags, jobs, capfd, caplog, tmp_path) -> None:
    function_job(jobs / "cities", "download_and_process", parameters={"limit": 1, "country": "FR"})
    out = tmp_path / "out.json"
    dag = load_dag(
        dags,
        f"""
        from airflow.sdk import task
        with DAG("handler_dag", schedule=None, start_date=START, params={{"limit": 3}},
                 render_template_as_native_obj=True) as dag:
            @task
            def country():
                return "IT"

            cities = PythonJobOperator(task_id="cities", job="jobs/{jobs.name}/cities",
                                       parameters={{"limit": "{{{{ params.limit }}}}", "country": country()}})

            @task
            def keep(summary):
                import json
                open("{out}", "w").write(json.dumps(summary))

            keep(cities.output)
    """,
        "handler_dag",
    )
    states, log = run_dag(dag, capfd, caplog)
    assert states == {"country": "success", "cities": "success", "keep": "success"}
    summary = json.loads(out.read_text())
    assert summary == {"country": "IT", "cities": ["IT-0", "IT-1", "IT-2"], "task": "cities", "params": {"limit": 3}}
    assert re.search(r"processing IT run manual__", log)
    assert re.search(r"running job cities: \S+python\S* \S+/bootstrap\.py \(", log)  # no parameter in argv


def test_handler_failures_fail_the_task_with_their_message(dags, jobs, capfd, caplog) -> None:
    function_job(jobs / "raises", "boom", code="def boom():\n    raise ValueError('the input is empty')\n")
    function_job(jobs / "unbindable", "download_and_process", parameters={"limit": 1, "colour": "red"})
    function_job(jobs / "not_json", "value", code="def value():\n    return {1, 2}\n")
    dag = load_dag(
        dags,
        f"""
        from datetime import timedelta
        with DAG("handler_fail_dag", schedule=None, start_date=START,
                 default_args={{"retries": 1, "retry_delay": timedelta(seconds=0.5)}}) as dag:
            PythonJobOperator(task_id="raises", job="jobs/{jobs.name}/raises")
            PythonJobOperator(task_id="unbindable", job="jobs/{jobs.name}/unbindable")
            PythonJobOperator(task_id="not_json", job="jobs/{jobs.name}/not_json")
    """,
        "handler_fail_dag",
    )
    with caplog.at_level("INFO"):
        dag_run = dag.test()
    log = "".join(capfd.readouterr()) + caplog.text
    tries = {ti.task_id: (ti.state, ti.try_number) for ti in dag_run.get_task_instances()}
    assert tries == {"raises": ("failed", 2), "unbindable": ("failed", 1), "not_json": ("failed", 2)}
    assert "Traceback (most recent call last)" in log and "in boom" in log
    assert "Python job 'raises' handler boom exited with code 1: ValueError: the input is empty" in log
    assert re.search(
        r"Python job 'unbindable' handler download_and_process refused: handler "
        r"download_and_process\(limit, country='IT', context=None\) has no parameter 'colour'",
        log,
    )
    assert "a value of type set is not JSON" in log


def test_script_results_and_exit_code_mapping(dags, jobs, capfd, caplog, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__MAX_RESULT_BYTES", "100")
    result = "import json, os\nopen(os.environ['PYTHON_EXEC_RESULT_FILE'], 'w').write({!r})\nprint('last')\n"
    write_job(jobs / "writes", result.format(json.dumps({"rows": 7})))
    write_job(jobs / "invalid", result.format("{rows: 7}"))
    write_job(jobs / "too_big", result.format(json.dumps("x" * 200)))
    mapped = {"jobId": "mapped", "runtimeConfig": {"exitCodes": {"3": "skipped", "4": "success"}}}
    write_job(jobs / "three", "import sys\nsys.exit(3)\n", job=mapped)
    write_job(jobs / "four", "import sys\nprint('done, with warnings')\nsys.exit(4)\n", job=mapped)
    out = tmp_path / "xcoms.json"
    dag = load_dag(
        dags,
        f"""
        with DAG("results_dag", schedule=None, start_date=START) as dag:
            J = "jobs/{jobs.name}/"
            tasks = [PythonJobOperator(task_id=name, job=J + name) for name in
                     ("writes", "invalid", "too_big", "three", "four")]

            @task(trigger_rule="all_done")
            def keep(writes, four):
                import json
                open("{out}", "w").write(json.dumps([writes, four]))

            keep(tasks[0].output, tasks[4].output)
    """,
        "results_dag",
    )
    states, log = run_dag(dag, capfd, caplog)
    assert states == {
        "writes": "success",
        "invalid": "failed",
        "too_big": "failed",
        "three": "skipped",
        "four": "success",
        "keep": "success",
    }
    assert json.loads(out.read_text()) == [{"rows": 7}, "done, with warnings"]
    assert "Python job 'invalid': the result in PYTHON_EXEC_RESULT_FILE is not valid JSON" in log
    assert "larger than 100 bytes ([python_exec] max_result_bytes)" in log


# -- sources -----------------------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path, monkeypatch) -> dict[str, str]:
    """A git repository whose tag v1 has sub/mod.py returning 'one'; main moved on to 'two'. Outside
    the job folders, so its folder is allowed as an administrator would (``data_allowed_uris``)."""
    path = tmp_path / "repo"
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__DATA_ALLOWED_URIS", str(path))
    (path / "sub").mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=path)
    git("config", "user.email", "t@example.com", cwd=path)
    git("config", "user.name", "tests", cwd=path)
    (path / "sub" / "mod.py").write_text("def value():\n    return 'one'\n")
    git("add", ".", cwd=path)
    git("commit", "-q", "-m", "one", cwd=path)
    git("tag", "-a", "v1", "-m", "release 1", cwd=path)
    (path / "sub" / "mod.py").write_text("def value():\n    return 'two'\n")
    git("commit", "-q", "-am", "two", cwd=path)
    return {"url": f"file://{path}", "v1": git("rev-parse", "v1^{commit}", cwd=path)}


def test_every_source_form_runs_and_the_second_run_fetches_nothing(dags, jobs, capfd, caplog, repo) -> None:
    code = "def hello(name):\n    return f'hello {name} from ' + __name__\n"
    write_job(
        jobs / "inline",
        "",
        job={"jobId": "inline", "function": {"handler": "hello", "code": code, "parameters": {"name": "code"}}},
    )
    b64 = base64.b64encode(code.encode()).decode()
    write_job(
        jobs / "b64",
        "",
        job={
            "jobId": "b64",
            "packageName": "greet.py",
            "function": {"handler": "greet:hello", "base64": b64, "parameters": {"name": "b64"}},
        },
    )
    folder = write_job(
        jobs / "folder",
        "",
        job={
            "jobId": "folder",
            "function": {"handler": "pkg.mod:hello", "source": "src/", "parameters": {"name": "folder"}},
        },
    )
    (folder / "src" / "pkg").mkdir(parents=True)
    (folder / "src" / "pkg" / "__init__.py").write_text("")
    (folder / "src" / "pkg" / "mod.py").write_text(code)
    zipped = write_job(
        jobs / "zipped",
        "",
        job={
            "jobId": "zipped",
            "function": {
                "handler": "mod:hello",
                "source": "code.zip#subdirectory=project-main",
                "parameters": {"name": "zip"},
            },
        },
    )
    make_zip(zipped / "code.zip", {"project-main/mod.py": code})
    write_job(
        jobs / "git",
        "",
        job={"jobId": "git", "function": {"handler": "mod:value", "source": f"git+{repo['url']}@v1#subdirectory=sub"}},
    )
    dag = load_dag(
        dags,
        f"""
        with DAG("sources_forms_dag", schedule=None, start_date=START) as dag:
            for name in ("inline", "b64", "folder", "zipped", "git"):
                PythonJobOperator(task_id=name, job="jobs/{jobs.name}/" + name)
            # no job folder: a job made from the arguments, its source relative to the DAG file's folder
            PythonJobOperator(task_id="args", handler="pkg.mod:hello", source="jobs/{jobs.name}/folder/src",
                              parameters={{"name": "args"}})
    """,
        "sources_forms_dag",
    )
    tasks = ("inline", "b64", "folder", "zipped", "git", "args")
    states, first = run_dag(dag, capfd, caplog)
    assert states == dict.fromkeys(tasks, "success")
    caplog.clear()  # run_dag's log is caplog's text: only this run's records
    states, second = run_dag(dag, capfd, caplog)
    assert states == dict.fromkeys(tasks, "success")
    first, second = source_events(first), source_events(second)
    git_source = f"git+{repo['url']}@v1"
    assert (git_source, f"commit {repo['v1']}") in first & second  # the commit is logged on every run
    assert {what for _, what in first} >= {"saved as", "unpacking", "fetching commit"}
    assert {what for _, what in second} == {"cache hit", f"commit {repo['v1']}"}
    assert len({source for source, what in second if what == "cache hit"}) == 4  # all but the folder
    results = _xcoms(dag)
    assert results == {
        "inline": "hello code from app",
        "b64": "hello b64 from greet",
        "folder": "hello folder from pkg.mod",
        "zipped": "hello zip from mod",
        "git": "one",
        "args": "hello args from pkg.mod",
    }


def _xcoms(dag) -> dict:
    """The return values of the DAG's latest run, from the metadata database."""
    from airflow.models import DagRun
    from airflow.models.xcom import XComModel as XCom
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag.dag_id).order_by(DagRun.id.desc()).first()
        rows = (
            session.query(XCom)
            .filter(XCom.dag_id == dag.dag_id, XCom.run_id == run.run_id, XCom.key == "return_value")
            .all()
        )
        return {row.task_id: XCom.deserialize_value(row) for row in rows}


# -- requirements and @task.python_exec --------------------------------------------------------


@pytest.fixture
def local_index(monkeypatch, tmp_path: Path) -> Path:
    """uv resolves against a local wheel folder only (no network), as with a configured mirror."""
    folder = tmp_path / "wheels"
    for version in ("1.0", "2.0"):
        write_wheel(folder, "tinydep", version, module=f"VALUE = {version!r}\n")
    monkeypatch.setenv("UV_NO_INDEX", "1")
    monkeypatch.setenv("UV_FIND_LINKS", str(folder))
    return folder


def test_requirements_pep723_and_the_decorator_resolve_local_wheels(
    dags, jobs, capfd, caplog, local_index, tmp_path
) -> None:
    value = "import tinydep\nprint('tinydep', tinydep.VALUE)\n"
    write_job(jobs / "reqs", value, job={"jobId": "reqs", "pythonEnv": {"requirements": ["TinyDep<2"]}})
    write_job(jobs / "pep723", "# /// script\n# dependencies = ['tinydep==2.0']\n# ///\n" + value)
    out = tmp_path / "deco.json"
    dag = load_dag(
        dags,
        f"""
        from airflow_python_exec import ProvisionEnvironmentOperator
        with DAG("requirements_dag", schedule=None, start_date=START) as dag:
            (ProvisionEnvironmentOperator(task_id="build", job="jobs/{jobs.name}/reqs")
             >> PythonJobOperator(task_id="reqs", job="jobs/{jobs.name}/reqs"))
            PythonJobOperator(task_id="pep723", job="jobs/{jobs.name}/pep723")

            @task
            def numbers():
                return [1, 2, 3]

            @task.python_exec(requirements=["tinydep==2.0"])
            def total(values, scale=1, context=None):
                import tinydep
                return {{"total": sum(values) * scale, "tinydep": tinydep.VALUE, "task": context["task_id"]}}

            @task
            def keep(summary):
                import json
                open("{out}", "w").write(json.dumps(summary))

            keep(total(numbers(), scale=10))
    """,
        "requirements_dag",
    )
    states, first = run_dag(dag, capfd, caplog)
    assert states == {
        "build": "success",
        "reqs": "success",
        "pep723": "success",
        "numbers": "success",
        "total": "success",
        "keep": "success",
    }
    assert "tinydep 1.0" in first and "tinydep 2.0" in first
    assert "resolved 1 package(s): tinydep==1.0" in first and "resolved 1 package(s): tinydep==2.0" in first
    assert json.loads(out.read_text()) == {"total": 60, "tinydep": "2.0", "task": "total"}
    caplog.clear()  # run_dag's log is caplog's text: only this run's records
    states, second = run_dag(dag, capfd, caplog)
    assert set(states.values()) == {"success"}
    assert "[python_exec] resolved" not in second
    # the PEP 723 script and the decorated function ask for the same tinydep==2.0: one environment
    assert len(set(re.findall(r"cache hit: environment (\w+)", second))) == 2
    # built ahead by ProvisionEnvironmentOperator, the reqs task found its environment on the first run
    built = re.search(r"running job reqs: \S+/envs/(\w+)/bin/python", first).group(1)
    assert f"environment {built} ready" in first and f"cache hit: environment {built}" in first


def test_decorated_function_source_has_no_decorator(dags, capfd, caplog) -> None:
    dag = load_dag(
        dags,
        """
        with DAG("deco_source_dag", schedule=None, start_date=START) as dag:
            @task.python_exec(multiple_outputs=False)
            def shout(word: str):
                return word.upper()

            shout("quiet")
    """,
        "deco_source_dag",
    )
    operator = dag.get_task("shout")
    source = operator.get_python_source()
    assert source.startswith("def shout(word: str):") and "@task" not in source
    assert operator.handler == "shout"
    states, _log = run_dag(dag, capfd, caplog)
    assert states == {"shout": "success"}
    assert _xcoms(dag) == {"shout": "QUIET"}


# -- the CLI -----------------------------------------------------------------------------------


def test_cli_handler_params_and_result(tmp_path: Path) -> None:
    job = function_job(tmp_path / "cli", "download_and_process", code=textwrap.dedent(CITIES), parameters={"limit": 5})
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"limit": 1, "country": "DE"}))
    done = subprocess.run(
        [CLI, "run", str(job), "--params-file", str(params), "--param", "limit=2", "--result", "-"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "processing DE run None"
    assert json.loads(lines[-1]) == {"country": "DE", "cities": ["DE-0", "DE-1"], "task": None, "params": None}

    code = tmp_path / "standalone.py"
    code.write_text("def twice(n):\n    return n * 2\n")
    out = tmp_path / "result.json"
    done = subprocess.run(
        [CLI, "run", "--code", str(code), "--handler", "twice", "--param", "n=21", "--result", str(out)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text()) == 42

    raising = function_job(tmp_path / "raising", "boom", code="def boom():\n    raise KeyError('missing')\n")
    done = subprocess.run(
        [CLI, "run", str(raising), "--result", "-"], capture_output=True, text=True, env=cli_env(), timeout=120
    )
    assert done.returncode == 1 and "KeyError: 'missing'" in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "error: handler boom failed: KeyError: 'missing'"

    bad = subprocess.run(
        [CLI, "run", str(job), "--param", "limit=five"], capture_output=True, text=True, env=cli_env(), timeout=120
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "is not JSON" in bad.stderr

    invalid = write_job(
        tmp_path / "invalid", "import os\nopen(os.environ['PYTHON_EXEC_RESULT_FILE'], 'w').write('{x')\n"
    )
    done = subprocess.run([CLI, "run", str(invalid)], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "is not valid JSON" in done.stderr


def test_cli_provision_builds_a_requirements_environment_ahead(tmp_path: Path, local_index: Path) -> None:
    job = write_job(
        tmp_path / "ahead",
        "import tinydep\nprint(tinydep.VALUE)\n",
        job={"jobId": "ahead", "pythonEnv": {"requirements": ["tinydep"]}},
    )
    env = cli_env(cache_dir=str(tmp_path / "cache"))
    built = subprocess.run([CLI, "provision", str(job)], capture_output=True, text=True, env=env, timeout=300)
    assert built.returncode == 0, built.stderr
    assert "resolved 1 package(s): tinydep==2.0" in built.stderr
    assert (Path(built.stdout.strip()) / "pylock.toml").is_file()  # the lock is kept in the environment
    ran = subprocess.run([CLI, "-v", "run", str(job)], capture_output=True, text=True, env=env, timeout=300)
    assert ran.returncode == 0 and ran.stdout.strip() == "2.0"
    assert "cache hit: environment" in ran.stderr and "resolved" not in ran.stderr


def test_secrets_are_replaced_in_results_and_failure_messages(dags, jobs, capfd, caplog, _engine) -> None:
    from airflow_python_exec.crypto import encrypt

    token = encrypt("s3cr3t-value", [_engine])
    code = (
        "import os\ndef leak(fail=False):\n    if fail:\n        raise RuntimeError('token ' + os.environ['TOKEN'])\n"
        "    return {'token': os.environ['TOKEN']}\n"
    )
    for name, fail in (("returns", False), ("raises", True)):
        write_job(
            jobs / name,
            code,
            job={
                "jobId": name,
                "function": {"handler": "leak", "parameters": {"fail": fail}},
                "runtimeConfig": {"macros": [{"key": "TOKEN", "value": token, "secure": True}]},
            },
        )
    dag = load_dag(
        dags,
        f"""
        with DAG("secret_results_dag", schedule=None, start_date=START) as dag:
            PythonJobOperator(task_id="returns", job="jobs/{jobs.name}/returns")
            PythonJobOperator(task_id="raises", job="jobs/{jobs.name}/raises")
    """,
        "secret_results_dag",
    )
    states, log = run_dag(dag, capfd, caplog)
    assert states == {"returns": "success", "raises": "failed"}
    assert _xcoms(dag) == {"returns": {"token": "***"}}
    assert "handler leak exited with code 1: RuntimeError: token ***" in log
    assert "s3cr3t-value" not in log


def test_job_json_requirements_win_over_pep723_metadata_with_a_warning(settings, local_index, job_dir, caplog) -> None:
    from airflow_python_exec import PythonExecutionService

    write_job(
        job_dir,
        "# /// script\n# dependencies = ['tinydep==2.0']\n# ///\nimport tinydep\nprint(tinydep.VALUE)\n",
        job={"jobId": "wins", "pythonEnv": {"requirements": ["tinydep==1.0"]}},
    )
    lines: list[str] = []
    with caplog.at_level("WARNING"):
        result = PythonExecutionService(settings).run(job_dir, on_line=lines.append, on_setup_line=lambda _: None)
    assert result.exit_code == 0 and lines == ["1.0"] and result.value() == "1.0"
    assert "pythonEnv's requirements wins over the script's PEP 723 inline metadata" in caplog.text
