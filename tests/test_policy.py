"""The execution policy (DESIGN.md "The job folder"): only the job's own ``.py`` files and code its
environment installed ever run. Each refused case was found in review running code that was neither
uploaded nor locked; each is refused before anything is built (exit 2, nothing in the cache)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import CLI, cli_env, write_job
from test_environments import APP, env_folders, locked_job, run, wheels  # noqa: F401 - fixtures

EVIL = "open('EVIL_RAN', 'w').write('x')\nprint('evil ran')\n"


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A script outside the job folder, and a folder with a sitecustomize.py, that must never run."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "evil.py").write_text(EVIL)
    (tmp_path / "elsewhere" / "sitecustomize.py").write_text(EVIL)
    return tmp_path / "elsewhere"


def refused(job_dir: Path, settings, *extra: str) -> str:
    done = subprocess.run(
        [CLI, "run", str(job_dir), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(cache_dir=str(settings.cache_dir)),
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert env_folders(settings) == []  # refused before anything was built
    return done.stderr


@pytest.mark.parametrize(
    ("command", "rule"),
    [
        ("python {evil}", "runs 'python'"),
        ("python3 -c 'import os'", "runs 'python3'"),
        ("-c 'import os'", "interpreter option '-c'"),
        ("-m cProfile {evil}", "standard-library module 'cProfile'"),
        ("-m pdb -c continue {evil}", "standard-library module 'pdb'"),
        ("-m runpy {evil}", "standard-library module 'runpy'"),
        ("pip install anything", "runs 'pip'"),
        ("activate", "runs 'activate'"),
    ],
)
def test_commands_that_run_code_from_elsewhere_are_refused(
    settings, locked_job: Path, elsewhere: Path, command: str, rule: str
) -> None:
    command = command.format(evil=elsewhere / "evil.py")
    write_job(locked_job, APP, job={"jobId": "j", "pythonEnv": {"pylock": "pylock.toml", "command": command}})
    assert rule in refused(locked_job, settings)
    assert not (locked_job / "EVIL_RAN").exists() and not Path("EVIL_RAN").exists()


@pytest.mark.parametrize("where", ["macro", "pythonEnv.env", ".env"])
def test_pythonpath_outside_the_job_folder_is_refused(settings, locked_job: Path, elsewhere: Path, where) -> None:
    variables = {"PYTHONPATH": str(elsewhere)}
    job = {"jobId": "j", "pythonEnv": {"pylock": "pylock.toml"}}
    extra: list[str] = []
    if where == "macro":
        job["runtimeConfig"] = {"macros": [{"key": "PYTHONPATH", "value": str(elsewhere)}]}
    elif where == "pythonEnv.env":
        job["pythonEnv"]["env"] = variables
    else:
        (locked_job / ".env").write_text(f"PYTHONPATH={elsewhere}\n")
        extra = ["--dotenv-as-macros"]
    write_job(locked_job, APP, job=job)
    err = refused(locked_job, settings, *extra)
    assert "PYTHONPATH" in err and "outside the job folder" in err
    assert not (locked_job / "EVIL_RAN").exists()


@pytest.mark.parametrize("name", ["PYTHONSTARTUP", "PYTHONHOME", "PYTHONINSPECT"])
def test_interpreter_variables_set_by_a_macro_are_refused(settings, locked_job: Path, elsewhere, name) -> None:
    write_job(locked_job, APP, job={"jobId": "j", "pythonEnv": {"pylock": "pylock.toml"}})
    assert f"sets {name}" in refused(locked_job, settings, "--macro", f"{name}={elsewhere / 'evil.py'}")


def test_pythonpath_inside_the_job_folder_and_locked_code_still_run(settings, locked_job: Path) -> None:
    (locked_job / "lib").mkdir()
    (locked_job / "lib" / "helper.py").write_text("WHO = 'helper from lib'\n")
    (locked_job / "app.py").write_text("import helper, tinyapp\nprint(helper.WHO, tinyapp.tinydep.VALUE)\n")
    write_job(
        locked_job,
        (locked_job / "app.py").read_text(),
        job={"jobId": "j", "pythonEnv": {"pylock": "pylock.toml", "env": {"PYTHONPATH": "lib"}}},
    )
    result, lines, _ = run(settings, locked_job)
    assert result.exit_code == 0 and lines == ["helper from lib 42"]


def test_module_not_in_the_job_or_its_lock_is_refused(settings, locked_job: Path) -> None:
    write_job(locked_job, APP, job={"jobId": "j", "pythonEnv": {"pylock": "pylock.toml", "command": "-m nowhere"}})
    err = subprocess.run(
        [CLI, "run", str(locked_job)],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(cache_dir=str(settings.cache_dir)),
    ).stderr
    assert "module 'nowhere' is neither in the job folder nor installed" in err


@pytest.mark.parametrize(
    ("setup", "rule"),
    [
        ({"macro": "PYTHONUSERBASE={elsewhere}", "cwd": "lib"}, "sets PYTHONUSERBASE"),
        ({"macro": "PYTHONPATH=lib:", "cwd": "{elsewhere}"}, "outside the job folder"),  # "" is the cwd
        ({"macro": "PYTHONPATH=lib", "cwd": "{elsewhere}"}, "outside the job folder"),  # from the cwd
        ({"macro": "PYTHONPATH=../../elsewhere", "cwd": "lib"}, "outside the job folder"),
        ({"command": "-m pip install anything"}, "runs 'pip'"),
        ({"command": "-m linked", "link": "linked.py"}, "module 'linked' is neither in the job folder"),
    ],
)
def test_more_ways_around_the_policy_found_in_review(settings, locked_job: Path, elsewhere: Path, setup, rule):
    (locked_job / "lib").mkdir()
    job = {"jobId": "j", "pythonEnv": {"pylock": "pylock.toml"}}
    if "command" in setup:
        job["pythonEnv"]["command"] = setup["command"]
    if "link" in setup:
        (locked_job / setup["link"]).symlink_to(elsewhere / "evil.py")
    write_job(locked_job, APP, job=job)
    args = []
    if "macro" in setup:
        args = [
            "--cwd",
            setup["cwd"].format(elsewhere=elsewhere),
            "--macro",
            setup["macro"].format(elsewhere=elsewhere),
        ]
    done = subprocess.run(
        [CLI, "run", str(locked_job), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(cache_dir=str(settings.cache_dir)),
    )
    assert done.returncode == 2 and rule in done.stderr, done.stderr
    assert not (locked_job / "EVIL_RAN").exists()


def test_a_refused_secure_pythonpath_is_not_repeated_in_the_error(settings, locked_job: Path, fernet_key) -> None:
    from airflow_python_exec import PythonExecutionService
    from airflow_python_exec.crypto import encrypt
    from airflow_python_exec.errors import ScriptNotAllowedError

    secret_path = "/very/secret/place"
    write_job(locked_job, APP, job={"jobId": "j", "pythonEnv": {"pylock": "pylock.toml"}})
    with pytest.raises(ScriptNotAllowedError) as info:
        PythonExecutionService(settings).run(
            locked_job, macros=[{"key": "PYTHONPATH", "value": encrypt(secret_path, [fernet_key]), "secure": True}]
        )
    assert "PYTHONPATH" in str(info.value) and secret_path not in str(info.value)
