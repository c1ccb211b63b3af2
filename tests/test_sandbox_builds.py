"""Builds of a job's own source run inside the sandbox (DESIGN.md "Containment and sandbox").

A folder in ``pythonEnv.local_extra_deps`` is built by its own build backend, and a
``pyproject.toml`` may name an in-tree one (``backend-path = ["."]``): the job's code, run while the
environment is provisioned. The attacker's backend here looks for the worker's secrets (the
``airflow.cfg`` under ``AIRFLOW_HOME``, a credential in the worker's environment, any
``/proc/*/environ``), tries to poison uv's cache that every job shares, writes what it found into
the module it builds (which the sandboxed script then prints), and leaves a detached daemon with a
hand-made environment behind. With ``sandbox = bubblewrap`` none of that may work; ordinary local
extras (hatchling, setuptools, an sdist) still build, also without network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import write_job
from test_sandbox import requires_bwrap, requires_bwrap_no_net, run_lines

from airflow_python_exec.environments.uv import uv_binary

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="bubblewrap is Linux-only")

SECRET = "s3cr3t-fernet-key-of-the-worker"

#: The in-tree backend: the job's own code, run by the build. ``{probe}`` is a JSON object with the
#: secret, the files to read, the shared uv cache to poison and the daemon's marker.
EVIL_BACKEND = """
import base64, glob, hashlib, json, os, subprocess, sys, zipfile

PROBE = json.loads({probe!r})


def _loot():
    found = []
    for path in PROBE["files"]:
        try:
            if PROBE["secret"] in open(path, errors="replace").read():
                found.append("file:" + path)
        except OSError:
            pass
    found += ["env:" + k for k, v in os.environ.items() if PROBE["secret"] in v]
    for path in glob.glob("/proc/[0-9]*/environ"):
        try:
            if PROBE["secret"].encode() in open(path, "rb").read():
                found.append("proc:" + path)
        except OSError:
            pass
    try:
        with open(os.path.join(PROBE["uv_cache"], "POISONED-BY-A-BUILD"), "w") as f:
            f.write("x")
        found.append("poisoned uv cache")
    except OSError:
        pass
    # A daemon in a session of its own, with an environment of its own making (no run token).
    subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", PROBE["marker"]],
        start_new_session=True,
        env={{"PATH": "/usr/bin:/bin"}},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return found


