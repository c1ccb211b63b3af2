"""PythonExecutionService: output streaming, exit codes, and stopping a whole process group."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from conftest import process_gone, write_job

from airflow_python_exec import PythonExecutionService
from airflow_python_exec.isolation.process import MAX_LINE_CHARS


def _wait_for(path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def test_exit_code_and_duration(settings, job_dir: Path) -> None:
    write_job(job_dir, "import time, sys\ntime.sleep(0.2)\nsys.exit(7)\n")
    result = PythonExecutionService(settings).run(job_dir)
    assert result.exit_code == 7
    assert 0.2 <= result.duration_s < 10
    assert not result.stopped


def test_signal_death_is_128_plus_signal(settings, job_dir: Path) -> None:
    write_job(job_dir, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert PythonExecutionService(settings).run(job_dir).exit_code == 128 + signal.SIGKILL


def test_stdout_and_stderr_are_merged_in_order(settings, job_dir: Path) -> None:
    write_job(job_dir, "import sys\nprint('out 1')\nprint('err 2', file=sys.stderr)\nprint('out 3')\n")
    lines: list[str] = []
    result = PythonExecutionService(settings).run(job_dir, on_line=lines.append)
    assert lines == ["out 1", "err 2", "out 3"]
    assert result.last_line == "out 3"


def test_lines_arrive_while_the_script_runs(settings, job_dir: Path) -> None:
    """The script waits until the caller has seen its first line: buffering till exit would fail it."""
    write_job(
        job_dir,
        """
        import os, sys, time
        print("first")
        for _ in range(500):
            if os.path.exists("seen"):
                print("second"); sys.exit(0)
            time.sleep(0.02)
        sys.exit(1)
    """,
    )

    def on_line(line: str) -> None:
        if line == "first":
            (job_dir / "seen").write_text("1")

    assert PythonExecutionService(settings).run(job_dir, on_line=on_line).exit_code == 0


def test_invalid_utf8_is_replaced_and_crlf_trimmed(settings, job_dir: Path) -> None:
    write_job(job_dir, "import sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe end\\r\\nnext')\n")
    lines: list[str] = []
    assert PythonExecutionService(settings).run(job_dir, on_line=lines.append).exit_code == 0
    assert lines == ["ok \ufffd\ufffd end", "next"]


def test_long_output_without_newline_comes_through_in_pieces_with_bounded_memory(settings, job_dir: Path) -> None:
    size = 16 * 1024 * 1024
    write_job(job_dir, f"import sys\nfor _ in range({size // 65536}):\n    sys.stdout.write('x' * 65536)\n")
    lengths: list[int] = []
    tracemalloc.start()
    try:
        PythonExecutionService(settings).run(job_dir, on_line=lambda line: lengths.append(len(line)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(lengths) == size
    assert max(lengths) <= MAX_LINE_CHARS
    assert peak < size / 8  # a few chunks, never the whole output


def test_stop_ends_the_script_and_the_child_it_started(settings, job_dir: Path) -> None:
    write_job(
        job_dir,
        """
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open("pids.tmp", "w") as f:
            f.write(f"{os.getpid()} {child.pid}")
        os.rename("pids.tmp", "pids")
        time.sleep(600)
    """,
    )
    service = PythonExecutionService(settings)
    threading.Thread(target=lambda: (_wait_for(job_dir / "pids"), service.stop()), daemon=True).start()
    started = time.monotonic()
    result = service.run(job_dir)
    assert result.stopped and result.exit_code == 128 + signal.SIGTERM
    assert time.monotonic() - started < 30
    pids = [int(p) for p in (job_dir / "pids").read_text().split()]
    assert all(process_gone(p) for p in pids)


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(settings, job_dir: Path) -> None:
    write_job(
        job_dir,
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open("ready", "w").write("1")
        time.sleep(600)
    """,
    )
    service = PythonExecutionService(settings, stop_grace_s=0.5)
    threading.Thread(target=lambda: (_wait_for(job_dir / "ready"), service.stop()), daemon=True).start()
    result = service.run(job_dir)
    assert result.exit_code == 128 + signal.SIGKILL
    assert result.stopped


def test_background_child_left_behind_is_ended_with_the_script(settings, job_dir: Path) -> None:
    """A child still holding the output pipe must not keep the task running after the script exits."""
    write_job(
        job_dir,
        """
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open("child", "w").write(str(child.pid))
        print("script done")
    """,
    )
    started = time.monotonic()
    result = PythonExecutionService(settings).run(job_dir)
    assert result.exit_code == 0 and result.last_line == "script done"
    assert time.monotonic() - started < 15
    pid = int((job_dir / "child").read_text())
    assert process_gone(pid)


