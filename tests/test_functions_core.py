"""Handler jobs: the bootstrap run as a real subprocess, results, error files and exit-code outcomes."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_python_exec import handlers as functions
from airflow_python_exec.environments.interpreters import installed_pythons
from airflow_python_exec.errors import JobConfigError, ResultError
from airflow_python_exec.handlers import BOOTSTRAP, EXIT_FAILED, EXIT_OK, EXIT_REFUSED
from airflow_python_exec.handlers.results import HandlerError, read_handler_error, read_result
from airflow_python_exec.models.exit_codes import Outcome, exit_outcome, parse_exit_codes
from airflow_python_exec.redaction import Redactor


class Run:
    """One bootstrap run: its exit status, output, result file and error file."""

    def __init__(self, proc: subprocess.CompletedProcess, folder: Path) -> None:
        self.code, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr
        self.result_file, self.error_file = folder / "result.json", folder / "error.json"

    @property
    def result(self):
        return json.loads(self.result_file.read_text())

    @property
    def error(self) -> HandlerError | None:
        return read_handler_error(self.error_file)


def run_bootstrap(
    tmp_path: Path,
    handler: str,
    modules: dict[str, str],
    *,
    params: dict | None = None,
    context: dict | None = None,
    main_file: str | None = None,
    python: str = sys.executable,
    extra_env: dict[str, str] | None = None,
) -> Run:
    """Write ``modules`` under ``tmp_path/src`` and run the bootstrap as the service will."""
    src, io = tmp_path / "src", tmp_path / "io"
    io.mkdir(exist_ok=True)
    for name, text in modules.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(textwrap.dedent(text))
    env = {
        **os.environ,
        functions.SOURCE_ROOT_ENV: str(src),
        functions.HANDLER_ENV: handler,
        functions.RESULT_FILE_ENV: str(io / "result.json"),
        functions.ERROR_FILE_ENV: str(io / "error.json"),
        **(extra_env or {}),
    }
    if params is not None:
        (io / "params.json").write_text(json.dumps(params))
        env[functions.PARAMS_FILE_ENV] = str(io / "params.json")
    if context is not None:
        (io / "context.json").write_text(json.dumps(context))
        env[functions.CONTEXT_FILE_ENV] = str(io / "context.json")
    if main_file is not None:
        env[functions.MAIN_FILE_ENV] = str(src / main_file)
    proc = subprocess.run([python, str(BOOTSTRAP)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return Run(proc, io)


CITIES = """
    import os

    def download_and_process(limit, country="IT"):
        return {"country": country, "cities": [f"{country}-{i}" for i in range(limit)], "pid": os.getpid()}
