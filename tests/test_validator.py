"""PythonEngineValidator: each way a configured installation is refused, before anything runs."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from airflow_python_exec import EngineSettings, PythonEngineValidator
from airflow_python_exec.errors import (
    EngineDisabledError,
    InstallPathError,
    InterpreterNotFoundError,
    InterpreterNotRunnableError,
)


def _validate(**settings: object):
    return PythonEngineValidator(EngineSettings(**settings)).validate()


def _fake_prefix(tmp_path: Path, body: str, mode: int = 0o755, name: str = "python3") -> Path:
    (tmp_path / "bin").mkdir()
    exe = tmp_path / "bin" / name
    exe.write_text(body)
    exe.chmod(mode)
    return tmp_path


def test_unset_install_path_uses_the_base_installation_running_airflow(caplog) -> None:
    # Said at DEBUG since 1ddd2ac: one line fewer in every task's log on the hot path.
    with caplog.at_level(logging.DEBUG, logger="airflow_python_exec"):
        interpreter = _validate(install_path=None)
    assert interpreter.install_path == Path(sys.base_prefix)
    assert interpreter.version == "%d.%d.%d" % sys.version_info[:3]
    assert "base installation" in caplog.text


def test_configured_prefix_reports_interpreter_and_version() -> None:
    interpreter = _validate(install_path=sys.prefix)
    assert interpreter.path == Path(sys.prefix) / "bin" / "python3"
    assert interpreter.version_tuple == tuple(sys.version_info[:3])


def test_falls_back_to_bin_python(tmp_path: Path) -> None:
    prefix = _fake_prefix(tmp_path, f'#!/bin/sh\nexec {sys.executable} "$@"\n', name="python")
    assert _validate(install_path=str(prefix)).path == prefix / "bin" / "python"


@pytest.mark.parametrize(
    ("settings", "error", "expected"),
    [
        ({"enabled": False}, EngineDisabledError, "enabled = False"),
        ({"install_path": ""}, InstallPathError, "set but blank"),
        ({"install_path": "   "}, InstallPathError, "set but blank"),
        ({"install_path": "/nonexistent/python"}, InstallPathError, "/nonexistent/python does not exist"),
    ],
)
def test_refusals(settings: dict, error: type, expected: str) -> None:
    with pytest.raises(error, match=expected) as info:
        _validate(**settings)
    assert "\n" not in str(info.value)


def test_install_path_that_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "python3"
    file.write_text("")
    with pytest.raises(InstallPathError, match="is not a folder"):
        _validate(install_path=str(file))


def test_folder_without_interpreter(tmp_path: Path) -> None:
    with pytest.raises(InterpreterNotFoundError, match="no bin/python3 or bin/python under"):
        _validate(install_path=str(tmp_path))


def test_interpreter_not_executable(tmp_path: Path) -> None:
    prefix = _fake_prefix(tmp_path, "#!/bin/sh\necho 3.11.0\n", mode=0o644)
    with pytest.raises(InterpreterNotFoundError, match="not an executable file"):
        _validate(install_path=str(prefix))


def test_interpreter_that_does_not_run(tmp_path: Path) -> None:
    prefix = _fake_prefix(tmp_path, "#!/bin/sh\necho 'broken install' >&2\nexit 1\n")
    with pytest.raises(InterpreterNotRunnableError, match="broken install"):
        _validate(install_path=str(prefix))


def test_interpreter_probe_runs_once_per_path(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    (tmp_path / "py").mkdir()
    prefix = _fake_prefix(tmp_path / "py", f'#!/bin/sh\necho x >> {counter}\nexec {sys.executable} "$@"\n')
    for _ in range(3):
        _validate(install_path=str(prefix))
    assert counter.read_text().count("x") == 1


def test_disabled_engine_wins_over_a_broken_path() -> None:
    with pytest.raises(EngineDisabledError):
        _validate(enabled=False, install_path="")
    assert os.path.isdir(sys.prefix)