def test_stop_before_run_starts_nothing(settings, job_dir: Path) -> None:
    write_job(job_dir, "open('started', 'w')\n")
    service = PythonExecutionService(settings)
    service.stop()
    result = service.run(job_dir)
    assert result.stopped and not (job_dir / "started").exists()
    service.close()
    assert service.run(job_dir).exit_code == 0 and (job_dir / "started").exists()


def test_interrupted_reader_kills_the_group(settings, job_dir: Path) -> None:
    """An exception in the caller (Airflow's execution_timeout) must not leave the script running."""
    write_job(
        job_dir,
        """
        import os, time
        print(os.getpid(), flush=True)
        time.sleep(600)
    """,
    )
    pids: list[int] = []

    def on_line(line: str) -> None:
        pids.append(int(line))
        raise TimeoutError("task timed out")

    with pytest.raises(TimeoutError):
        PythonExecutionService(settings, stop_grace_s=1).run(job_dir, on_line=on_line)
    assert process_gone(pids[0])


def test_no_file_descriptor_leak_across_runs(settings, job_dir: Path) -> None:
    write_job(job_dir, "print('x')\n")
    service = PythonExecutionService(settings)
    service.run(job_dir)
    before = len(os.listdir("/proc/self/fd")) if sys.platform == "linux" else 0
    for _ in range(20):
        service.run(job_dir)
    after = len(os.listdir("/proc/self/fd")) if sys.platform == "linux" else 0
    assert after <= before


def test_secret_straddling_a_long_line_cut_is_still_masked(settings, job_dir: Path, fernet_key) -> None:
    from airflow_python_exec.crypto import encrypt

    secret = "SUPERSECRETVALUE-0123456789"
    write_job(
        job_dir,
        f"""
        import os, sys
        for offset in range(1, len(os.environ["S"])):
            sys.stdout.write("a" * ({MAX_LINE_CHARS} - offset) + os.environ["S"] + "b" * 10)
        sys.stdout.write("\\n")
    """,
    )
    lines: list[str] = []
    token = encrypt(secret, [fernet_key])
    PythonExecutionService(settings).run(
        job_dir, on_line=lines.append, macros=[{"key": "S", "value": token, "secure": True}]
    )
    text = "".join(lines)
    assert text.count("***") == len(secret) - 1
    assert "SUPERSEC" not in text and "0123456789" not in text


def test_last_line_without_newline_survives_a_pipe_held_outside_the_group(settings, job_dir: Path) -> None:
    write_job(
        job_dir,
        """
        import subprocess, sys
        subprocess.Popen(["sleep", "4"], start_new_session=True)  # escapes the group, keeps our stdout
        print("first")
        sys.stdout.write("tail without newline")
    """,
    )
    lines: list[str] = []
    result = PythonExecutionService(settings).run(job_dir, on_line=lines.append)
    assert lines == ["first", "tail without newline"]
    assert result.last_line == "tail without newline" and result.duration_s < 4


def test_a_script_that_cannot_start_is_a_one_line_refusal(settings, job_dir: Path) -> None:
    from airflow_python_exec.errors import PythonExecError

    write_job(job_dir, "print('x')\n")
    os.chmod(job_dir, 0o755)
    big = {"BIG": "x" * 3_000_000}  # larger than the kernel's limit for one environment string
    with pytest.raises(PythonExecError, match="could not start") as info:
        PythonExecutionService(settings).run(job_dir, macros=big)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("secret", ["Pa55\\w0rd-2026", "tab\there", 'it\'s "quoted"', "zero\u200bwidth", "ünïcode"])
def test_secrets_are_masked_in_their_repr_and_json_forms(settings, job_dir: Path, fernet_key, secret) -> None:
    """A script rarely prints a secret bare: in a dict, an exception or a JSON document it comes out
    escaped, and the escaped text is what must not reach the log."""
    from airflow_python_exec.crypto import encrypt

    write_job(
        job_dir,
        """
        import json, os
        secret = os.environ["S"]
        print({"password": secret})
        print(json.dumps({"password": secret}))
        print(json.dumps({"password": secret}, ensure_ascii=False))
        raise KeyError(secret)
    """,
    )
    lines: list[str] = []
    token = encrypt(secret, [fernet_key])
    result = PythonExecutionService(settings).run(
        job_dir, on_line=lines.append, macros=[{"key": "S", "value": token, "secure": True}]
    )
    text = "\n".join(lines)
    assert result.exit_code == 1 and "KeyError" in text
    escaped = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    assert [form for form in escaped if form in text] == []
    assert text.count("***") >= 4
