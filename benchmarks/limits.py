"""The cost of resource limits on a warm start: ``airflow-python-exec run`` of a cached job (the
``hello`` example, its environment provisioned by ``make example-envs``) with limits on
(``--memory 512Mi --cpu 1 --pids 256 --tmp 1Gi --timeout 10m``: a cgroup per run where this worker
may make one, else rlimits) against the same run without limits, in pairs, the order alternating
within each pair. Target: the median of the pairs' differences at most +3 ms.

    python benchmarks/limits.py [--pairs 40] [--sandbox off|bubblewrap]   (make bench runs it)

Prints the mechanism in force (cgroup v2, v1 or rlimits), the machine's load average before and
after, each side's median and the paired difference's median and quartiles.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LIMITS = ["--memory", "512Mi", "--cpu", "1", "--pids", "256", "--tmp", "1Gi", "--timeout", "10m"]
TARGET_MS = 3.0


def _wall(argv: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system of the command and every process it waited for), in s."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _setup_ms(rounds: int = 200) -> float:
    """Median time to make a run's cgroups (or rlimits) and remove them, in this process, in ms."""
    from airflow_python_exec.isolation.limits import RunLimits

    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        RunLimits(memory=512 << 20, cpu=1.0, pids=256, tmp=1 << 30, timeout=600.0).close()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _start_ms(rounds: int = 200) -> dict[str, float]:
    """Median start of ``/bin/true`` (``Popen`` to exit), interleaved: bare; born in a run's
    cgroups (memory, pids, cpu: no extra program under v1); and with ``tmp`` too, which without a
    sandbox adds ``prlimit`` (one exec). In ms."""
    from airflow_python_exec.isolation.limits import RunLimits

    cgroups = RunLimits(memory=512 << 20, cpu=1.0, pids=256)
    with_tmp = RunLimits(memory=512 << 20, cpu=1.0, pids=256, tmp=1 << 30)
    times: dict[str, list[float]] = {"bare": [], "in the run's cgroups": [], "and tmp (prlimit)": []}
    cases = list(zip(times, (None, cgroups, with_tmp), strict=True))
    try:
        for _ in range(rounds):
            for name, limits in cases:
                started = time.perf_counter()
                with limits.entered() if limits else contextlib.nullcontext():
                    process = subprocess.Popen([*(limits.prefix() if limits else ()), "/bin/true"])
                process.wait()
                times[name].append((time.perf_counter() - started) * 1000)
    finally:
        cgroups.close()
        with_tmp.close()
    return {name: statistics.median(values) for name, values in times.items()}


def _service_ms(pairs: int, sandbox: str) -> dict[str, list[float]]:
    """Warm start of the cached ``hello`` job in this process, a new ``PythonExecutionService`` per
    run (as a task does), interleaved: no limits; memory and pids; memory, pids and cpu. In ms."""
    from airflow_python_exec import EngineSettings, PythonExecutionService

    settings = EngineSettings.from_airflow_config(sandbox=sandbox)
    job = REPO / "example_dags" / "jobs" / "hello"
    cases = {"no limits": None, "memory, pids": {"memory": "512Mi", "pids": 256}}
    cases["memory, pids, cpu"] = {"memory": "512Mi", "pids": 256, "cpu": 1}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(pairs + 2):
        order = list(cases) if i % 2 else list(reversed(cases))
        for name in order:
            started = time.perf_counter()
            PythonExecutionService(settings).run(
                job, on_line=lambda _l: None, on_setup_line=lambda _l: None, resources=cases[name]
            )
            if i >= 2:  # two rounds of warm-up
                times[name].append((time.perf_counter() - started) * 1000)
    return times


def _paired(off: list[float], on: list[float]) -> str:
    diffs = [(b - a) * 1000 for a, b in zip(off, on, strict=True)]
    q1, median, q3 = statistics.quantiles(diffs, n=4)
    return f"median {median:+.1f} ms (quartiles {q1:+.1f} / {q3:+.1f} ms)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--sandbox", default="off", choices=("off", "bubblewrap"))
    args = parser.parse_args()
    from airflow_python_exec.isolation.limits import RunLimits

    exe = str(Path(sys.executable).parent / "airflow-python-exec")
    plain = [exe, "run", str(REPO / "example_dags" / "jobs" / "hello"), "--sandbox", args.sandbox]
    limited = [*plain, *LIMITS]
    probe = RunLimits(memory=512 << 20, cpu=1.0, pids=256, tmp=1 << 30, timeout=600.0)
    mechanism = probe.enforced_by
    probe.close()
    for argv in (plain, limited, plain, limited):  # warm-up: page cache, .pyc files, the environment
        _wall(argv)
    load_before = os.getloadavg()
    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    for i in range(args.pairs):
        if i % 2:
            on.append(_wall(limited))
            off.append(_wall(plain))
        else:
            off.append(_wall(plain))
            on.append(_wall(limited))
    load_after = os.getloadavg()
    print(f"\nResource limits on a warm start: {args.pairs} interleaved pairs of `run hello`, sandbox {args.sandbox}")
    print(
        f"limits enforced by: {mechanism}; {os.cpu_count()} cores; load average {load_before[0]:.2f} before, ", end=""
    )
    print(f"{load_after[0]:.2f} after")
    for what, index in (("wall time", 0), ("CPU time (command and its children)", 1)):
        plain_s, limited_s = [t[index] for t in off], [t[index] for t in on]
        print(f"{what}: without limits {statistics.median(plain_s) * 1000:.1f} ms, with limits ", end="")
        print(f"{statistics.median(limited_s) * 1000:.1f} ms; paired difference {_paired(plain_s, limited_s)}")
    service = _service_ms(args.pairs, args.sandbox)
    print(f"in-process warm start, new service per run ({args.pairs} interleaved rounds): ", end="")
    print(f"no limits {statistics.median(service['no limits']):.1f} ms", end="")
    for name in ("memory, pids", "memory, pids, cpu"):
        diffs = [b - a for a, b in zip(service["no limits"], service[name], strict=True)]
        print(f"; {name}: paired difference median {statistics.median(diffs):+.2f} ms", end="")
    print()
    starts = ", ".join(f"{name} {ms:.2f} ms" for name, ms in _start_ms().items())
    print(f"starting /bin/true (median of 200 interleaved): {starts}")
    setup = _setup_ms()
    print(f"making and removing a run's cgroups/rlimits in-process: median {setup:.2f} ms ", end="")
    print(f"(target: +{TARGET_MS:.0f} ms", end=" ")
    print("for the whole warm start)")


if __name__ == "__main__":
    main()
