"""Job folder rules (DESIGN.md "The job folder"): what loads, and what is refused with one line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import pytest
from conftest import CLI, cli_env, write_job

from airflow_python_exec import Macro, PythonJob
from airflow_python_exec.errors import JobConfigError, ScriptNotAllowedError


def test_folder_without_job_json_runs_app_py(job_dir: Path) -> None:
    write_job(job_dir)
    job = PythonJob.load(job_dir)
    assert job.job_id == "job"
    assert job.script == job_dir / "app.py"
    assert job.macros == []


def test_job_json_and_single_py_file(job_dir: Path) -> None:
    write_job(job_dir, name="main.py", job={"jobId": "j1", "packageName": "main.py", "engineType": "python"})
    assert PythonJob.load(job_dir / "job.json").script.name == "main.py"
    single = PythonJob.load(job_dir / "main.py")
    assert (single.job_id, single.script.name) == ("main", "main.py")


def test_macro_values_become_strings_and_null_is_skipped(job_dir: Path) -> None:
    macros = [
        {"key": "N", "value": 5},
        {"key": "F", "value": 1.5},
        {"key": "B", "value": True},
        {"key": "NONE", "value": None},
        {"key": "MISSING"},
        {"key": "S", "value": "x", "secure": False, "description": "kept", "token": "kept"},
    ]
    write_job(job_dir, job={"jobId": "j", "packageName": "app.py", "runtimeConfig": {"macros": macros}})
    values = {m.key: m.value for m in PythonJob.load(job_dir).macros}
    assert values == {"N": "5", "F": "1.5", "B": "true", "NONE": None, "MISSING": None, "S": "x"}


def test_unknown_top_level_key_is_ignored_with_a_warning(job_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_job(job_dir, job={"jobId": "j", "packageName": "app.py", "owner": "platform"})
    with caplog.at_level(logging.WARNING):
        PythonJob.load(job_dir)
    assert "owner" in caplog.text


@pytest.mark.parametrize(
    "key",
    [
        "name",
        "description",
        "version",
        "owner",
        "tags",
        "schedule",
        "id",
        "type",
        "job",
        "jobs",
        "jobName",
        "status",
        "labels",
    ],
)
def test_ordinary_platform_keys_only_warn(job_dir: Path, key: str, caplog: pytest.LogCaptureFixture) -> None:
    """Short platform keys near ``jobId`` (``job``, ``jobs``) are not near misses: see README's decisions."""
    write_job(job_dir, job={"jobId": "j", key: "x"})
    with caplog.at_level(logging.WARNING):
        assert PythonJob.load(job_dir).job_id == "j"
    assert f"ignoring unknown key {key!r}" in caplog.text


@pytest.mark.parametrize(
    ("key", "resembles"),
    [
        ("runtimeconfig", "'runtimeConfig'"),
        ("RuntimeConfig", "'runtimeConfig'"),
        ("runtime-config", "'runtimeConfig'"),
        ("runtimeConfg", "'runtimeConfig'"),
        ("pythonenv", "'pythonEnv'"),
        ("pyhtonEnv", "'pythonEnv'"),
        ("Python-Env", "'pythonEnv'"),
        ("jobid", "'jobId'"),
        ("JOBID", "'jobId'"),
        ("jobld", "'jobId'"),
        ("packagename", "'packageName'"),
        ("engine-type", "'engineType'"),
        ("Macros", "'macros', which belongs inside runtimeConfig"),
        ("macro", "'macros', which belongs inside runtimeConfig"),
        ("macros", "'macros' belongs inside runtimeConfig"),
        ("exitCodes", "'exitCodes' belongs inside runtimeConfig"),
    ],
)
def test_near_miss_of_a_known_key_is_refused_naming_it(job_dir: Path, key: str, resembles: str) -> None:
    message = _refusal(job_dir, {"jobId": "j", "packageName": "app.py", key: {"macros": [{"key": "A", "value": "1"}]}})
    assert f"top-level key {key!r}" in message and resembles in message


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"macros": [], "timeout": 5}, "runtimeConfig.timeout: unknown key 'timeout'"),
        ({"exitCodes": {"3": "ignored"}}, "is not an outcome; use success, skipped or failed"),
        ({"exitCodes": {"-1": "failed"}}, "key '-1' is not an exit code"),
    ],
)
def test_runtime_config_refuses_unknown_keys_and_bad_exit_codes(job_dir: Path, config: dict, expected: str) -> None:
    message = _refusal(job_dir, {"jobId": "j", "packageName": "app.py", "runtimeConfig": config})
    assert expected in message


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ({"handler": "a b"}, "is not module.path:function"),
        ({"handler": "m:f", "code": "x", "source": "src/"}, "give one source"),
        ({"handler": "m:f", "base64": "%%%"}, "not base64-encoded"),
        ({"handler": "m:f", "source": "ftp://x/y.zip"}, "is not a supported form"),
        ({"handler": "m:f", "params": {}}, "function.params: unknown key"),
        ({"handler": "f"}, "does not exist"),
    ],
)
def test_function_config_is_checked_on_load(job_dir: Path, function: dict, expected: str) -> None:
    (job_dir / "src").mkdir(parents=True)
    message = _refusal(job_dir, {"jobId": "j", "packageName": "main.py", "function": function})
    assert expected in message


