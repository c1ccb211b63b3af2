"""Every refusal is one ``error: ...`` line on stderr, the right exit status and no traceback.

Each test is one finding of the production-hardening issue (point 7), checked the way a user meets
it: through the ``airflow-python-exec`` command line.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import CLI, cli_env, write_job

NO_USER = "~no_such_user_4f1c"


def cli(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the CLI; stdout and stderr as text (undecodable bytes shown as escapes)."""
    done = subprocess.run([CLI, *args], capture_output=True, env={**cli_env(), **(env or {})}, input=stdin,
                          cwd=cwd, timeout=timeout)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(errors="backslashreplace"),
                                       done.stderr.decode(errors="backslashreplace"))


def assert_refused(done: subprocess.CompletedProcess, *expected: str, code: int = 2) -> None:
    """Exit status ``code`` and exactly one stderr line, ``error: ...``, holding each of ``expected``."""
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    for text in expected:
        assert text in done.stderr


# -- paths -------------------------------------------------------------------------------------


def test_job_path_in_an_unknown_users_home() -> None:
    assert_refused(cli("run", f"{NO_USER}/job"), f"'{NO_USER}/job'", "unknown user")


@pytest.mark.parametrize("how", ["option", "setting"])
def test_install_path_in_an_unknown_users_home(job_dir: Path, how: str) -> None:
    write_job(job_dir, "open('started', 'w')\n")
    if how == "option":
        done = cli("run", str(job_dir), "--install-path", f"{NO_USER}/py")
    else:
        done = cli("run", str(job_dir), env={"AIRFLOW__PYTHON_EXEC__INSTALL_PATH": f"{NO_USER}/py"})
    assert_refused(done, f"install_path '{NO_USER}/py'", "does not exist")
    assert not (job_dir / "started").exists()


@pytest.mark.parametrize(("python_env", "field"), [
    ({"pylock": "pylock\u0000.toml"}, "pylock"),
    ({"local_extra_deps": ["dist/a\u0000.whl"]}, "local_extra_deps"),
    ({"prepend_paths": ["bin\u0000"]}, "prepend_paths"),
    ({"command": "app\u0000.py --flag"}, "command"),
])
def test_nul_byte_in_a_python_env_path(job_dir: Path, python_env: dict, field: str) -> None:
    write_job(job_dir, "open('started', 'w')\n", job={"jobId": "j", "pythonEnv": python_env})
    assert_refused(cli("run", str(job_dir)), field, "NUL byte")
    assert not (job_dir / "started").exists()


def test_nul_byte_in_package_name(job_dir: Path) -> None:
    write_job(job_dir, job={"jobId": "j", "packageName": "app\u0000.py"})
    assert_refused(cli("run", str(job_dir)), "packageName", "NUL byte")


# -- job.json content --------------------------------------------------------------------------


def test_job_json_nested_100000_levels_deep(job_dir: Path) -> None:
    write_job(job_dir)
    (job_dir / "job.json").write_text('{"jobId": "j", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert_refused(cli("run", str(job_dir)), "nested too deeply")


def test_macro_number_with_more_than_4300_digits(job_dir: Path) -> None:
    write_job(job_dir)
    (job_dir / "job.json").write_text(
        '{"jobId": "j", "packageName": "app.py", "runtimeConfig": {"macros": [{"key": "N", "value": '
        + "9" * 5000 + "}]}}")
    assert_refused(cli("run", str(job_dir)), "5000 digits", "JSON string")
    write_job(job_dir, job={"jobId": "j", "runtimeConfig": {"macros": [{"key": "N", "value": int("9" * 4300)}]}})
    assert json.loads(json.loads(cli("run", str(job_dir)).stdout[4:])["N"]) == int("9" * 4300)  # the limit itself
