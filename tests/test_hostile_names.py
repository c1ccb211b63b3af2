"""Every *name* a job can give, fed a catalogue of hostile values (DESIGN.md "Reach: what a job may
name"). Each row says what must hold:

- ``REFUSED``: the job is refused before its script starts, in one short line (no newline, the value
  never quoted at length), and the script never ran;
- ``JOB_ONLY``: accepted, and what it sets reaches only the job's own process (the script sees it;
  how the launcher is kept out of it is proven with a real ``LD_PRELOAD`` in
  ``test_reach_launcher.py``).

A field added later joins the table by adding an entry to :data:`NAME_FIELDS` or :data:`PATH_FIELDS`.
Paths and URLs that the worker reads or writes for a job (inputs, outputs, requirements, sources,
extras) have their own table.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import write_job

from airflow_python_exec import PythonExecutionService
from airflow_python_exec.builder import to_macros
from airflow_python_exec.errors import PythonExecError
from airflow_python_exec.models import PythonJob

REFUSED, JOB_ONLY = "refused", "job only"
#: Longest refusal we accept as "one short line".
MAX_MESSAGE = 400
VALUE = "hostile-value-42"
HUGE = "A" * 100_000

#: Hostile variable or parameter names -> what must hold when a job sets a variable so named.
NAMES: dict[str, tuple[str, str]] = {
    "jinja": ("{{ conn.prod_db.password }}", REFUSED),
    "jinja statement": ("{% for c in conn %}{{ c }}{% endfor %}", REFUSED),
    "LD_PRELOAD": ("LD_PRELOAD", JOB_ONLY),
    "LD_LIBRARY_PATH": ("LD_LIBRARY_PATH", JOB_ONLY),
    "PYTHONSTARTUP": ("PYTHONSTARTUP", REFUSED),  # its value names a file outside the job folder
    "PYTHONHOME": ("PYTHONHOME", REFUSED),
    "PYTHONPATH": ("PYTHONPATH", REFUSED),
    "equals sign": ("A=B", REFUSED),
    "NUL": ("A\x00B", REFUSED),
    "newline": ("A\nB", REFUSED),
    "unicode": ("ÄNDERUNG", REFUSED),
    "unicode lookalike": ("ﬁle", REFUSED),  # NFKC makes it "file"
    "empty": ("", REFUSED),
    "leading digit": ("1A", REFUSED),
    "huge": (HUGE, REFUSED),
}
#: The value a variable of that name gets: outside the job folder for the interpreter variables.
VALUES = {"PYTHONSTARTUP": "/etc/passwd", "PYTHONHOME": "/usr", "PYTHONPATH": "/", "LD_PRELOAD": "/no/such.so"}

SCRIPT = """
import json, os, pathlib
pathlib.Path({marker!r}).write_text("started")
print("ENV=" + json.dumps(dict(os.environ)))
"""

HANDLER = """
import json, pathlib
def run(**kwargs):
    pathlib.Path({marker!r}).write_text("started")
    print("ARGS=" + json.dumps(sorted(kwargs)))
"""


def script_job(folder: Path, config: dict | None = None, dotenv: str | None = None) -> Path:
    marker = folder.parent / f"{folder.name}.started"
    return write_job(
        folder, SCRIPT.format(marker=str(marker)), job={"jobId": "hostile", **(config or {})}, dotenv=dotenv
    )


def handler_job(folder: Path, function: dict) -> Path:
    marker = folder.parent / f"{folder.name}.started"
    return write_job(
        folder, HANDLER.format(marker=str(marker)), name="mod.py", job={"jobId": "hostile", "function": function}
    )


def run(settings, job: Path | PythonJob, **kwargs: Any) -> tuple[Any, list[str]]:
    lines: list[str] = []
    result = PythonExecutionService(settings).run(job, on_line=lines.append, on_setup_line=lambda _l: None, **kwargs)
    return result, lines


def seen_env(lines: list[str]) -> dict[str, str]:
    """The environment the script printed (a line over 64 KiB comes in pieces: the script prints last)."""
    start = next(n for n, line in enumerate(lines) if line.startswith("ENV="))
    return json.loads("".join(lines[start:])[4:])


def cli_args(*argv: str) -> argparse.Namespace:
    """The CLI's own parser (its ``--macro``/``--param`` checks run while parsing)."""
    from airflow_python_exec.cli import _parser

    return _parser().parse_args(["run", *argv])


# -- variables: each returns the environment the script saw --------------------------------------


