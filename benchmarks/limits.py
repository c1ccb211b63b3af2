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


def _prefix_ms(rounds: int = 200) -> tuple[float, float]:
    """Median start of ``/bin/true`` without and with a run's prefix (enter the cgroups, prlimit), in
    ms, interleaved: what the limits add to each process start besides :func:`_setup_ms`."""
    from airflow_python_exec.isolation.limits import RunLimits

    limits = RunLimits(memory=512 << 20, cpu=1.0, pids=256, tmp=1 << 30, timeout=600.0)
    bare, wrapped = [], []
    try:
        for _ in range(rounds):
            for argv, into in ((["/bin/true"], bare), ([*limits.prefix(), "/bin/true"], wrapped)):
                started = time.perf_counter()
                subprocess.run(argv, check=True)
                into.append((time.perf_counter() - started) * 1000)
    finally:
        limits.close()
    return statistics.median(bare), statistics.median(wrapped)


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
    bare, wrapped = _prefix_ms()
    print(f"starting /bin/true: {bare:.2f} ms bare, {wrapped:.2f} ms through the limits' prefix (median of 200)")
    setup = _setup_ms()
    print(f"making and removing a run's cgroups/rlimits in-process: median {setup:.2f} ms ", end="")
    print(f"(target: +{TARGET_MS:.0f} ms", end=" ")
    print("for the whole warm start; entering the cgroup and prlimit add one exec each)")


if __name__ == "__main__":
    main()
