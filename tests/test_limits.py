"""Resource limits enforced by the real kernel (DESIGN.md, "Resource limits").

Each attack runs as a job author would write it (a memory hog, a fork bomb, a spinner, a ``/tmp``
filler, a daemon that leaves the run, a wheel whose module is an 8 MiB literal), with the sandbox on
and off, and once with cgroups (where this machine lets the worker make one) and once with the
rlimits fallback (``limits._backend`` emptied: what a worker without a writable cgroup gets).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import write_job
from wheels import write_wheel

from airflow_python_exec import EngineSettings, PythonExecutionService
from airflow_python_exec.isolation import limits
from airflow_python_exec.isolation.sandbox import unusable

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="cgroups and rlimits are Linux's")

_CGROUPS = limits.cgroup_parents() if sys.platform.startswith("linux") else {}
_FULL = all(c in _CGROUPS for c in limits.CONTROLLERS)
_BWRAP = unusable(network=True) if sys.platform.startswith("linux") else "not Linux"

HOG = """
chunks = []
while True:
    chunks.append(bytearray(16 << 20))
"""
CALM = """
import time
data = bytearray(32 << 20)
time.sleep(1.5)
print("done")
"""


@pytest.fixture(params=["cgroup", "rlimits"])
def mode(request, monkeypatch) -> str:
    """Where the limits come from: a cgroup per run, or rlimits only."""
    if request.param == "cgroup" and not _FULL:
        pytest.skip(f"no writable memory, pids and cpu cgroups here ({_CGROUPS})")
    if request.param == "rlimits":
        monkeypatch.setattr(limits, "_backend", {})
    return request.param


@pytest.fixture(params=["off", "bubblewrap"])
def sandbox(request) -> str:
    if request.param == "bubblewrap" and _BWRAP is not None:
        pytest.skip(f"bwrap cannot run here: {_BWRAP}")
    return request.param


@pytest.fixture
def engine(tmp_path: Path, sandbox: str) -> EngineSettings:
    return EngineSettings(install_path=sys.prefix, cache_dir=tmp_path / "cache", sandbox=sandbox)


def run(settings: EngineSettings, job: Path, on_line=None, **resources):
    lines: list[str] = []

    def collect(line: str) -> None:
        lines.append(line)
        if on_line is not None:
            on_line(line)

    result = PythonExecutionService(settings).run(
        job, on_line=collect, on_setup_line=lambda _l: None, resources=resources or None
    )
    return result, lines


def test_a_memory_hog_is_ended_at_its_limit_while_another_job_finishes(
    engine, mode: str, tmp_path: Path, caplog
) -> None:
    hog, calm = write_job(tmp_path / "hog", HOG), write_job(tmp_path / "calm", CALM)
    outcome: dict[str, object] = {}
    neighbour = threading.Thread(target=lambda: outcome.update(calm=run(engine, calm, memory="256Mi")))
    neighbour.start()
    with caplog.at_level(logging.INFO, logger="airflow_python_exec"):
        result, lines = run(engine, hog, memory="128Mi")
    neighbour.join()
    calm_result, calm_lines = outcome["calm"]
    assert (calm_result.exit_code, calm_lines) == (0, ["done"])
    if mode == "cgroup":
        assert result.exit_code == limits.LIMIT_EXIT_CODE
        assert result.limit.startswith("memory limit 128 MiB reached (the kernel killed ")
        assert f"job hog ended: {result.limit}" in caplog.text
    else:  # RLIMIT_AS: the hog's own allocation fails
        assert result.exit_code == 1 and lines[-1] == "MemoryError"


BOMB = """
import os, sys, time
print("bombing", flush=True)
parent, refused, deadline = os.getpid(), 0, time.monotonic() + 3
while time.monotonic() < deadline:
    try:
        os.fork()
    except OSError:
        refused += 1
        time.sleep(0.01)
if os.getpid() != parent:
    os._exit(0)
time.sleep(0.5)
sys.exit(3 if refused else 0)
"""


def test_a_fork_bomb_is_bounded_by_pids_and_the_worker_still_forks(engine, mode: str, tmp_path: Path) -> None:
    if mode == "rlimits":
        pytest.skip("without a cgroup there is no per-job process limit (documented: RLIMIT_NPROC spares root)")
    forked: list[int] = []
    job = write_job(tmp_path / "bomb", BOMB)

    def while_bombing(line: str) -> None:
        if line == "bombing":
            forked.append(subprocess.run(["true"], timeout=30).returncode)

    result, _ = run(engine, job, on_line=while_bombing, pids=64, timeout="60s")
    assert forked == [0]
    assert result.exit_code == limits.LIMIT_EXIT_CODE
    assert result.limit.startswith("pids limit 64 reached (")


SPIN = """
import os, time
start = time.monotonic()
while time.monotonic() - start < {wall}:
    pass
