"""Every refusal is one ``error: ...`` line on stderr, the right exit status and no traceback.

Each test is one finding of the production-hardening issue (point 7), checked the way a user meets
it: through the ``airflow-python-exec`` command line.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import CLI, cli_env, read_only, unprivileged, write_job

NO_USER = "~no_such_user_4f1c"


def cli(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    """Run the CLI; stdout and stderr as text (undecodable bytes shown as escapes)."""
    done = subprocess.run(
        [CLI, *args], capture_output=True, env={**cli_env(), **(env or {})}, input=stdin, cwd=cwd, timeout=timeout
    )
    return subprocess.CompletedProcess(
        done.args,
        done.returncode,
        done.stdout.decode(errors="backslashreplace"),
        done.stderr.decode(errors="backslashreplace"),
    )


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


@pytest.mark.parametrize(
    ("python_env", "field"),
    [
        ({"pylock": "pylock\u0000.toml"}, "pylock"),
        ({"local_extra_deps": ["dist/a\u0000.whl"]}, "local_extra_deps"),
        ({"prepend_paths": ["bin\u0000"]}, "prepend_paths"),
        ({"command": "app\u0000.py --flag"}, "command"),
    ],
)
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
        + "9" * 5000
        + "}]}}"
    )
    assert_refused(cli("run", str(job_dir)), "5000 digits", "JSON string")
    write_job(job_dir, job={"jobId": "j", "runtimeConfig": {"macros": [{"key": "N", "value": int("9" * 4300)}]}})
    assert json.loads(json.loads(cli("run", str(job_dir)).stdout[4:])["N"]) == int("9" * 4300)  # the limit itself


# -- the command line's own input and output ---------------------------------------------------


@pytest.mark.parametrize(
    ("stdin", "expected"),
    [
        (b"\xff\xfe secret\n", "not UTF-8 text (byte 0xff at offset 0)"),
        (b"sec\x00ret", "NUL byte (offset 3)"),
    ],
)
def test_encrypt_refuses_what_cannot_become_an_environment_variable(stdin: bytes, expected: str, fernet_key) -> None:
    done = cli("encrypt", env={"AIRFLOW__PYTHON_EXEC__FERNET_KEY": fernet_key}, stdin=stdin)
    assert_refused(done, expected)
    assert done.stdout == ""


def test_closed_stdout_does_not_kill_the_job(job_dir: Path) -> None:
    """``run job | head -1``: the reader leaves; the job runs to its end and its status is the CLI's."""
    write_job(
        job_dir,
        """
        import os, time
        print('first', flush=True)
        while not os.path.exists('reader-gone'):
            time.sleep(0.01)
        for i in range(10000):
            print('more', i)
        open('finished', 'w')
        raise SystemExit(3)
    """,
    )
    proc = subprocess.Popen([CLI, "run", str(job_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    assert proc.stdout.readline() == b"first\n"
    proc.stdout.close()
    (job_dir / "reader-gone").touch()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3 and (job_dir / "finished").exists()
    assert err == b""


def test_closed_stdout_ends_other_commands_quietly(tmp_path: Path) -> None:
    read, write = os.pipe()
    os.close(read)  # nobody will ever read: the first write fails with EPIPE
    with open(write, "wb") as stdout:
        done = subprocess.run([CLI, "generate-key"], stdout=stdout, stderr=subprocess.PIPE, env=cli_env(), timeout=120)
    assert done.returncode == 141 and done.stderr == b""


def test_output_the_terminal_cannot_encode_does_not_kill_the_job(job_dir: Path) -> None:
    """``PYTHONIOENCODING=ascii``: a non-ASCII line is printed with backslash escapes, the job goes on."""
    write_job(
        job_dir,
        """
        import sys, time
        sys.stdout.buffer.write('caf\\u00e9 \\u2713\\n'.encode()); sys.stdout.flush()
        time.sleep(0.2)
        print('after')
        open('finished', 'w')
    """,
    )
    done = cli("run", str(job_dir), env={"PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0 and (job_dir / "finished").exists()
    assert done.stdout == "caf\\xe9 \\u2713\nafter\n" and "Traceback" not in done.stderr


@pytest.mark.parametrize("duration", ["nan", "inf", "-1d", "-5", "1e999s"])
def test_prune_refuses_a_duration_that_would_remove_everything(tmp_path: Path, duration: str) -> None:
    env = old_environment(tmp_path / "cache")
    done = cli(
        "envs", "prune", f"--unused-for={duration}", env={"AIRFLOW__PYTHON_EXEC__CACHE_DIR": str(tmp_path / "cache")}
    )
    assert_refused(done, f"duration {duration!r}", "finite time of zero or more")
    assert (env / ".provisioned").exists()


def old_environment(cache: Path, key: str = "0" * 32) -> Path:
    """A provisioned environment folder last used long ago (``envs`` commands only look at its files)."""
    env = cache / "envs" / key
    env.mkdir(parents=True)
    (env / ".provisioned").write_text(json.dumps({"key": key, "job_id": "old"}))
    for path in (env / ".provisioned", env):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    return env


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "   "])
def test_blank_cache_dir_is_refused_naming_the_setting(job_dir: Path, value: str) -> None:
    write_job(job_dir, "open('started', 'w')\n")
    done = cli("run", str(job_dir), env={"AIRFLOW__PYTHON_EXEC__CACHE_DIR": value})
    assert_refused(done, "[python_exec] cache_dir is set but blank")
    assert not (job_dir / "started").exists()


# -- the environment cache ---------------------------------------------------------------------


def test_prune_on_a_read_only_cache(tmp_path: Path) -> None:
    """Removing is refused in one line and nothing is lost; a dry run still reports."""
    cache = tmp_path / "cache"
    env = old_environment(cache)
    (cache / "envs" / f"{env.name}.inuse").touch()  # locked through a read-only descriptor
    settings = {"AIRFLOW__PYTHON_EXEC__CACHE_DIR": str(cache)}
    with read_only(cache):
        dry = subprocess.run(
            unprivileged([CLI, "envs", "prune", "--unused-for=0s", "--dry-run"]),
            capture_output=True,
            text=True,
            env={**cli_env(), **settings},
            timeout=120,
        )
        done = subprocess.run(
            unprivileged([CLI, "envs", "prune", "--unused-for=0s"]),
            capture_output=True,
            text=True,
            env={**cli_env(), **settings},
            timeout=120,
        )
    assert dry.returncode == 0 and f"would remove {env.name}" in dry.stdout, dry.stderr
    assert_refused(done, f"cannot remove environment {env.name}", "Permission denied", "0 removed before it")
    assert (env / ".provisioned").exists()
