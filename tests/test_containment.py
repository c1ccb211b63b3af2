"""A run ends when its script ends, and nothing it started outlives it (DESIGN.md "Containment").

Each test's script leaves behind what a misbehaving script leaves on a shared worker: a writer in
its own session that never stops printing, and a double-forked ``setsid`` daemon whose environment
is empty (so it carries no trace of the run). Every path that ends a run is tried: the script
exits, ``stop()``, SIGTERM to the CLI, ``on_kill``; ``execution_timeout`` is in test_airflow.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import CLI, cli_env, write_job

from airflow_python_exec import PythonExecutionService
from airflow_python_exec.isolation.process import DRAIN_S

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="child subreaper is Linux-only")

#: Writes the pids of a detached writer and of a setsid daemon to ``pids``, prints ``ready``, then
#: does what ``{then}`` says.
ESCAPING = """
import os, subprocess, sys, time
writer = subprocess.Popen(
    [sys.executable, "-c", "import os, time\\nwhile True:\\n os.write(1, b'tick\\\\n')\\n time.sleep(0.05)"],
    start_new_session=True,
)
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    daemon = os.fork()
    if daemon == 0:
        os.execve(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)"], {{}})
    os.write(w, str(daemon).encode())
    os._exit(0)
daemon = int(os.read(r, 32))
open("pids", "w").write(f"{{writer.pid}} {{daemon}}")
# One write() each: Python -u writes print()'s text and its newline separately, which the writer
# could come between.
os.write(1, b"ready\\n")
{then}
"""


def escaping_job(job_dir: Path, then: str) -> Path:
    return write_job(job_dir, ESCAPING.format(then=then))


def left_behind(job_dir: Path) -> list[int]:
    """The job's leftover pids that still exist (as a process or an unreaped zombie)."""
    pids = [int(p) for p in (job_dir / "pids").read_text().split()]
    return [pid for pid in pids if psutil.pid_exists(pid)]


def test_script_exit_ends_the_run_and_everything_it_left(settings, job_dir: Path) -> None:
    escaping_job(job_dir, then="print('bye')")
    started = time.monotonic()
    result = PythonExecutionService(settings).run(job_dir)
    assert result.exit_code == 0
    assert time.monotonic() - started < DRAIN_S + 5
    assert left_behind(job_dir) == []


def test_stop_ends_every_descendant(settings, job_dir: Path) -> None:
    escaping_job(job_dir, then="time.sleep(600)")
    service = PythonExecutionService(settings, stop_grace_s=2)
    lines: list[str] = []

    def on_line(line: str) -> None:
        lines.append(line)
        if line == "ready":
            threading.Thread(target=service.stop).start()

    result = service.run(job_dir, on_line=on_line)
    assert result.stopped and result.exit_code == 128 + signal.SIGTERM
    assert left_behind(job_dir) == []


def test_no_busy_loop_while_a_stopped_script_ignores_sigterm(settings, job_dir: Path) -> None:
    escaping_job(
        job_dir,
        then="""
import signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
os.write(1, b"ignoring SIGTERM\\n")
time.sleep(600)
""",
    )
    service = PythonExecutionService(settings, stop_grace_s=2)
    cpu: list[float] = []

    def on_line(line: str) -> None:
        if line == "ignoring SIGTERM":
            cpu.append(time.process_time())
            service.stop()

    result = service.run(job_dir, on_line=on_line)
    cpu_s = time.process_time() - cpu[0]
    assert result.exit_code == 128 + signal.SIGKILL
    # Two seconds of grace, then SIGKILL: a reader spinning on select() would burn about as much CPU.
    assert cpu_s < 1.0, f"{cpu_s:.2f} s of CPU while waiting"
    assert left_behind(job_dir) == []


def test_drain_is_bounded_whatever_keeps_writing(settings, job_dir: Path, tmp_path: Path) -> None:
    """A process out of the run's reach (here: started by the test itself, before the run) that got
    hold of the script's stdout and writes forever cannot keep the run alive past DRAIN_S."""
    sock_path = tmp_path / "fd.sock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"""
import socket, time, os
server = socket.socket(socket.AF_UNIX); server.bind({str(sock_path)!r}); server.listen(1)
conn, _ = server.accept()
_, fds, _, _ = socket.recv_fds(conn, 16, 1)
while True:
    os.write(fds[0], b"still writing\\n"); time.sleep(0.01)
