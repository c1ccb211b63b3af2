"""Hostile jobs (issue 15, DESIGN.md "Containment and sandbox", last points): each test is written as
the attacker would, with a real job run by the real CLI or service.

- the result file or a handler's error file made a symlink, a FIFO, a huge sparse file, or the run
  folder swapped for a symlink: the worker never follows, never blocks, never reads more than
  ``max_result_bytes``, and the run fails in one line;
- secrets inside results and failure messages: inside longer strings, in keys, as numbers, with
  their surrounding whitespace stripped;
- a ``cwd`` outside the job folder, a standard-library handler: refused before the start;
- JSON nested thousands of levels deep: one ``error:`` line, never a ``RecursionError`` traceback.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, cli_env, write_job

from airflow_python_exec import PythonExecutionService
from airflow_python_exec.crypto import encrypt
from airflow_python_exec.isolation.sandbox import unusable
from airflow_python_exec.redaction import MASK, Redactor, mask_json

_PROBLEM = unusable(network=True) if sys.platform.startswith("linux") else "not Linux"
requires_bwrap = pytest.mark.skipif(_PROBLEM is not None, reason=f"bwrap cannot run here: {_PROBLEM}")

#: Seconds a run that should end at once may take before the test calls it hung.
HANG_S = 60
SECRET = "hunter2-s3cr3t-4711"
PIN = "73519"


def cli(args: list[str], *, cwd: Path | None = None, memory_mb: int | None = None, **settings: str):
    """Run the CLI; a hang is a failure after :data:`HANG_S`. ``memory_mb`` caps the address space
    of the CLI (and of the job it starts), so a worker reading a file whole dies at once."""

    def limit() -> None:
        if memory_mb is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))

    try:
        return subprocess.run(
            [CLI, *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=HANG_S,
            cwd=cwd,
            env=cli_env(**settings),
            preexec_fn=limit,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the run did not end within {HANG_S} s: the worker blocked on a file the job made")


def one_error_line(run: subprocess.CompletedProcess) -> str:
    """The single ``error:`` line of a CLI run: the CLI's on stderr, or the bootstrap's
    ``[python_exec] error:`` among the job's output; and no traceback anywhere."""
    output = run.stdout + run.stderr
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith(("error:", "[python_exec] error:"))]
    assert len(errors) == 1, output
    return errors[0]


@pytest.fixture
def outside() -> Iterator[Path]:
    """A folder outside /tmp (the sandbox hides /tmp wholesale), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="ape-hostile-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- 2. the result file as a symlink ------------------------------------------------------------------


@requires_bwrap
def test_a_sandboxed_job_cannot_return_a_hidden_file_through_a_result_symlink(settings, outside, monkeypatch) -> None:
    airflow_home = outside / "airflow_home"
    airflow_home.mkdir()
    (airflow_home / "passwords.json").write_text('{"admin": "the-admin-password"}')
    monkeypatch.setenv("AIRFLOW_HOME", str(airflow_home))
    job = write_job(
        outside / "jobs" / "thief",
        f"""
        import os
        os.symlink({str(airflow_home / "passwords.json")!r}, os.environ["PYTHON_EXEC_RESULT_FILE"])
        print("done")
        """,
    )
    result = PythonExecutionService(settings.override(sandbox="bubblewrap")).run(
        job, on_line=lambda _l: None, on_setup_line=lambda _l: None
    )
    assert result.exit_code == 0
    assert "the-admin-password" not in repr(result.result) + repr(result.result_error)
    assert result.result_error == (
        "the result file PYTHON_EXEC_RESULT_FILE is a symlink, not a regular file; write the result into it"
    )


def test_a_result_symlink_fails_the_run_in_one_line(job_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere.json").write_text('{"stolen": true}')
    write_job(
        job_dir, f"import os\nos.symlink({str(tmp_path / 'elsewhere.json')!r}, os.environ['PYTHON_EXEC_RESULT_FILE'])\n"
    )
    run = cli(["run", str(job_dir), "--result", "-"], cache_dir=str(tmp_path / "cache"))
    assert run.returncode == 1
    assert "stolen" not in run.stdout
    assert one_error_line(run) == (
        "error: the result file PYTHON_EXEC_RESULT_FILE is a symlink, not a regular file; write the result into it"
    )


# -- 3. FIFOs, huge files, /dev/zero, a swapped run folder ----------------------------------------------


def test_a_fifo_as_the_result_file_ends_the_run_in_one_line(job_dir: Path, tmp_path: Path) -> None:
    write_job(job_dir, "import os\nos.mkfifo(os.environ['PYTHON_EXEC_RESULT_FILE'])\n")
    run = cli(["run", str(job_dir)], cache_dir=str(tmp_path / "cache"))
    assert run.returncode == 1
    assert one_error_line(run) == (
        "error: the result file PYTHON_EXEC_RESULT_FILE is a FIFO, not a regular file; write the result into it"
    )


#: A handler that leaves ``make(path)`` as its error file and dies without a word.
ERROR_FILE_ATTACK = """
import os
def attack():
    path = os.path.join(os.path.dirname(os.environ["PYTHON_EXEC_RESULT_FILE"]), "error.json")
    {make}
    os._exit(1)
