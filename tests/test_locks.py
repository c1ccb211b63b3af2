"""Locks on every supported Python: universal locks with markers, and locks made for another Python.

Locks and wheels are made on the spot (tests/wheels.py), so nothing here needs the network.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CLI, REPO, cli_env, shipped, write_job
from packaging.tags import compatible_tags, cpython_tags, platform_tags
from packaging.utils import parse_wheel_filename
from wheels import write_lock, write_wheel

from airflow_python_exec import EngineSettings, PythonExecutionService
from airflow_python_exec.environments.lockfile import locked_packages, platform_tag

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

#: The Pythons pyproject.toml claims, which every example lock must serve from wheels.
SUPPORTED = [(3, 10), (3, 11), (3, 12), (3, 13)]
HERE = "%d.%d" % sys.version_info[:2]
MINOR = sys.version_info[1]


def run_cli(job: Path, settings: EngineSettings) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, "run", str(job)],
        env=cli_env(cache_dir=str(settings.cache_dir)),
        capture_output=True,
        text=True,
        timeout=120,
    )


def built_environments(settings: EngineSettings) -> list[Path]:
    return [
        p
        for d in ("envs", "ephemeral")
        if (settings.cache_dir / d).is_dir()
        for p in (settings.cache_dir / d).iterdir()
        if p.is_dir()
    ]


@pytest.mark.smoke
def test_universal_lock_installs_the_entries_for_this_python(settings, job_dir: Path, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    write_wheel(wheels, "tinydep", "1.0", module="VALUE = 'one'\n")
    write_wheel(wheels, "tinydep", "2.0", module="VALUE = 'two'\n")
    lock = write_lock(
        job_dir,
        wheels,
        ['tinydep==1.0; python_version < "3.12"', 'tinydep==2.0; python_version >= "3.12"'],
        universal=True,
    )
    assert lock.read_text().count("marker = ") == 2
    write_job(
        job_dir,
        "import tinydep\nprint('tinydep', tinydep.VALUE)\n",
        job={"jobId": "universal", "pythonEnv": {"pylock": "pylock.toml"}},
    )
    expected = "two" if MINOR >= 12 else "one"
    lines, setup = [], []
    result = PythonExecutionService(settings).run(job_dir, on_line=lines.append, on_setup_line=setup.append)
    assert result.exit_code == 0, setup
    assert lines == [f"tinydep {expected}"]
    assert any(line.startswith("[python_exec] installed 1 locked packages") for line in setup)
    (env,) = built_environments(settings)
    marker = json.loads((env / ".provisioned").read_text())
    assert marker["installed"] == [f"tinydep=={'2.0' if expected == 'two' else '1.0'}"]


@pytest.mark.smoke
def test_lock_without_a_wheel_for_this_python_names_it_and_the_relock_command(settings, job_dir, tmp_path) -> None:
    """A lock made for another Python (its only wheel cp39): one line with this worker's tags and the fix."""
    wheels = tmp_path / "wheels"
    write_wheel(wheels, "tinynative", tag="cp39-none-any")
    write_lock(job_dir, wheels, ["tinynative"], python_version="3.9")
    write_job(job_dir, "import tinynative\n", job={"jobId": "foreign", "pythonEnv": {"pylock": "pylock.toml"}})
    done = run_cli(job_dir, settings)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 3, done.stderr
    assert errors == [done.stderr.strip().splitlines()[-1]]
    (error,) = errors
    assert "no wheel of tinynative" in error
    assert f"Python {sys.version.split()[0]} (cp3{MINOR}, {platform_tag()})" in error
    assert (
        f"cd {job_dir} && uv pip compile --universal --only-binary :all: --python-version 3.9 "
        "--format pylock.toml -o pylock.toml requirements.in"
    ) in error
    assert built_environments(settings) == []


def test_lock_for_a_newer_python_names_its_requirement_and_the_relock_command(settings, job_dir, tmp_path) -> None:
    newer = f"3.{MINOR + 1}"
    wheels = tmp_path / "wheels"
    write_wheel(wheels, "tinynew", tag=f"cp3{MINOR + 1}-none-any")
    write_lock(job_dir, wheels, ["tinynew"], python_version=newer)
    write_job(job_dir, "import tinynew\n", job={"jobId": "newer", "pythonEnv": {"pylock": "pylock.toml"}})
    done = run_cli(job_dir, settings)
    error = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 3, done.stderr
    assert f"the lock requires Python >={newer}, not this worker's Python {sys.version.split()[0]}" in error
    assert f"--python-version {HERE} --format pylock.toml -o pylock.toml requirements.in" in error
    assert built_environments(settings) == []


def supported_tags(python: tuple[int, int]) -> set:
    """The wheel tags a CPython ``python`` on this machine's platform installs."""
    platforms = list(platform_tags())
    return {
        *cpython_tags(python, platforms=platforms),
        *compatible_tags(python, interpreter=f"cp{python[0]}{python[1]}", platforms=platforms),
    }


@pytest.mark.smoke
@pytest.mark.parametrize("job", sorted(p.parent.name for p in shipped(REPO / "example_dags" / "jobs", "*/pylock.toml")))
def test_example_locks_serve_every_supported_python_from_wheels(job: str) -> None:
    """What uv picks on each Python: exactly one entry per package, each with a wheel it can install."""
    lock = REPO / "example_dags" / "jobs" / job / "pylock.toml"
    data = tomllib.loads(lock.read_text())
    assert data["requires-python"] == ">=3.10"
    entries = {(p["name"], p["version"]): p for p in data["packages"]}
    for python in SUPPORTED:
        chosen = [entries[tuple(spec.split("=="))] for spec in locked_packages(lock, "%d.%d.0" % python)]
        names = [p["name"] for p in chosen]
        assert len(names) == len(set(names)), (python, names)
        tags = supported_tags(python)
        for package in chosen:
            wheel_tags = [parse_wheel_filename(w["url"].rsplit("/", 1)[1])[3] for w in package.get("wheels", [])]
            assert any(t & tags for t in wheel_tags), f"{package['name']} {package['version']}: no wheel for {python}"