""",
        ]
    )
    try:
        while not sock_path.exists():
            time.sleep(0.01)
        write_job(
            job_dir,
            f"""
            import socket
            s = socket.socket(socket.AF_UNIX); s.connect({str(sock_path)!r})
            socket.send_fds(s, [b"x"], [1])
            print("handed over", flush=True)
        """,
        )
        started = time.monotonic()
        result = PythonExecutionService(settings).run(job_dir)
        elapsed = time.monotonic() - started
        assert result.exit_code == 0
        assert elapsed < DRAIN_S + 8, f"run took {elapsed:.1f} s"  # not forever: the writer never stops
        assert holder.poll() is None  # not ours to kill
    finally:
        holder.kill()
        holder.wait()


def test_sigterm_to_the_cli_ends_every_descendant(job_dir: Path, tmp_path: Path) -> None:
    escaping_job(job_dir, then="time.sleep(600)")
    cli = subprocess.Popen(
        [CLI, "run", str(job_dir)],
        env=cli_env(cache_dir=str(tmp_path / "cache")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert cli.stdout is not None
    try:
        for line in cli.stdout:
            if line.strip() == "ready":
                break
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=30) == 143
    finally:
        if cli.poll() is None:  # a failed test must not leave the CLI and its job running
            cli.send_signal(signal.SIGTERM)
            cli.wait(timeout=30)
    assert left_behind(job_dir) == []


def test_on_kill_ends_every_descendant_outside_a_dag(settings, job_dir: Path, monkeypatch) -> None:
    """Airflow's cancel calls ``on_kill`` from its SIGTERM handler while ``execute`` runs; the
    operator also works called directly, with an absolute job path and no DAG."""
    from airflow.providers.common.compat.sdk import AirflowException

    from airflow_python_exec import PythonJobOperator

    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__INSTALL_PATH", settings.install_path)
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__CACHE_DIR", str(settings.cache_dir))
    escaping_job(job_dir, then="time.sleep(600)")
    op = PythonJobOperator(task_id="cancel_me", job=str(job_dir))
    errors: list[BaseException] = []

    def execute() -> None:
        try:
            op.execute(context={})
        except BaseException as exc:  # noqa: BLE001 - the thread reports what ended it
            errors.append(exc)

    thread = threading.Thread(target=execute)
    thread.start()
    deadline = time.monotonic() + 30
    while not (job_dir / "pids").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    op.on_kill()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], AirflowException)
    assert "143" in str(errors[0])
    assert left_behind(job_dir) == []


def test_a_forged_run_id_or_a_fork_loop_does_not_escape(settings, job_dir: Path) -> None:
    """Found in review: a daemon claiming another (non-existent) run's id was left alone, and a
    process forking in a loop outran a sweep that killed what it had seen. Later, about 1 run in 8:
    the sweep ended once the loop's last zombie was reaped, before the child it had just forked
    was seen; an escaped loop then filled the machine's process table with zombies."""
    write_job(
        job_dir,
        """
        import os, sys
        if os.fork() == 0:
            os.setsid()
            os.execve(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)"],
                      {"PYTHON_EXEC_RUN_ID": "forged"})
        if os.fork() == 0:
            os.setsid()
            while True:  # the pid moves on every iteration
                if os.fork():
                    os._exit(0)
        print("started", flush=True)
    """,
    )
    for _ in range(5):  # the escape was a race: give it several chances
        assert PythonExecutionService(settings).run(job_dir).exit_code == 0
        # A loop still running hands us (the subreaper) a new zombie on every turn; a scan of the
        # process table would miss it, its pid moving faster than the scan.
        before = {p.pid for p in psutil.Process().children()}
        time.sleep(0.3)
        assert [p.pid for p in psutil.Process().children() if p.pid not in before] == []
    assert not [p for p in psutil.process_iter(["cmdline"]) if "sleep(600)" in " ".join(p.info["cmdline"] or [])]


def test_another_threads_subprocess_is_left_alone(settings, job_dir: Path) -> None:
    """Code of the worker's own (another thread) may start processes while a job runs: they are not
    the job's, and neither killed nor reaped by the job's end."""
    write_job(job_dir, "import time\ntime.sleep(0.5)\nprint('done')\n")
    own: list[subprocess.Popen] = []

    def start_own() -> None:
        time.sleep(0.2)
        own.append(subprocess.Popen(["sleep", "2"]))

    thread = threading.Thread(target=start_own)
    thread.start()
    assert PythonExecutionService(settings).run(job_dir).exit_code == 0
    thread.join()
    assert own[0].poll() is None  # still running
    assert own[0].wait(timeout=10) == 0  # and its exit status is its owner's to collect


def test_concurrent_runs_in_one_process_never_end_each_other(settings, job_dir: Path) -> None:
    """A run ending while another is being started must not take the newcomer's fresh script for one
    of its own leftovers: with the live runs read before the children, a run starting in between was
    missing from them, its script's token looked forged, and it was SIGKILLed (exit 137) in about 1
    test run in 10."""
    from concurrent.futures import ThreadPoolExecutor

    write_job(job_dir, "print('ok')\n")

    def runs(_: int) -> list[int]:
        service = PythonExecutionService(settings)
        return [service.run(job_dir, on_setup_line=lambda line: None).exit_code for _ in range(30)]

    with ThreadPoolExecutor(4) as pool:
        codes = [code for batch in pool.map(runs, range(4)) for code in batch]
    assert codes == [0] * 120