"""


# -- the contract ------------------------------------------------------------------------------


def test_bootstrap_keeps_the_package_contract_constants() -> None:
    """The stdlib-only bootstrap imports nothing of the package, so it keeps its own copies of the
    contract's names and exit statuses: every one must equal the package's (and the provider's prefix)."""
    from airflow_python_exec.handlers import bootstrap
    from airflow_python_exec.logs import PREFIX

    shared = {name for name in vars(functions) if name.isupper() and name in vars(bootstrap)}
    assert shared >= {
        "SOURCE_ROOT_ENV",
        "HANDLER_ENV",
        "MAIN_FILE_ENV",
        "PARAMS_FILE_ENV",
        "CONTEXT_FILE_ENV",
        "RESULT_FILE_ENV",
        "ERROR_FILE_ENV",
        "DATA_FILE_ENV",
        "BOOTSTRAP_ONLY_ENV",
        "DATA_MODULE_NAME",
        "EXIT_OK",
        "EXIT_FAILED",
        "EXIT_REFUSED",
    }
    for name in shared:
        assert getattr(bootstrap, name) == getattr(functions, name), name
    assert bootstrap.PREFIX == PREFIX


def test_bootstrap_imports_the_standard_library_only() -> None:
    tree = ast.parse(BOOTSTRAP.read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported and imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_the_contract_module_is_light() -> None:
    code = (
        "import sys, airflow_python_exec.handlers as f; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'pydantic', 'filelock')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- calls -------------------------------------------------------------------------------------


def test_handler_result_is_written_as_json(tmp_path) -> None:
    run = run_bootstrap(
        tmp_path, "cities:download_and_process", {"cities.py": CITIES}, params={"limit": 3, "country": "FR"}
    )
    assert (run.code, run.stderr) == (EXIT_OK, "")
    assert run.result["cities"] == ["FR-0", "FR-1", "FR-2"] and run.result["pid"] > 0
    assert not run.error_file.exists()


def test_module_path_handler_and_source_root_first_on_sys_path(tmp_path) -> None:
    modules = {
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "",
        "pkg/sub/tasks.py": """
                   import importlib.util, os, sys

                   class Jobs:
                       @staticmethod
                       def where():
                           return {"first": sys.path[0],
                                   "bootstrap_dir_hidden": importlib.util.find_spec("bootstrap") is None,
                                   "loaded": sorted(m for m in sys.modules if m.split(".")[0] in
                                                    ("airflow", "airflow_python_exec")),
                                   "env": {k: k in os.environ for k in ("PYTHON_EXEC_HANDLER",
                                           "PYTHON_EXEC_PARAMS_FILE", "PYTHON_EXEC_RESULT_FILE")}}
               """,
    }
    run = run_bootstrap(tmp_path, "pkg.sub.tasks:Jobs.where", modules, params={})
    assert run.code == EXIT_OK, run.stderr
    assert run.result["first"] == str(tmp_path / "src")
    assert run.result["bootstrap_dir_hidden"]  # the package's own files are not importable
    assert run.result["loaded"] == []  # neither Airflow nor this package, even where installed
    assert run.result["env"] == {
        "PYTHON_EXEC_HANDLER": False,
        "PYTHON_EXEC_PARAMS_FILE": False,
        "PYTHON_EXEC_RESULT_FILE": True,
    }


def test_bare_function_of_the_main_file(tmp_path) -> None:
    modules = {
        "app.py": """
                   from helpers import double

                   def handler(x):
                       return double(x)

                   if __name__ == "__main__":
                       print("the script's main block ran")
               """,
        "helpers.py": "def double(x):\n    return x * 2\n",
    }
    run = run_bootstrap(tmp_path, "handler", modules, params={"x": 21}, main_file="app.py")
    assert (run.code, run.result) == (EXIT_OK, 42)
    assert "main block" not in run.stdout


def test_context_is_passed_only_to_a_handler_that_names_it(tmp_path) -> None:
    modules = {
        "h.py": """
        def with_context(x, context):
            return {"x": x, "context": context}

        def with_kwargs(x, **kwargs):
            return {"x": x, "kwargs": kwargs}
    """
    }
    context = {"dag_id": "d", "task_id": "t", "run_id": "r", "try_number": 1, "params": {"p": 1}}
    run = run_bootstrap(tmp_path, "h:with_context", modules, params={"x": 1}, context=context)
    assert run.result == {"x": 1, "context": context}
    run = run_bootstrap(tmp_path, "h:with_kwargs", modules, params={"x": 1, "y": 2}, context=context)
    assert run.result == {"x": 1, "kwargs": {"y": 2}}
    run = run_bootstrap(tmp_path, "h:with_context", modules, params={"x": 1})
    assert run.result == {"x": 1, "context": {}}


def test_coroutine_handler_is_awaited(tmp_path) -> None:
    modules = {"h.py": "import asyncio\n\nasync def f(n):\n    await asyncio.sleep(0)\n    return n + 1\n"}
    run = run_bootstrap(tmp_path, "h:f", modules, params={"n": 1})
    assert (run.code, run.result) == (EXIT_OK, 2)


# -- refusals before the call ------------------------------------------------------------------


BODY = """
    import pathlib

    def download(limit, country="IT", *, fmt="csv"):
        pathlib.Path("body-ran").write_text("yes")
        return limit

    def only_positional(a, /):
        pathlib.Path("body-ran").write_text("yes")

    def takes_context(context):
        pathlib.Path("body-ran").write_text("yes")
"""


@pytest.mark.parametrize(
    ("handler", "params", "expected"),
    [
        (
            "h:download",
            {"limt": 10, "country": "FR"},
            r"handler h:download\(limit, country='IT', \*, fmt='csv'\) has no parameter 'limt'",
        ),
        ("h:download", {"country": "FR"}, "missing a required argument: 'limit'"),
        ("h:only_positional", {"a": 1}, "positional"),
        ("h:takes_context", {"context": 1}, "rename the parameter called 'context'"),
    ],
)
def test_unbindable_parameters_are_refused_before_the_call(tmp_path, handler, params, expected) -> None:
    run = run_bootstrap(tmp_path, handler, {"h.py": BODY}, params=params)
    assert run.code == EXIT_REFUSED
    (line,) = run.stderr.splitlines()
    assert line.startswith("[python_exec] error: ")
    assert re.search(expected, line), line
    assert not (tmp_path / "body-ran").exists()  # the handler's body never ran
    assert not run.result_file.exists()
    assert run.error.kind == "refused" and re.search(expected, str(run.error))


@pytest.mark.parametrize(
    ("handler", "modules", "expected"),
    [
        ("missing:f", {}, "module 'missing' is not found under the source root"),
        ("h:nope", {"h.py": "X = 1\n"}, "h has no 'nope'"),
        ("h:X", {"h.py": "X = 1\n"}, "is a int, not a function"),
        ("h:f()", {"h.py": "X = 1\n"}, "is not module.path:function"),
        ("f", {"h.py": "X = 1\n"}, "has no module"),
    ],
)
def test_bad_handlers_are_refused(tmp_path, handler, modules, expected) -> None:
    run = run_bootstrap(tmp_path, handler, modules or {"empty.py": ""}, params={})
    assert run.code == EXIT_REFUSED and expected in run.stderr
    assert len(run.stderr.splitlines()) == 1


def test_bad_parameter_file_is_refused(tmp_path) -> None:
    run = run_bootstrap(tmp_path, "h:f", {"h.py": "def f():\n    return 1\n"}, params=[1, 2])  # type: ignore[arg-type]
    assert run.code == EXIT_REFUSED and "must be a JSON object, not list" in run.stderr


# -- failures ----------------------------------------------------------------------------------


def test_exception_fails_with_its_traceback_and_is_recorded(tmp_path) -> None:
    modules = {
        "h.py": """
        class QuotaError(Exception):
            pass

        def check(n):
            if n > 1:
                raise QuotaError(f"quota of {n} exceeded\\nsecond line")
            raise ValueError(f"bad input {n}")
    """
    }
    run = run_bootstrap(tmp_path, "h:check", modules, params={"n": 42})
    assert run.code == EXIT_FAILED
    assert "Traceback (most recent call last)" in run.stderr and 'raise QuotaError(f"quota' in run.stderr
    assert "bootstrap.py" not in run.stderr  # the traceback starts at the job's own code
    assert not run.result_file.exists()
    assert str(run.error) == "h.QuotaError: quota of 42 exceeded second line"
    run = run_bootstrap(tmp_path, "h:check", modules, params={"n": 1})
    assert str(run.error) == "ValueError: bad input 1"


def test_a_missing_dependency_of_the_handler_module_is_a_failure_not_a_refusal(tmp_path) -> None:
    run = run_bootstrap(tmp_path, "h:f", {"h.py": "import not_installed_anywhere\n\ndef f():\n    pass\n"})
    assert run.code == EXIT_FAILED
    assert "ModuleNotFoundError: No module named 'not_installed_anywhere'" in run.stderr
    assert run.error.type == "ModuleNotFoundError"


@pytest.mark.parametrize(
    ("returned", "type_name"),
    [
        ("{1, 2}", "set"),
        ("object()", "object"),
        ("{'when': __import__('datetime').date(2026, 1, 1)}", "datetime.date"),
        ("float('nan')", "Out of range float"),
        ("{(1, 2): 'tuple key'}", "tuple"),
    ],
)
def test_a_value_json_cannot_encode_fails_naming_its_type(tmp_path, returned, type_name) -> None:
    run = run_bootstrap(tmp_path, "h:f", {"h.py": f"def f():\n    return {returned}\n"})
    assert run.code == EXIT_FAILED
    (line,) = run.stderr.splitlines()
    assert line.startswith("[python_exec] error: the handler's return value cannot be encoded as JSON")
    assert type_name in line and not run.result_file.exists()
    assert run.error.kind == "result" and type_name in str(run.error)


def test_sys_exit_keeps_its_code_for_the_exit_code_mapping(tmp_path) -> None:
    run = run_bootstrap(
        tmp_path, "h:f", {"h.py": "import sys\n\ndef f():\n    print('nothing new')\n    sys.exit(3)\n"}
    )
    assert run.code == 3 and not run.result_file.exists() and not run.error_file.exists()
    assert exit_outcome(run.code, {"3": "skipped"}) is Outcome.SKIPPED
    assert read_result(run.result_file, run.stdout.splitlines()[-1]) == "nothing new"


def _other_pythons() -> list[str]:
    """The oldest and newest supported interpreters installed here, except the one running the tests."""
    found = {v.rsplit(".", 1)[0]: str(p) for v, p in installed_pythons()}
    return [found[v] for v in ("3.10", "3.13") if v in found and v != "%d.%d" % sys.version_info[:2]]


@pytest.mark.parametrize(
    "python",
    _other_pythons()
    or [
        pytest.param(
            None, marks=pytest.mark.skip(reason="no Python 3.10 or 3.13 installed besides the test interpreter")
        )
    ],
)
def test_bootstrap_runs_under_a_bare_interpreter(tmp_path, python) -> None:
    modules = {"h.py": "import sys\n\ndef f(x, context):\n    return [x, context, list(sys.version_info[:2])]\n"}
    run = run_bootstrap(
        tmp_path,
        "h:f",
        modules,
        params={"x": "y"},
        context={"job_id": "j"},
        python=python,
        extra_env={"PYTHONPATH": "", "VIRTUAL_ENV": ""},
    )
    assert run.code == EXIT_OK, run.stderr
    version = subprocess.run(
        [python, "-c", "import sys; print(list(sys.version_info[:2]))"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert run.result == ["y", {"job_id": "j"}, json.loads(version)]


# -- results -----------------------------------------------------------------------------------


def test_result_file_wins_over_the_last_line(tmp_path) -> None:
    result = tmp_path / "result.json"
    assert read_result(result, "last line") == "last line"  # no file
    result.write_text("  \n")
    assert read_result(result, "last line") == "last line"  # empty file
    assert read_result(result, None) is None  # no output at all
    result.write_text(json.dumps({"rows": [1, 2]}))
    assert read_result(result, "last line") == {"rows": [1, 2]}


def test_result_secrets_are_masked_recursively(tmp_path) -> None:
    run = run_bootstrap(
        tmp_path,
        "h:f",
        {
            "h.py": """
        import os

        def f():
            token = os.environ["API_TOKEN"]
            return {"token": token, "nested": [{"t": token}, f"prefix {token}"], token: 1, "n": 5}
    """
        },
        extra_env={"API_TOKEN": "s3cr3t"},
    )
    assert run.code == EXIT_OK
    value = read_result(run.result_file, None, redact=Redactor({"s3cr3t", ""}))
    # Every occurrence, inside longer strings too (issue 15).
    assert value == {"token": "***", "nested": [{"t": "***"}, "prefix ***"], "***": 1, "n": 5}
    assert read_result(tmp_path / "none.json", "s3cr3t", redact=Redactor({"s3cr3t"})) == "***"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"a": ', "not valid JSON (Expecting value at line 1 column 7)"),
        (b"\xff\xfe", "not UTF-8"),
        (b'"' + b"x" * 200 + b'"', "larger than 100 bytes"),
    ],
)
def test_bad_results_fail_with_one_line(tmp_path, content, expected) -> None:
    result = tmp_path / "result.json"
    result.write_bytes(content)
    with pytest.raises(ResultError, match=expected.replace("(", r"\(").replace(")", r"\)")) as info:
        read_result(result, "ignored", max_result_bytes=100)
    assert "\n" not in str(info.value) and info.value.exit_code == 1


def test_result_size_limit_is_inclusive_and_applies_to_the_last_line(tmp_path) -> None:
    result = tmp_path / "result.json"
    result.write_text(json.dumps("x" * 98))  # 100 bytes with its quotes
    assert read_result(result, None, max_result_bytes=100) == "x" * 98
    with pytest.raises(ResultError, match="last output line is larger than 10 bytes"):
        read_result(tmp_path / "missing.json", "y" * 11, max_result_bytes=10)


def test_error_file_becomes_one_line_with_secrets_replaced(tmp_path) -> None:
    error = tmp_path / "error.json"
    error.write_text(
        json.dumps(
            {"type": "app.LoginError", "message": "login with s3cr3t\nrefused " + "z" * 2000, "kind": "exception"}
        )
    )
    message = str(read_handler_error(error, Redactor({"s3cr3t"})))
    assert message.startswith("app.LoginError: login with *** refused zzz") and "\n" not in message
    assert len(message) <= len("app.LoginError: ") + 1000
    assert read_handler_error(tmp_path / "missing.json") is None


# -- exit codes --------------------------------------------------------------------------------


PLATFORM = {"0": "success", "3": "skipped", "4": "success", "5": "failed"}


@pytest.mark.parametrize(
    ("code", "skip", "expected"),
    [
        (0, None, Outcome.SUCCESS),
        (3, None, Outcome.SKIPPED),
        (4, None, Outcome.SUCCESS),
        (5, None, Outcome.FAILED),
        (1, None, Outcome.FAILED),
        (143, None, Outcome.FAILED),
        (7, [7, 8], Outcome.SKIPPED),
        (5, 5, Outcome.SKIPPED),
    ],
)
def test_platform_exit_code_mapping(code, skip, expected) -> None:
    assert exit_outcome(code, PLATFORM, skip) is expected


def test_without_a_mapping_only_zero_succeeds() -> None:
    assert [exit_outcome(c) for c in (0, 1, 3)] == [Outcome.SUCCESS, Outcome.FAILED, Outcome.FAILED]
    assert parse_exit_codes({"2": "SKIPPED", 3: "failed"}) == {2: Outcome.SKIPPED, 3: Outcome.FAILED}


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        ({"-1": "failed"}, "key '-1' is not an exit code"),
        ({"256": "failed"}, "key '256' is not an exit code"),
        ({"03": "failed"}, "key '03' is not an exit code"),
        ({" 3": "failed"}, "key ' 3' is not an exit code"),
        ({"three": "failed"}, "key 'three' is not an exit code"),
        ({"3": "ok"}, r"exitCodes\['3'\] = 'ok' is not an outcome; use success, skipped or failed"),
        ({"3": None}, "is not an outcome"),
        (["3"], "must be an object"),
    ],
)
def test_invalid_exit_code_mappings_are_refused(mapping, expected) -> None:
    with pytest.raises(JobConfigError, match=expected) as info:
        exit_outcome(0, mapping)
    assert "\n" not in str(info.value)


def test_invalid_skip_codes_are_refused() -> None:
    with pytest.raises(JobConfigError, match="skip_on_exit_code 300"):
        exit_outcome(0, None, [300])
