"""Security review of the reach promises (DESIGN.md "Reach: what a job may name"), attacks as a hostile
job author writes them: each test is an attack that once broke a promise."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from test_airflow import _engine, dags  # noqa: F401 - fixtures
from test_job_dags import jobs  # noqa: F401 - fixture


def _parse_in_thread(target, seconds: float = 20.0) -> bool:
    """Whether ``target`` returned within ``seconds`` (a hung parse is left behind as a daemon thread)."""
    done: list[bool] = []
    thread = threading.Thread(target=lambda: (target(), done.append(True)), daemon=True)
    thread.start()
    thread.join(seconds)
    return bool(done)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_job_json_a_fifo_or_dev_zero_does_not_hang_the_dag_parse(tmp_path: Path, kind: str) -> None:
    """job.json is a FIFO (no writer ever comes) or a link to /dev/zero (endless): a DAG file naming the
    folder must parse at once; before, the data-item check read job.json with ``read_text``, uncapped."""
    from airflow.sdk import DAG

    from airflow_python_exec.operators.python_job import PythonJobOperator

    job = tmp_path / "hostile"
    job.mkdir()
    (job / "app.py").write_text("print('hi')\n")
    if kind == "fifo":
        os.mkfifo(job / "job.json")
    else:
        (job / "job.json").symlink_to("/dev/zero")

    def parse() -> None:
        with DAG("hostile_parse", schedule=None):
            PythonJobOperator(task_id="t", job=str(job))

    try:
        assert _parse_in_thread(parse), f"parsing a DAG naming a job whose job.json is {kind} hung"
    finally:
        if kind == "fifo":  # release a reader still blocked in open()
            try:
                os.close(os.open(job / "job.json", os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass


def test_a_jinja_folder_name_is_never_rendered(dags, jobs, capfd, caplog, monkeypatch) -> None:
    """The job folder itself is named ``{{ var.value.secret }}`` (a jobs root synced from a repository
    the author writes to): before, its path became the task's templated ``job`` field, so Jinja read the
    Variable and the task log showed it in the 'no job folder' error."""
    from conftest import write_job
    from test_airflow import run_dag
    from test_job_dags import dag_file

    secret = "var-secret-1c5e9a"
    monkeypatch.setenv("AIRFLOW_VAR_SECRET", secret)
    folder = write_job(
        jobs / "{{ var.value.secret }}",
        "import os\nprint('cwd', os.getcwd())\n",
        job={"jobId": "jinja_folder"},
    )
    made = dag_file(dags, "reach_review_jinja_folder", [jobs])
    states, log = run_dag(made["job_jinja_folder"], capfd, caplog)
    assert secret not in log, "the folder name was rendered as Jinja"
    assert states == {"jinja_folder": "success"}, log
    assert f"cwd {folder}" in log or "cwd /" in log


def test_the_exec_bit_hashed_is_the_exec_bit_copied(tmp_path: Path, monkeypatch) -> None:
    """The author flips a file's exec bit between the worker's ``stat`` and its ``open``: before, the
    key hashed the mode ``stat`` saw while the staged copy (what is built) got the mode of the open
    file, so an executable file was built under the key of a non-executable one."""
    from airflow_python_exec.environments import key

    extra = tmp_path / "pkg"
    extra.mkdir()
    script = extra / "run.sh"
    script.write_text("echo hi\n")
    script.chmod(0o644)
    real_mode = key._mode

    def racing(path: Path, what: str, **how: bool) -> int:
        mode = real_mode(path, what, **how)
        if path.name == "run.sh":
            os.chmod(path, 0o755)  # the attacker wins the race here
        return mode

    monkeypatch.setattr(key, "_mode", racing)
    staged = tmp_path / "staged"
    staged.mkdir()
    digest = key.content_digest(extra, staged / "pkg")
    monkeypatch.setattr(key, "_mode", real_mode)
    assert os.access(staged / "pkg" / "run.sh", os.X_OK)  # what gets built is executable...
    assert digest == key.content_digest(staged / "pkg"), "the key covers a mode other than the copy's"


@pytest.mark.parametrize("name, value", [("OPTIND", "abc"), ("OPTIND", "-1"), ("PS4", "$(id)"), ("IFS", "/")])
def test_a_variable_the_shell_interprets_reaches_the_script_without_acting_on_the_shell(
    tmp_path: Path, settings, name: str, value: str
) -> None:
    """Sandbox off, the job's variables were sourced into ``/bin/sh`` (the handoff after ``setpriv``),
    which interprets some names itself: dash refused ``OPTIND=abc`` ("Illegal number") and the job's
    script never started. A job's variable must act on its own process only."""
    from conftest import write_job

    from airflow_python_exec import PythonExecutionService

    script = f"import os\nprint(repr(os.environ.get({name!r})))\n"
    job = write_job(tmp_path / "shellvar", script, job={"jobId": "shellvar"})
    lines: list[str] = []
    result = PythonExecutionService(settings.override(sandbox="off")).run(
        job, macros={name: value}, on_line=lines.append, on_setup_line=lambda _line: None
    )
    assert result.exit_code == 0 and lines == [repr(value)], lines


@pytest.mark.parametrize("target", ["secret-file", "/proc/self/environ"])
def test_a_symlink_in_a_local_extra_folder_never_copies_what_it_points_at(tmp_path: Path, target: str) -> None:
    """A local extra folder inside the job holds ``data.txt -> <a file the sandbox hides>`` (the
    worker's own ``/proc/self/environ``, a file in AIRFLOW_HOME): the worker hashed and copied what
    the link points at into the staged extra, which the job's own build backend then reads in the
    build sandbox and can put in its wheel. Refused, nothing copied."""
    from airflow_python_exec.environments import key
    from airflow_python_exec.errors import ProvisioningError

    secret = tmp_path / "airflow_home" / "airflow.cfg"
    secret.parent.mkdir()
    secret.write_text("fernet_key = worker-secret-7f3a\n")
    extra = tmp_path / "job" / "pkg"
    extra.mkdir(parents=True)
    (extra / "pyproject.toml").write_text("[project]\nname = 'pkg'\nversion = '1'\n")
    (extra / "data.txt").symlink_to(secret if target == "secret-file" else target)
    staged = tmp_path / "staged"
    staged.mkdir()
    with pytest.raises(ProvisioningError, match="symlink"):
        key.content_digest(extra, staged / "pkg")
    copied = staged / "pkg" / "data.txt"
    assert not copied.exists(), f"the worker copied {target} into the staged extra"