def macro_in_job_json(settings, folder: Path, name: str, value: str) -> dict[str, str]:
    job = script_job(folder, {"runtimeConfig": {"macros": [{"key": name, "value": value}]}})
    return seen_env(run(settings, job)[1])


def operator_macros(settings, folder: Path, name: str, value: str) -> dict[str, str]:
    macros = to_macros({name: value}, "PythonJobOperator macros")  # what the operator does with macros=
    return seen_env(run(settings, script_job(folder), macros=macros)[1])


def cli_macro(settings, folder: Path, name: str, value: str) -> dict[str, str]:
    args = cli_args(str(script_job(folder)), "--macro", f"{name}={value}")
    return seen_env(run(settings, folder, macros=dict(args.macro))[1])


def dotenv_key(settings, folder: Path, name: str, value: str) -> dict[str, str]:
    job = script_job(folder, dotenv=f"{name}={value}\n")
    return seen_env(run(settings, job, dotenv_as_macros=True)[1])


def python_env_key(settings, folder: Path, name: str, value: str) -> dict[str, str]:
    job = script_job(folder, {"pythonEnv": {"env": {name: value}}})
    return seen_env(run(settings, job)[1])


VARIABLE_FIELDS: dict[str, Callable[..., dict[str, str]]] = {
    "macro key (job.json)": macro_in_job_json,
    "macro key (operator macros=)": operator_macros,
    "macro key (CLI --macro)": cli_macro,
    ".env key": dotenv_key,
    "pythonEnv.env key": python_env_key,
}
#: Names a field cannot even carry, and what the job gets instead (still a valid name, or nothing).
CANNOT_CARRY = {
    ("macro key (CLI --macro)", "equals sign"),  # --macro A=B=v is the macro A
    (".env key", "equals sign"),  # the line A=B=v is the key A
    (".env key", "newline"),  # two lines: A (no value: skipped) and B=v
    (".env key", "empty"),  # the line =v has no key: skipped
    (".env key", "jinja"),  # a "{{ ... }}=v" line is no KEY=VALUE line to python-dotenv: skipped, with a warning
    (".env key", "jinja statement"),
}


@pytest.mark.parametrize("row", NAMES)
@pytest.mark.parametrize("field", VARIABLE_FIELDS)
def test_hostile_variable_names(tmp_path, settings, field, row) -> None:
    name, expected = NAMES[row]
    value = VALUES.get(name, VALUE)
    marker = tmp_path / "job.started"
    try:
        env = VARIABLE_FIELDS[field](settings, tmp_path / "job", name, value)
    except (PythonExecError, SystemExit) as exc:
        assert expected == REFUSED or (field, row) in CANNOT_CARRY, f"{field} refused {row}: {exc}"
        assert not marker.exists(), "the script started"
        return
    if (field, row) in CANNOT_CARRY:
        assert all(k.isidentifier() and k.isascii() for k in env), env.keys()
        return
    assert expected == JOB_ONLY, f"{field} accepted the name {row}"
    assert env[name] == value


def test_a_refusal_is_one_short_line(tmp_path, settings, capsys) -> None:
    """The refusals of the table, read: one line each, the hostile value cut short."""
    for row in ("jinja", "newline", "huge"):
        name = NAMES[row][0]
        for field in ("macro key (job.json)", "pythonEnv.env key", "macro key (operator macros=)"):
            with pytest.raises(PythonExecError) as info:
                VARIABLE_FIELDS[field](settings, tmp_path / f"{row}-{field[:5]}", name, VALUE)
            message = str(info.value)
            assert "\n" not in message and len(message) < MAX_MESSAGE, message[:500]
        with pytest.raises(SystemExit):
            cli_args(str(tmp_path), "--macro", f"{name}=v")
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert len(err) < MAX_MESSAGE, err[:500]


# -- handler parameter names ---------------------------------------------------------------------


def parameters_in_job_json(settings, folder: Path, name: str) -> list[str]:
    job = handler_job(folder, {"handler": "mod:run", "parameters": {name: 1}})
    return json.loads(next(line for line in run(settings, job)[1] if line.startswith("ARGS="))[5:])


def operator_parameters(settings, folder: Path, name: str) -> list[str]:
    job = PythonJob.load(handler_job(folder, {"handler": "mod:run"})).with_function(parameters={name: 1})
    return json.loads(next(line for line in run(settings, job)[1] if line.startswith("ARGS="))[5:])


