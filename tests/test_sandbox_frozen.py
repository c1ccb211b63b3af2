"""A run ends within seconds of its script's end, whatever the job did to the sandbox's own processes
(DESIGN.md "Containment and sandbox"), as an attacker would try it: the script stops the sandbox's
pid 1 (bwrap's init, which must reap the script for bwrap to learn it ended) with ``ptrace``, or
with SIGSTOP, then exits; with a tracer left running or not.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from conftest import write_job
from test_sandbox import members, requires_bwrap

from airflow_python_exec import PythonExecutionService

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="bubblewrap is Linux-only")

#: The sandbox's pid 1 stopped by ``ptrace`` (PTRACE_ATTACH), by the script itself or by a child
#: that stays, then the script exits with status 5.
FREEZER = """
import ctypes, os, signal, sys, time

libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH = 16


def freeze():
    if os.environ["HOW"] == "sigstop":
        os.kill(1, signal.SIGSTOP)
    elif libc.ptrace(PTRACE_ATTACH, 1, 0, 0) != 0:
        print("ptrace refused", ctypes.get_errno(), flush=True)


open("ns", "w").write(os.readlink("/proc/self/ns/pid"))
if os.environ["WHO"] == "child":
    if os.fork() == 0:
        os.setsid()
        freeze()
        time.sleep(600)  # the tracer stays: pid 1 stays traced and stopped
    time.sleep(0.5)
else:
    freeze()
    time.sleep(0.2)
state = open("/proc/1/stat").read().rsplit(")", 1)[1].split()[0]
print("pid 1 state", state, flush=True)
print("script exits", flush=True)
sys.exit(5)
"""


@requires_bwrap
@pytest.mark.parametrize("how, who", [("ptrace", "script"), ("ptrace", "child"), ("sigstop", "script")])
def test_a_frozen_sandbox_pid_1_does_not_hold_the_run(settings, job_dir: Path, how: str, who: str) -> None:
    write_job(job_dir, FREEZER)
    ended_at: list[float] = []

    def on_line(line: str) -> None:
        lines.append(line)
        if line == "script exits":
            ended_at.append(time.monotonic())

    lines: list[str] = []
    service = PythonExecutionService(
        settings.override(sandbox="bubblewrap", sandbox_writable_paths=[job_dir]), stop_grace_s=2
    )
    result = service.run(job_dir, on_line=on_line, on_setup_line=lambda _l: None, macros={"HOW": how, "WHO": who})
    finished = time.monotonic()
    assert "script exits" in lines, lines
    assert result.exit_code == 5, lines  # the script's own status, not the SIGKILL of bwrap
    assert finished - ended_at[0] < 5.0, f"the run ended {finished - ended_at[0]:.1f} s after its script"
    namespace = (job_dir / "ns").read_text()
    assert namespace != os.readlink("/proc/self/ns/pid")
    assert members({namespace}, timeout=2) == []