used = os.times()
print(f"{{(used.user + used.system) / {wall}:.3f}}")
"""


def test_a_spinner_gets_half_a_core(engine, mode: str, tmp_path: Path) -> None:
    """The spinner's own CPU time over 5 s of wall time (its rusage, not the test's clock)."""
    if mode == "cgroup":
        result, lines = run(engine, write_job(tmp_path / "spin", SPIN.format(wall=5)), cpu=0.5)
        assert result.exit_code == 0
        assert float(lines[-1]) <= 0.55
    else:  # rlimits: cpu x timeout CPU-seconds, then SIGXCPU
        result, _ = run(engine, write_job(tmp_path / "spin", SPIN.format(wall=60)), cpu=0.05, timeout="40s")
        assert result.exit_code == limits.LIMIT_EXIT_CODE
        assert result.limit == "cpu-time limit 2 s reached (cpu x timeout)"


FILL = """
import errno, os, tempfile
path, written = os.path.join(tempfile.gettempdir(), "fill-{name}.bin"), 0
try:
    with open(path, "wb") as f:
        for _ in range(64):
            f.write(b"x" * (1 << 20))
            f.flush()
            written += 1 << 20
    print("wrote all")
except OSError as exc:
    print(errno.errorcode[exc.errno], written)
finally:
    if os.path.exists(path):
        os.remove(path)
"""


def test_a_tmp_filler_is_stopped_at_tmp(engine, sandbox: str, mode: str, tmp_path: Path) -> None:
    result, lines = run(engine, write_job(tmp_path / "fill", FILL.format(name=os.getpid())), tmp="8Mi")
    code, written = lines[-1].split()
    # The sandbox's /tmp is a tmpfs of that size; without it, tmp bounds each file (RLIMIT_FSIZE).
    assert code == ("ENOSPC" if sandbox == "bubblewrap" else "EFBIG")
    assert int(written) <= 8 << 20
    assert result.exit_code == 0


DAEMON = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env={{"HOME": "/"}},
                         start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
open({pidfile!r}, "w").write(str(child.pid))
"""


def test_a_daemon_started_by_the_job_dies_with_the_runs_cgroup(tmp_path: Path) -> None:
    """A detached process with a hand-made environment (no run token) escapes the containment's
    sweep; its cgroup does not let it go."""
    if not _FULL:
        pytest.skip("no writable cgroups here")
    pidfile = tmp_path / "daemon.pid"
    settings = EngineSettings(install_path=sys.prefix, cache_dir=tmp_path / "cache")
    result, _ = run(settings, write_job(tmp_path / "daemon", DAEMON.format(pidfile=str(pidfile))), memory="256Mi")
    pid = int(pidfile.read_text())
    try:
        assert result.exit_code == 0
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_the_timeout_ends_the_run_and_names_itself(engine, tmp_path: Path) -> None:
    job = write_job(tmp_path / "sleepy", "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n")
    result, lines = run(engine, job, timeout="2s")
    assert lines == ["sleeping"]
    assert (result.exit_code, result.limit, result.stopped) == (limits.LIMIT_EXIT_CODE, "timeout 2 s reached", False)


def _bomb(tmp_path: Path, commas: int) -> tuple[Path, Path]:
    """Provision and run a job whose local extra ``bomb`` holds ``bomb_data.py``, one list literal of
    ``commas`` elements, under a 256 MiB memory limit; the run printed ``42`` (the package's other
    module). Returns ``site-packages`` and the bytecode store."""
    literal = "DATA = [" + "1," * commas + "]\n"
    wheel = write_wheel(tmp_path / "job" / "wheels", "bomb", extra_files={"bomb_data.py": literal.encode()})
    job = write_job(
        tmp_path / "job",
        "import bomb; print(bomb.VALUE)\n",
        job={"jobId": "extra", "pythonEnv": {"local_extra_deps": [str(wheel)]}, "resources": {"memory": "256Mi"}},
    )
    result, lines = run(EngineSettings(install_path=sys.prefix, cache_dir=tmp_path / "cache"), job)
    assert (result.exit_code, lines) == (0, ["42"])
    (site,) = (tmp_path / "cache" / "envs").glob("*/lib/python*/site-packages")
    assert not list(site.glob("__pycache__/bomb_data.*.pyc"))
    return site, tmp_path / "cache" / "bytecode"