def cli_param(settings, folder: Path, name: str) -> list[str]:
    args = cli_args(str(handler_job(folder, {"handler": "mod:run"})), "--param", f"{name}=1")
    job = PythonJob.load(folder).with_function(parameters=dict(args.param))
    return json.loads(next(line for line in run(settings, job)[1] if line.startswith("ARGS="))[5:])


PARAMETER_FIELDS = {
    "function.parameters name (job.json)": parameters_in_job_json,
    "function.parameters name (operator parameters=)": operator_parameters,
    "function.parameters name (CLI --param)": cli_param,
}
#: A parameter name is an argument name, never a variable: these are accepted as names.
PARAMETER_NAME_OK = {"LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONPATH"}


@pytest.mark.parametrize("row", NAMES)
@pytest.mark.parametrize("field", PARAMETER_FIELDS)
def test_hostile_parameter_names(tmp_path, settings, field, row) -> None:
    name, _ = NAMES[row]
    marker = tmp_path / "job.started"
    try:
        received = PARAMETER_FIELDS[field](settings, tmp_path / "job", name)
    except (PythonExecError, SystemExit):
        assert row not in PARAMETER_NAME_OK, f"{field} refused the identifier {row}"
        assert not marker.exists(), "the handler started"
        return
    assert row in PARAMETER_NAME_OK, f"{field} accepted the name {row}"
    assert received == [name]  # an argument name of the handler, not an environment variable


def test_deeply_nested_parameter_values_are_refused_in_one_line(tmp_path) -> None:
    deep: Any = 1
    for _ in range(10_000):
        deep = [deep]
    folder = handler_job(tmp_path / "job", {"handler": "mod:run"})
    with pytest.raises(PythonExecError) as info:
        PythonJob.load(folder).with_function(parameters={"x": deep})
    assert "\n" not in str(info.value) and len(str(info.value)) < MAX_MESSAGE


# -- names of files, folders, commands and handlers ----------------------------------------------

#: Hostile values for the fields that name a path or a command.
PATHS = {
    "jinja": "{{ conn.prod_db.password }}",
    "parent": "../..",
    "absolute hidden": "/etc",
    "NUL": "a\x00b",
    "newline": "a\nb",
    "huge": HUGE,
    "LD_PRELOAD": "LD_PRELOAD=/no/such.so",
    "shell": "$(touch pwned)",
}


def cwd_field(settings, folder: Path, value: str) -> Any:
    return run(settings, script_job(folder), cwd=value)


def package_name_field(settings, folder: Path, value: str) -> Any:
    return run(settings, script_job(folder, {"packageName": value}))


def command_field(settings, folder: Path, value: str) -> Any:
    return run(settings, script_job(folder, {"pythonEnv": {"command": value}}))


def handler_field(settings, folder: Path, value: str) -> Any:
    return run(settings, handler_job(folder, {"handler": value}))


def prepend_paths_field(settings, folder: Path, value: str) -> Any:
    return run(settings, script_job(folder, {"pythonEnv": {"prepend_paths": [value]}}))


PATH_FIELDS: dict[str, Callable[..., Any]] = {
    "cwd": cwd_field,
    "packageName": package_name_field,
    "pythonEnv.command": command_field,
    "function.handler": handler_field,
    "pythonEnv.prepend_paths": prepend_paths_field,
}
#: What prepend_paths accepts: a folder put in front of the job's own PATH, nothing more.
PREPEND_OK = {"jinja", "parent", "absolute hidden", "newline", "LD_PRELOAD", "shell", "huge"}


@pytest.mark.parametrize("row", PATHS)
@pytest.mark.parametrize("field", PATH_FIELDS)
def test_hostile_paths_and_commands(tmp_path, settings, field, row) -> None:
    value = PATHS[row]
    folder = tmp_path / "job"
    try:
        _, lines = PATH_FIELDS[field](settings, folder, value)
    except PythonExecError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < MAX_MESSAGE, message[:500]
        assert not (tmp_path / "job.started").exists(), "the script started"
        assert field != "pythonEnv.prepend_paths" or row not in PREPEND_OK, message
        return
    assert not (folder / "pwned").exists() and not Path("pwned").exists()  # never through a shell
    assert field == "pythonEnv.prepend_paths" and row in PREPEND_OK, f"{field} accepted {row}"
    first = seen_env(lines)["PATH"].split(":")[0]
    assert first == value if value.startswith("/") else Path(first).resolve() == (folder / value).resolve()