def _record(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{{path}},sha256={{digest}},{{len(data)}}"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info = "evil_extra-1.0.dist-info"
    files = {{
        "evil_payload.py": ("FOUND = " + repr(_loot()) + "\\n").encode(),
        info + "/METADATA": b"Metadata-Version: 2.1\\nName: evil-extra\\nVersion: 1.0\\n",
        info + "/WHEEL": b"Wheel-Version: 1.0\\nGenerator: evil\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }}
    record = [_record(p, d) for p, d in files.items()] + [info + "/RECORD,,"]
    files[info + "/RECORD"] = ("\\n".join(record) + "\\n").encode()
    name = "evil_extra-1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return name


def get_requires_for_build_wheel(config_settings=None):
    return []
"""


@pytest.fixture
def outside() -> Iterator[Path]:
    """A folder outside /tmp (which a sandbox hides wholesale), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="ape-build-test-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def shared_uv_cache() -> Path:
    """uv's own cache, the one every job's provisioning shares."""
    out = subprocess.run([uv_binary(), "cache", "dir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def daemons(marker: str, timeout: float = 5.0) -> list[int]:
    """Live processes carrying ``marker`` in their argv, after waiting up to ``timeout`` s for them to go."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for process in psutil.process_iter(["cmdline", "status"]):
            if marker in (process.info["cmdline"] or []) and process.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def evil_job(outside: Path, marker: str, monkeypatch) -> Path:
    """A job whose local extra ``evil`` has the in-tree backend, with the worker's secrets in place."""
    airflow_home = outside / "airflow_home"
    airflow_home.mkdir()
    (airflow_home / "airflow.cfg").write_text(f"[core]\nfernet_key = {SECRET}\n")
    monkeypatch.setenv("AIRFLOW_HOME", str(airflow_home))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)  # a worker credential a job's environment would inherit
    probe = json.dumps(
        {
            "secret": SECRET,
            "files": [str(airflow_home / "airflow.cfg")],
            "uv_cache": str(shared_uv_cache()),
            "marker": marker,
        }
    )
    job = write_job(
        outside / "jobs" / "evil",
        "import evil_payload\nprint('FOUND', evil_payload.FOUND)\n",
        job={"jobId": "evil", "pythonEnv": {"local_extra_deps": ["evil"]}},
    )
    (job / "evil").mkdir()
    (job / "evil" / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n\n'
        '[project]\nname = "evil-extra"\nversion = "1.0"\n'
    )
    (job / "evil" / "backend.py").write_text(EVIL_BACKEND.format(probe=probe))
    return job


@requires_bwrap
def test_an_in_tree_build_backend_cannot_reach_the_workers_secrets(settings, outside: Path, monkeypatch) -> None:
    marker = f"evil-build-daemon-{uuid.uuid4().hex}"
    job = evil_job(outside, marker, monkeypatch)
    poison = shared_uv_cache() / "POISONED-BY-A-BUILD"
    try:
        result, lines = run_lines(settings.override(sandbox="bubblewrap"), job)
        left = daemons(marker)
    finally:
        kill_all(daemons(marker, timeout=0))
        poisoned = poison.exists()
        poison.unlink(missing_ok=True)
    assert result.exit_code == 0, lines
    assert lines == ["FOUND []"]
    assert not poisoned
    assert left == []


@requires_bwrap
def test_the_build_daemon_dies_with_a_killed_cli(outside: Path, monkeypatch, tmp_path: Path) -> None:
    """The worker killed with SIGKILL while the build runs: nothing the build started survives it."""
    from conftest import CLI, cli_env

    marker = f"evil-build-daemon-{uuid.uuid4().hex}"
    job = evil_job(outside, marker, monkeypatch)
    # The backend waits in its build until the test has killed the CLI.
    backend = job / "evil" / "backend.py"
    backend.write_text(
        backend.read_text().replace(
            "    return found\n", "    import time\n    print('BUILD-STARTED', flush=True)\n    time.sleep(600)\n"
        )
    )
    env = cli_env(cache_dir=str(tmp_path / "cache"), sandbox="bubblewrap")
    cli = subprocess.Popen([CLI, "provision", str(job)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not daemons(marker, timeout=0) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert daemons(marker, timeout=0), "the build never started its daemon"
        cli.kill()
        cli.wait(timeout=30)
        left = daemons(marker)
    finally:
        kill_all(daemons(marker, timeout=0))
        if cli.poll() is None:
            cli.kill()
    assert left == []


@requires_bwrap
def test_requirements_never_build_a_jobs_source(settings, outside: Path, monkeypatch) -> None:
    """A direct reference to the job's own folder in ``requirements`` is refused, never built (wheels
    only, with the sandbox on or off): its backend never runs."""
    marker = f"evil-build-daemon-{uuid.uuid4().hex}"
    job = evil_job(outside, marker, monkeypatch)
    # Dynamic metadata: uv would have to run the backend to learn the version.
    pyproject = job / "evil" / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "1.0"', 'dynamic = ["version"]'))
    spec = json.loads((job / "job.json").read_text())
    spec["pythonEnv"] = {"requirements": [f"evil-extra @ {(job / 'evil').as_uri()}"]}
    (job / "job.json").write_text(json.dumps(spec))
    for sandbox in ("bubblewrap", "off"):
        with pytest.raises(Exception, match="Building source distributions for `evil-extra` is disabled"):
            run_lines(settings.override(sandbox=sandbox), job)
    assert daemons(marker, timeout=0) == []


# Ordinary local extras still build in the sandbox.


def hatchling_extra(folder: Path, name: str = "plain_extra") -> Path:
    (folder / name).mkdir(parents=True)
    (folder / name / "pyproject.toml").write_text(
        f'[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
        f'[project]\nname = "{name.replace("_", "-")}"\nversion = "0.1"\n'
    )
    (folder / name / name).mkdir()
    (folder / name / name / "__init__.py").write_text("VALUE = 42\n")
    return folder / name


def setuptools_sdist(folder: Path, name: str = "legacy_extra") -> Path:
    """An sdist of a project with only a ``setup.py`` (PEP 517's fallback backend, setuptools)."""
    tree = folder / "sdist-tree" / f"{name}-0.2"
    tree.mkdir(parents=True)
    (tree / "setup.py").write_text(
        f"from setuptools import setup\nsetup(name={name!r}, version='0.2', py_modules=[{name!r}])\n"
    )
    (tree / f"{name}.py").write_text("VALUE = 7\n")
    (tree / "PKG-INFO").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.2\n")
    archive = folder / f"{name}-0.2.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    shutil.rmtree(folder / "sdist-tree")
    return archive


@requires_bwrap_no_net
def test_ordinary_local_extras_build_in_the_sandbox_without_network(settings, outside: Path) -> None:
    job = write_job(
        outside / "jobs" / "plain",
        "import plain_extra, legacy_extra\nprint('VALUES', plain_extra.VALUE, legacy_extra.VALUE)\n",
        job={"jobId": "plain", "pythonEnv": {"local_extra_deps": ["plain_extra", "legacy_extra-0.2.tar.gz"]}},
    )
    hatchling_extra(job)
    setuptools_sdist(job)
    setup: list[str] = []
    from airflow_python_exec import PythonExecutionService

    result = PythonExecutionService(settings.override(sandbox="bubblewrap", sandbox_network=False)).run(
        job, on_line=lambda line: setup.append(line), on_setup_line=setup.append
    )
    assert result.exit_code == 0, "\n".join(setup)
    assert "VALUES 42 7" in setup
    assert any("built 2 local extra(s) in the sandbox" in line for line in setup), setup
    # The job folder itself was not written to by the build (it is read-only in the sandbox).
    assert sorted(p.name for p in job.iterdir()) == ["app.py", "job.json", "legacy_extra-0.2.tar.gz", "plain_extra"]
    assert sorted(p.name for p in (job / "plain_extra").iterdir()) == ["plain_extra", "pyproject.toml"]


def test_without_the_sandbox_a_local_extra_builds_as_before(settings, outside: Path) -> None:
    job = write_job(
        outside / "jobs" / "plain",
        "import plain_extra\nprint('VALUE', plain_extra.VALUE)\n",
        job={"jobId": "plain", "pythonEnv": {"local_extra_deps": ["plain_extra"]}},
    )
    hatchling_extra(job)
    result, lines = run_lines(settings, job)
    assert result.exit_code == 0 and lines == ["VALUE 42"], lines


@requires_bwrap
def test_a_local_extra_where_the_sandbox_hides_is_refused(settings, outside: Path, monkeypatch) -> None:
    """A sibling job's folder, or AIRFLOW_HOME, named as a local extra (or reached by a symlink):
    installed or copied by the worker, it would carry what the sandbox hides into the job's
    environment. Refused in one line before anything is built."""
    airflow_home = outside / "airflow_home"
    wheel_dir = airflow_home / "wheels"
    from wheels import write_wheel

    write_wheel(wheel_dir, "hidden_pkg", module=f"SECRET = {SECRET!r}\n")
    monkeypatch.setenv("AIRFLOW_HOME", str(airflow_home))
    sibling = hatchling_extra(outside / "jobs" / "sibling", "sibling_extra")
    job = write_job(outside / "jobs" / "greedy", "print('ran')\n", job={"jobId": "greedy"})
    (job / "link").symlink_to(wheel_dir / "hidden_pkg-1.0-py3-none-any.whl")
    for extra in (str(sibling), str(wheel_dir / "hidden_pkg-1.0-py3-none-any.whl"), "link"):
        spec = {"jobId": "greedy", "packageName": "app.py", "pythonEnv": {"local_extra_deps": [extra]}}
        (job / "job.json").write_text(json.dumps(spec))
        # The Reach rule refuses it first, with the sandbox on or off (docs/security.md, "Reach").
        for sandbox in ("bubblewrap", "off"):
            with pytest.raises(Exception, match=r"is outside the job folder|is a symbolic link"):
                run_lines(settings.override(sandbox=sandbox), job)