def test_pylock_and_requirements_together_are_refused(job_dir: Path) -> None:
    message = _refusal(job_dir, {"jobId": "j", "pythonEnv": {"pylock": "pylock.toml", "requirements": ["x"]}})
    assert "both pylock and requirements" in message


def test_misspelt_runtime_config_never_runs_the_job_without_its_macros(job_dir: Path) -> None:
    """The issue's case: ``runtimeconfig`` only warned, and the job ran with its secure macro missing."""
    write_job(
        job_dir,
        "open('started', 'w')\n",
        job={"jobId": "j", "runtimeconfig": {"macros": [{"key": "TOKEN", "value": "gAAAAA", "secure": True}]}},
    )
    done = subprocess.run([CLI, "run", str(job_dir)], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert done.returncode == 2 and not (job_dir / "started").exists()
    assert done.stderr.count("\n") == 1 and "'runtimeconfig' looks like 'runtimeConfig'" in done.stderr


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.mkdir(), "is a folder, not a file"),
        (lambda p: os.mkfifo(p), "is a FIFO, not a file"),
        (lambda p: p.symlink_to("missing.json"), "is a symlink to missing.json, which does not exist"),
        (lambda p: p.symlink_to("/dev/zero"), "is a device, not a file"),
    ],
)
def test_job_json_that_is_not_a_regular_file_is_refused(job_dir: Path, make, expected: str) -> None:
    write_job(job_dir)
    make(job_dir / "job.json")
    with pytest.raises(JobConfigError, match=expected) as info:  # a FIFO must not block the load
        PythonJob.load(job_dir)
    assert "\n" not in str(info.value)


def _refusal(job_dir: Path, job: object, raw: str | None = None) -> str:
    write_job(job_dir, job=None)
    (job_dir / "job.json").write_text(raw if raw is not None else json.dumps(job))  # exactly as given
    with pytest.raises(JobConfigError) as info:
        PythonJob.load(job_dir)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ({"packageName": "app.py"}, "jobId"),
        ({"jobId": "j"}, "packageName is required"),
        ({"jobId": "j", "engineType": "SPARK"}, "engineType 'SPARK' is not PYTHON"),
        ({"jobId": "j", "packageName": "missing.py"}, "'missing.py' does not exist"),
        ({"jobId": "j", "packageName": "app.sh"}, "not a .py file"),
        ({"jobId": "j", "packageName": "/etc/app.py"}, "absolute path"),
        ({"jobId": "j", "packageName": "../app.py"}, "'..'"),
        ({"jobId": "j", "runtimeConfig": {"macros": [{"key": "", "value": "v"}]}}, "not a valid environment variable"),
        ({"jobId": "j", "runtimeConfig": {"macros": [{"key": "1ABC", "value": "v"}]}}, "'1ABC'"),
        ({"jobId": "j", "runtimeConfig": {"macros": [{"key": "A=B", "value": "v"}]}}, "'A=B'"),
        ({"jobId": "j", "runtimeConfig": {"macros": [{"key": "A-B", "value": "v"}]}}, "'A-B'"),
        ({"jobId": "j", "runtimeConfig": {"macros": [{"key": "A B", "value": "v"}]}}, "'A B'"),
        ({"jobId": "j", "runtimeConfig": {"macros": [{"key": "A", "value": "a\u0000b"}]}}, "NUL byte"),
        (
            {"jobId": "j", "runtimeConfig": {"macros": [{"key": "A", "value": "v", "secrets": 1}]}},
            "unknown key 'secrets'",
        ),
        ({"jobId": "j", "pythonEnv": {"pylok": "pylock.toml"}}, "unknown key 'pylok'"),
    ],
)
def test_bad_job_json_is_refused_with_one_line(job_dir: Path, job: dict, expected: str) -> None:
    assert expected in _refusal(job_dir, job)


def test_invalid_json_names_the_position(job_dir: Path) -> None:
    message = _refusal(job_dir, None, raw='{"jobId": "j",}')
    assert "not valid JSON" in message and "line 1" in message


def test_symlink_leaving_the_folder_is_refused(tmp_path: Path, job_dir: Path) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text("print('escaped')\n")
    write_job(job_dir)
    os.symlink(outside, job_dir / "link.py")
    (job_dir / "job.json").write_text(json.dumps({"jobId": "j", "packageName": "link.py"}))
    with pytest.raises(ScriptNotAllowedError, match="outside the job folder"):
        PythonJob.load(job_dir)


def test_folder_named_py_is_not_a_regular_file(job_dir: Path) -> None:
    write_job(job_dir)
    (job_dir / "pkg.py").mkdir()
    (job_dir / "job.json").write_text(json.dumps({"jobId": "j", "packageName": "pkg.py"}))
    with pytest.raises(ScriptNotAllowedError, match=r"not a regular .py file"):
        PythonJob.load(job_dir)


def test_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(JobConfigError, match="does not exist"):
        PythonJob.load(tmp_path / "nope")


def test_macro_template_field_is_value() -> None:
    assert Macro.template_fields == ("value",)
    assert Macro(key="K", value=3).value == "3"
