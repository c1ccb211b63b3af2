"""The airflow-python-exec command line: output, exit codes, one-line refusals, signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CLI, cli_env, process_gone, write_job


def cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None, cwd: Path | None = None):
    full_env = {**cli_env(), **(env or {})}
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=full_env, input=stdin, cwd=cwd, timeout=120)


def test_run_streams_output_and_returns_the_scripts_exit_status(job_dir: Path) -> None:
    write_job(job_dir, "import os, sys\nprint('hi', os.environ['WHO'])\nprint('oops', file=sys.stderr)\nsys.exit(4)\n")
    done = cli("run", str(job_dir), "--macro", "WHO=cli")
    assert done.returncode == 4
    assert done.stdout == "hi cli\noops\n"


def test_run_a_single_py_file_with_dotenv_as_macros(job_dir: Path) -> None:
    write_job(job_dir, "import os\nprint(os.environ.get('FROM_ENV'))\n", name="one.py", dotenv="FROM_ENV=yes\n")
    assert cli("run", str(job_dir / "one.py")).stdout == "None\n"
    assert cli("run", str(job_dir / "one.py"), "--dotenv-as-macros").stdout == "yes\n"


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ({"AIRFLOW__PYTHON_EXEC__INSTALL_PATH": ""}, "set but blank"),
        ({"AIRFLOW__PYTHON_EXEC__INSTALL_PATH": "/nonexistent"}, "does not exist"),
        ({"AIRFLOW__PYTHON_EXEC__ENABLED": "False"}, "disabled"),
    ],
)
def test_refusals_exit_2_with_one_error_line(job_dir: Path, setup: dict, expected: str) -> None:
    write_job(job_dir, "open('started', 'w')\n")
    done = cli("run", str(job_dir), env=setup)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and expected in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not (job_dir / "started").exists()


def test_bad_job_and_bad_macro_exit_2(job_dir: Path) -> None:
    write_job(job_dir, job={"jobId": "j", "packageName": "../escape.py"})
    done = cli("run", str(job_dir))
    assert (done.returncode, done.stderr.count("\n")) == (2, 1) and "'..'" in done.stderr
    write_job(job_dir, job={"jobId": "j"})
    done = cli("run", str(job_dir), "--macro", "BAD-KEY=1")
    assert done.returncode == 2 and "'BAD-KEY'" in done.stderr


def test_install_path_option_overrides_the_setting(tmp_path: Path) -> None:
    done = cli("validate", "--install-path", str(tmp_path))
    assert done.returncode == 2 and "no bin/python3 or bin/python" in done.stderr
    done = cli("validate")
    assert done.returncode == 0
    assert done.stdout.strip() == f"{Path(sys.prefix) / 'bin' / 'python3'} (Python {'%d.%d.%d' % sys.version_info[:3]})"


def test_generate_key_and_encrypt_make_a_secure_macro(job_dir: Path) -> None:
    key = cli("generate-key").stdout.strip()
    env = {"AIRFLOW__PYTHON_EXEC__FERNET_KEY": key}
    token = cli("encrypt", env=env, stdin="p@ss word\n").stdout.strip()
    assert token.startswith("gAAAAA") and "p@ss" not in token
    write_job(
        job_dir,
        "import os\nprint(len(os.environ['PW']), os.environ['PW'])\n",
        job={"jobId": "j", "runtimeConfig": {"macros": [{"key": "PW", "value": token, "secure": True}]}},
    )
    done = cli("run", str(job_dir), env=env)
    assert done.stdout == "9 ***\n"


def test_core_fernet_key_is_the_fallback(job_dir: Path) -> None:
    key = cli("generate-key").stdout.strip()
    token = cli("encrypt", env={"AIRFLOW__CORE__FERNET_KEY": key}, stdin="v").stdout.strip()
    write_job(
        job_dir,
        "import os\nprint(os.environ.get('PW') is not None)\n",
        job={"jobId": "j", "runtimeConfig": {"macros": [{"key": "PW", "value": token, "secure": True}]}},
    )
    assert cli("run", str(job_dir), env={"AIRFLOW__CORE__FERNET_KEY": key}).stdout == "True\n"
    done = cli("run", str(job_dir), env={"AIRFLOW__PYTHON_EXEC__FERNET_KEY": cli("generate-key").stdout.strip()})
    assert done.returncode == 0 and done.stdout == "False\n"
    assert "secure macro PW skipped" in done.stderr


def test_undecryptable_secure_macro_fail_exits_2_in_one_line(job_dir: Path, tmp_path: Path) -> None:
    key = cli("generate-key").stdout.strip()
    token = cli("encrypt", env={"AIRFLOW__PYTHON_EXEC__FERNET_KEY": key}, stdin="v").stdout.strip()
    marker = tmp_path / "started"
    write_job(
        job_dir,
        f"open({str(marker)!r}, 'w').write('ran')\n",
        job={"jobId": "j", "runtimeConfig": {"macros": [{"key": "PW", "value": token, "secure": True}]}},
    )
    rotated = {"AIRFLOW__PYTHON_EXEC__FERNET_KEY": cli("generate-key").stdout.strip()}
    done = cli("run", str(job_dir), env={**rotated, "AIRFLOW__PYTHON_EXEC__UNDECRYPTABLE_SECURE_MACRO": "fail"})
    assert done.returncode == 2 and done.stdout == "" and not marker.exists()
    [line] = done.stderr.splitlines()
    assert line.startswith("error: secure macro PW refused ([python_exec] undecryptable_secure_macro = fail): ")
    assert "cannot be decrypted with the configured Fernet key(s)" in line and token not in line


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_the_job_and_its_children(job_dir: Path, sig: int, code: int) -> None:
    write_job(
        job_dir,
        """
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print(child.pid, flush=True)
        time.sleep(600)
    """,
    )
    proc = subprocess.Popen([CLI, "run", str(job_dir)], stdout=subprocess.PIPE, text=True, env=cli_env())
    child_pid = int(proc.stdout.readline())
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == code
    assert process_gone(child_pid)


def test_unknown_job_json_key_warns_on_stderr_only(job_dir: Path) -> None:
    write_job(job_dir, "print('ran')\n", job={"jobId": "j", "platformOwner": "x"})
    done = cli("run", str(job_dir))
    assert done.stdout == "ran\n"
    assert "platformOwner" in done.stderr and json.dumps("x") not in done.stdout


def test_script_dies_with_a_runner_killed_outright(job_dir: Path) -> None:
    """SIGKILL leaves the runner no time to clean up; the kernel's parent-death signal does it."""
    write_job(job_dir, "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(600)\n")
    proc = subprocess.Popen([CLI, "run", str(job_dir)], stdout=subprocess.PIPE, text=True, env=cli_env())
    script_pid = int(proc.stdout.readline())
    proc.kill()
    proc.wait(timeout=30)
    assert process_gone(script_pid)


@pytest.mark.parametrize(
    "args", [["run"], ["run", "x", "--macro", "NOEQUALS"], ["envs", "prune", "--unused-for", "soon"]]
)
def test_usage_errors_are_one_error_line(args: list[str]) -> None:
    done = cli(*args)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