"""


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        ("os.mkfifo(path)", "a FIFO"),
        ("os.symlink('/dev/zero', path)", "a symlink"),
        ("f = open(path, 'wb'); f.truncate(3 << 30); f.close()", None),  # a 3 GiB sparse file
    ],
    ids=["fifo", "dev-zero-symlink", "sparse-3GiB"],
)
def test_a_hostile_error_file_fails_the_run_in_one_line_with_bounded_memory(
    job_dir: Path, tmp_path: Path, make: str, kind: str | None
) -> None:
    write_job(job_dir, ERROR_FILE_ATTACK.format(make=make), job={"jobId": "h", "function": {"handler": "app:attack"}})
    run = cli(["run", str(job_dir)], memory_mb=1024, cache_dir=str(tmp_path / "cache"))
    assert run.returncode == 1, run.stderr
    what = f"is {kind}, not a regular file" if kind else "is larger than 1048576 bytes ([python_exec] max_result_bytes)"
    assert one_error_line(run).startswith(f"error: handler app:attack failed: the error file {what}")


def test_a_huge_result_file_is_refused_without_reading_it_whole(job_dir: Path, tmp_path: Path) -> None:
    write_job(job_dir, "import os\nf = open(os.environ['PYTHON_EXEC_RESULT_FILE'], 'wb')\nf.truncate(3 << 30)\n")
    run = cli(["run", str(job_dir)], memory_mb=1024, cache_dir=str(tmp_path / "cache"))
    assert run.returncode == 1
    assert one_error_line(run).startswith("error: the result file PYTHON_EXEC_RESULT_FILE is larger than 1048576")


def test_a_job_that_swaps_its_run_folder_for_a_symlink_is_not_followed(job_dir: Path, tmp_path: Path) -> None:
    """The worker reads the folder it made (held open), not whatever now has its name; both are cleaned."""
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "result.json").write_text('"from the decoy"')
    write_job(
        job_dir,
        f"""
        import os
        run = os.path.dirname(os.environ["PYTHON_EXEC_RESULT_FILE"])
        os.rename(run, run + ".moved")
        os.symlink({str(decoy)!r}, run)
        print(run)
        """,
    )
    run = cli(["run", str(job_dir), "--result", "-"], cache_dir=str(tmp_path / "cache"))
    assert run.returncode == 0, run.stderr
    folder = run.stdout.splitlines()[0]
    assert "from the decoy" not in run.stdout
    assert json.loads(run.stdout.splitlines()[-1]) == folder  # the last line: no result file in the real folder
    assert not os.path.lexists(folder) and not os.path.lexists(folder + ".moved")
    assert (decoy / "result.json").exists()  # the symlink's target is never touched


# -- 4 and 10. secrets inside results and failure messages ---------------------------------------------


def secret_job(job_dir: Path, key: str, code: str, secret: str = SECRET) -> Path:
    return write_job(
        job_dir,
        code,
        job={
            "jobId": "leaky",
            "function": {"handler": "app:handler"},
            "runtimeConfig": {
                "macros": [
                    {"key": "TOKEN", "value": encrypt(secret, [key]), "secure": True},
                    {"key": "PIN", "value": encrypt(PIN, [key]), "secure": True},
                ]
            },
        },
    )


def test_secrets_inside_a_result_are_masked_in_strings_keys_and_numbers(job_dir, tmp_path, fernet_key) -> None:
    secret_job(
        job_dir,
        fernet_key,
        """
        import os
        def handler():
            s, pin = os.environ["TOKEN"], os.environ["PIN"]
            return {"header": "Bearer " + s, "url": f"postgresql://app:{s}@db/x", f"k-{s}": 1,
                    "pin": int(pin), "pins": [float(pin), pin + " "], "ok": 7}
        """,
    )
    run = cli(["run", str(job_dir), "--result", "-"], fernet_key=fernet_key, cache_dir=str(tmp_path / "cache"))
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result == {
        "header": "Bearer ***",
        "url": "postgresql://app:***@db/x",
        "k-***": 1,
        "pin": "***",
        "pins": ["***", "*** "],
        "ok": 7,
    }


@pytest.mark.parametrize("secret", ["  hunter2-padded-42  ", "hunter2-plain-42"])
def test_a_secret_in_an_exception_message_is_masked_even_stripped(job_dir, tmp_path, fernet_key, secret) -> None:
    secret_job(
        job_dir,
        fernet_key,
        "import os\ndef handler():\n    raise ValueError(os.environ['TOKEN'])\n",
        secret=secret,
    )
    run = cli(["run", str(job_dir)], fernet_key=fernet_key, cache_dir=str(tmp_path / "cache"))
    assert run.returncode == 1
    assert secret.strip() not in run.stderr + run.stdout  # the traceback in the log is masked too
    assert run.stderr.splitlines() == ["error: handler app:handler failed: ValueError: ***"]


def test_mask_json_is_the_one_function_for_json_values() -> None:
    secrets = ["  s3cr3t  ", "4711", "2.50"]
    value = {"a s3cr3t b": ["x s3cr3t y", 4711, 4711.0, 2.5, True, None, 47110, "4711"], "n": {"deep": "s3cr3t"}}
    assert mask_json(value, secrets) == {
        f"a {MASK} b": [f"x {MASK} y", MASK, MASK, MASK, True, None, 47110, MASK],
        "n": {"deep": MASK},
    }
    assert Redactor(secrets).mask_value("s3cr3t") == MASK
    assert Redactor(["  s3cr3t  "])("log: s3cr3t") == f"log: {MASK}"


# -- 8. cwd outside the job folder -----------------------------------------------------------------


@pytest.mark.parametrize("where", ["../../outside", "ABSOLUTE_OUTSIDE", "/tmp", "AIRFLOW_HOME"])
def test_a_cwd_outside_the_job_folder_is_refused_before_the_start(tmp_path: Path, where: str) -> None:
    job = write_job(tmp_path / "jobs" / "job", "print('SCRIPT-RAN')\n")
    (tmp_path / "outside").mkdir()
    cwd = {"ABSOLUTE_OUTSIDE": str(tmp_path / "outside"), "AIRFLOW_HOME": os.environ["AIRFLOW_HOME"]}.get(where, where)
    run = cli(["run", str(job), "--cwd", cwd], cache_dir=str(tmp_path / "cache"))
    assert run.returncode == 2
    assert "SCRIPT-RAN" not in run.stdout
    line = one_error_line(run)
    assert line.startswith(f"error: cwd {cwd!r} is outside the job folder {job}"), line


def test_a_handler_jobs_cwd_is_checked_against_its_source_root_too(tmp_path: Path) -> None:
    """Inline code lives in the source cache: a cwd outside the job folder is checked once that root is known."""
    code = tmp_path / "inline.py"
    code.write_text("def f():\n    print('HANDLER-RAN')\n")
    run = cli(
        ["run", "--code", str(code), "--handler", "f", "--cwd", "/tmp"], cwd=tmp_path, cache_dir=str(tmp_path / "c")
    )
    assert run.returncode == 2
    assert "HANDLER-RAN" not in run.stdout
    line = one_error_line(run)
    assert line.startswith(f"error: cwd '/tmp' is outside the job folder {tmp_path} and the handler's source root"), (
        line
    )


def test_a_cwd_inside_the_job_folder_still_works(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job", "import os\nprint(os.getcwd())\n")
    (job / "data").mkdir()
    run = cli(["run", str(job), "--cwd", "data"], cache_dir=str(tmp_path / "cache"))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == str(job / "data")


def test_the_operator_refuses_a_templated_cwd_outside_the_job_folder(tmp_path: Path, monkeypatch) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    from airflow_python_exec import PythonJobOperator

    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__INSTALL_PATH", sys.prefix)
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__CACHE_DIR", str(tmp_path / "cache"))
    job = write_job(tmp_path / "job", "print('SCRIPT-RAN')\n")
    op = PythonJobOperator(task_id="t", job=str(job), cwd="{{ params.where }}")
    op.render_template_fields({"params": {"where": "../../"}})
    assert op.cwd == "../../"
    with pytest.raises(AirflowFailException, match=r"cwd '\.\./\.\./' is outside the job folder"):
        op.execute({})


# -- 9. standard-library handlers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handler", "params", "module"),
    [
        ("os:system", {"command": "echo SHELL-RAN-42"}, "os"),
        ("runpy:run_module", {"mod_name": "this"}, "runpy"),
        ("subprocess:getoutput", {"cmd": "echo SHELL-RAN-42"}, "subprocess"),
        ("app:os.system", {"command": "echo SHELL-RAN-42"}, "os"),
        ("system", {"command": "echo SHELL-RAN-42"}, "posix"),  # app.py: from os import system
        ("app:__builtins__.get", {}, "__builtins__"),
        ("app:SEP.join", {}, "built-in"),
    ],
)
def test_a_standard_library_handler_is_refused(tmp_path, handler: str, params: dict, module: str) -> None:
    job = write_job(
        tmp_path / "job",
        "import os\nfrom os import system\nSEP = ','\n",
        job={"jobId": "std", "function": {"handler": handler}},
    )
    args = [f"--param={k}={json.dumps(v)}" for k, v in params.items()]
    run = cli(["run", str(job), *args], cache_dir=str(tmp_path / "cache"))
    assert run.returncode == 2, run.stdout + run.stderr
    assert "SHELL-RAN-42" not in run.stdout + run.stderr
    assert "The Zen of Python" not in run.stdout
    line = one_error_line(run)
    if module == "__builtins__":
        assert "names '__builtins__'; name a function of the job's own code" in line, line
    elif module == "built-in":
        assert "is a built-in, not a function of the job's own code" in line, line
    else:
        assert f"module {module!r}" in line and "not inside the source root" in line, line


def test_a_handler_from_the_source_root_and_its_own_packages_still_runs(tmp_path) -> None:
    job = write_job(tmp_path / "job", "def hello(name):\n    return 'hi ' + name\n")
    (job / "pkg").mkdir()
    (job / "pkg" / "__init__.py").write_text("")
    (job / "pkg" / "mod.py").write_text("from app import hello\ndef f():\n    return hello('pkg')\n")
    (job / "job.json").write_text(json.dumps({"jobId": "ok", "function": {"handler": "pkg.mod:f"}}))
    run = cli(["run", str(job), "--result", "-"], cache_dir=str(tmp_path / "cache"))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == '"hi pkg"'


# -- 11. JSON nested thousands of levels deep ------------------------------------------------------------


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_deeply_nested_parameters_are_refused_in_one_line(tmp_path: Path) -> None:
    job = write_job(
        tmp_path / "job", "def f(x=None):\n    return 1\n", job={"jobId": "n", "function": {"handler": "app:f"}}
    )
    params = tmp_path / "params.json"
    params.write_text('{"x": ' + nested(5000) + "}")
    run = cli(["run", str(job), "--params-file", str(params)], cache_dir=str(tmp_path / "cache"))
    assert run.returncode == 2
    assert "nested too deeply" in one_error_line(run)
    run = cli(["run", str(job), f"--param=x={nested(3000)}"], cache_dir=str(tmp_path / "cache"))
    assert run.returncode == 2
    assert "nested too deeply" in one_error_line(run)


def test_a_deeply_nested_job_json_is_refused_in_one_line(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job", "def f(x=None):\n    return 1\n")
    (job / "job.json").write_text(
        '{"jobId": "n", "function": {"handler": "app:f", "parameters": {"x": ' + nested(900) + "}}}"
    )
    run = cli(["run", str(job)], cache_dir=str(tmp_path / "cache"))
    assert run.returncode == 2
    assert "nested too deeply" in one_error_line(run)


@pytest.mark.parametrize("levels", [900, 5000])
def test_a_deeply_nested_result_fails_the_run_in_one_line(tmp_path: Path, levels: int) -> None:
    job = write_job(
        tmp_path / "job", f"import os\nopen(os.environ['PYTHON_EXEC_RESULT_FILE'], 'w').write({nested(levels)!r})\n"
    )
    run = cli(["run", str(job), "--result", "-"], cache_dir=str(tmp_path / "cache"))
    assert run.returncode == 1
    assert "nested too deeply" in one_error_line(run)


def test_a_handler_returning_a_deeply_nested_value_fails_in_one_line(tmp_path: Path) -> None:
    job = write_job(
        tmp_path / "job",
        "def f():\n    v = []\n    for _ in range(5000):\n        v = [v]\n    return v\n",
        job={"jobId": "n", "function": {"handler": "app:f"}},
    )
    run = cli(["run", str(job), "--result", "-"], cache_dir=str(tmp_path / "cache"))
    assert run.returncode == 1
    assert "nested too deeply" in one_error_line(run)


def test_brackets_inside_strings_are_not_nesting() -> None:
    from airflow_python_exec.isolation import json_limits

    text = json.dumps({"text": "[" * 500 + '\\"{' * 300, "list": [[["ok"]]]})
    assert json_limits.loads(text, "t")["list"] == [[["ok"]]]
    with pytest.raises(json_limits.JSONDepthError, match=r"^t is nested too deeply \(deeper than 100 levels\)"):
        json_limits.loads('{"a": "' + "]" * 200 + '", "b": ' + nested(101) + "}", "t")
