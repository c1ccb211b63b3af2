"""Benchmarks of airflow-python-exec, each figure printed next to a baseline measured in the same run.

    python benchmarks/run.py [streaming ...]      (make bench)

streaming: 1,000,000 output lines through PythonExecutionHook (the service plus task-log writes)
and through the bare service, against Airflow's own SubprocessHook streaming the same lines. Each
measurement runs in a fresh process so its peak memory is its own; every logged line goes through a
real logging handler (to /dev/null) for both hooks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LINES = 1_000_000
PRODUCER = (
    "import sys\n"
    "w = sys.stdout.write\n"
    f"for i in range({LINES}):\n"
    "    w(f'benchmark output line {i} with some ordinary log text after it\\n')\n"
)


def _reset_peak() -> None:
    """Reset this process's peak RSS (Linux: clear_refs 5), so the peak is the run's own."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _rss_kib(field: str = "VmHWM") -> int:
    """Peak (VmHWM) or current (VmRSS) resident memory of this process, KiB."""
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(field)).split()[1])


def _log_to_devnull() -> None:
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives for the process
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def _measure_stream(kind: str, job: Path) -> dict:
    """Run inside a fresh process: stream the producer's lines with ``kind``; report rate and memory."""
    _log_to_devnull()
    from airflow_python_exec import EngineSettings, PythonExecutionService

    settings = EngineSettings(install_path=sys.base_prefix, cache_dir=job.parent / "cache")
    count = 0
    if kind == "SubprocessHook (Airflow)":
        from airflow.providers.standard.hooks.subprocess import SubprocessHook

        hook = SubprocessHook()
        _reset_peak()
        before, started = _rss_kib("VmRSS"), time.perf_counter()
        result = hook.run_command([sys.executable, str(job / "app.py")], cwd=str(job))
        elapsed = time.perf_counter() - started
        count, code = LINES, result.exit_code
    elif kind == "PythonExecutionHook":
        from airflow_python_exec.hooks.python_exec import PythonExecutionHook

        hook = PythonExecutionHook(settings=settings)
        hook.service.init()
        _reset_peak()
        before, started = _rss_kib("VmRSS"), time.perf_counter()
        result = hook.run_job(job)
        elapsed = time.perf_counter() - started
        count, code = LINES, result.exit_code
    else:
        service = PythonExecutionService(settings)
        service.init()

        def on_line(_line: str) -> None:
            nonlocal count
            count += 1

        _reset_peak()
        before, started = _rss_kib("VmRSS"), time.perf_counter()
        code = service.run(job, on_line=on_line).exit_code
        elapsed = time.perf_counter() - started
    assert code == 0 and count == LINES, (code, count)
    return {"kind": kind, "seconds": elapsed, "lines_per_s": LINES / elapsed,
            "peak_rss_mib": _rss_kib() / 1024, "growth_mib": (_rss_kib() - before) / 1024}


def streaming(workdir: Path) -> None:
    job = workdir / "stream_job"
    job.mkdir()
    (job / "app.py").write_text(PRODUCER)
    kinds = ["SubprocessHook (Airflow)", "PythonExecutionHook", "PythonExecutionService (on_line only)"]
    rows = []
    for kind in kinds:
        out = subprocess.run([sys.executable, __file__, "_stream", kind, str(job)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]
    print(f"\nStreaming {LINES:,} lines (baseline: {base['kind']}, same run)")
    print(f"{'consumer':<40}{'lines/s':>12}{'vs base':>9}{'peak RSS MiB':>14}{'growth MiB':>12}")
    for row in rows:
        print(f"{row['kind']:<40}{row['lines_per_s']:>12,.0f}{row['lines_per_s'] / base['lines_per_s']:>8.2f}x"
              f"{row['peak_rss_mib']:>14.1f}{row['growth_mib']:>12.1f}")


SECTIONS = {"streaming": streaming}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_stream":
        print(json.dumps(_measure_stream(sys.argv[2], Path(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="*", choices=[*SECTIONS, []][0:len(SECTIONS)] or None,
                        help=f"which to run (default all): {', '.join(SECTIONS)}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ape-bench-") as tmp:
        for name in args.sections or SECTIONS:
            SECTIONS[name](Path(tmp))


if __name__ == "__main__":
    main()