def test_the_compile_bomb_of_a_local_extra_is_bounded(mode: str, tmp_path: Path) -> None:
    """An 8 MiB one-line literal in a wheel took the compile to 3.3 GiB: it is left uncompiled, the
    rest of the package is compiled, and the compile ran under the job's memory limit."""
    site, _ = _bomb(tmp_path, 4 << 20)
    assert (site / "bomb_data.py").stat().st_size > 8 << 20
    assert list(site.glob("__pycache__/bomb.*.pyc"))


def test_a_compile_ended_by_a_limit_stores_nothing_for_other_environments(mode: str, tmp_path: Path) -> None:
    """A module just under the compile's size cap (3.9 MiB of one literal) still takes the compile
    past the 256 MiB memory limit: the compile is ended, the job runs without that bytecode, and the
    bytecode store keeps no entry of the package (a later environment compiles it again, under its
    own limits, instead of linking an entry that lacks files for good)."""
    _, store = _bomb(tmp_path, 1950 << 10)
    assert not [p for p in store.glob("bomb-*") if p.is_dir()]


def test_the_start_line_and_the_facts_say_what_the_run_has(engine, sandbox: str, tmp_path: Path, caplog) -> None:
    job = write_job(tmp_path / "facts", "print('hi')\n", job={"jobId": "facts", "resources": {"pids": 256}})
    with caplog.at_level(logging.INFO, logger="airflow_python_exec"):
        result, _ = run(engine, job, memory="512Mi", cpu="1.5", tmp="1Gi")
    box = "sandbox bubblewrap, network on" if sandbox == "bubblewrap" else "sandbox off"
    version = ".".join(map(str, sys.version_info[:3]))
    assert f"(Python {version}, no environment; {box}; memory 512 MiB, cpu 1.5, pids 256, tmp 1 GiB)" in caplog.text
    assert result.facts["resources"]["memory_bytes"] == 512 << 20
    assert result.facts["resources"]["pids"] == 256
    assert result.facts["sandbox"]["mode"] == sandbox
    assert result.facts["environment"] is None


def test_an_environment_says_built_then_cache_hit(tmp_path: Path) -> None:
    wheel = write_wheel(tmp_path / "job" / "wheels", "tiny")
    job = write_job(
        tmp_path / "job", "import tiny\n", job={"jobId": "env", "pythonEnv": {"local_extra_deps": [str(wheel)]}}
    )
    settings = EngineSettings(install_path=sys.prefix, cache_dir=tmp_path / "cache")
    first, _ = run(settings, job)
    second, _ = run(settings, job)
    assert first.facts["environment"]["cache"] == "built"
    assert second.facts["environment"]["cache"] == "hit"
    assert second.facts["environment"]["packages"] == 1
    assert second.facts["environment"]["key"] == first.facts["environment"]["key"]


def test_no_cgroup_is_left_behind(tmp_path: Path) -> None:
    if not _FULL:
        pytest.skip("no writable cgroups here")
    before = {c: set(os.listdir(folder)) for c, (_, folder) in _CGROUPS.items()}
    own = Path("/proc/thread-self/cgroup").read_text()
    settings = EngineSettings(install_path=sys.prefix, cache_dir=tmp_path / "cache")
    run(settings, write_job(tmp_path / "hog", HOG), memory="64Mi", pids=32, cpu=1)
    assert {c: set(os.listdir(folder)) for c, (_, folder) in _CGROUPS.items()} == before
    assert Path("/proc/thread-self/cgroup").read_text() == own  # the starting thread went back home


INSIDE = """
import sys, time
print([line.split(":")[2] for line in open("/proc/self/cgroup").read().splitlines() if ":memory:" in line][0])
sys.stdout.flush()
time.sleep(1)
print("done")
"""


def test_no_thread_of_the_worker_stays_in_the_runs_cgroup_while_the_job_runs(tmp_path: Path) -> None:
    """The thread that starts the script joins the run's cgroups for the start and leaves them right
    after: while the job runs, its cgroup holds the job's processes, none of the worker's."""
    if not _FULL or _CGROUPS["memory"][0] != 1:
        pytest.skip("no writable cgroup v1 hierarchies here")
    settings = EngineSettings(install_path=sys.prefix, cache_dir=tmp_path / "cache")
    seen: dict[str, set[str]] = {}
    mount = Path(limits._cgroup_mounts()["memory"])

    def look(line: str) -> None:
        if line.startswith("/"):  # the job's own memory cgroup, read while the job sleeps
            seen["tasks"] = set((mount / line.lstrip("/") / "tasks").read_text().split())

    result, lines = run(settings, write_job(tmp_path / "inside", INSIDE), on_line=look, memory="256Mi")
    assert result.exit_code == 0 and lines[-1] == "done"  # the job outlived the start (no parent-death signal)
    assert "python_exec-" in lines[0]
    assert seen["tasks"] and not seen["tasks"] & set(os.listdir("/proc/self/task"))
