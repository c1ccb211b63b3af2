"""Warm start of one task, this checkout against another copy of the package, paired and interleaved.

    python benchmarks/warm_start.py --base /path/to/other/checkout [--pairs 20] [--runs 8]

What is timed: ``PythonJobOperator.execute`` of a job whose environment is cached (the hello
example: a lock file, a plain and a ``secure`` job.json macro, one per-run macro, its output into
the task log), from the operator to the script's exit and its result read. Each side runs in a
fresh process (one untimed run first, then ``--runs`` timed ones, their median); the two sides
alternate within each pair (ABBA order), so the machine's load falls on both alike. Two figures per
run: its wall time, and the CPU time of the task's own process (``time.process_time``: the
provider's work, without the script's process; it moves far less with the machine's load). Printed:
each side's median over the pairs, the median of the per-pair differences (this checkout minus the
base; negative: faster) and in how many pairs this checkout was faster.

``--base`` is a folder holding another ``airflow_python_exec`` package (e.g. ``git archive main
airflow_python_exec | tar -x -C /tmp/base``); it is put first on ``PYTHONPATH`` for its side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HELLO = REPO / "example_dags" / "jobs" / "hello"
FERNET_KEY = (REPO / "example_dags" / "demo_fernet.key").read_text().strip()


def _side(runs: int) -> None:
    """In a fresh process: one untimed run, then ``runs`` timed ones; print their times (s) as JSON."""
    import logging

    logging.disable(logging.CRITICAL)  # the task log's writes are the same on both sides
    from airflow_python_exec import __file__ as package
    from airflow_python_exec.operators.python_job import PythonJobOperator

    times, cpu = [], []
    for i in range(runs + 1):
        task = PythonJobOperator(task_id=f"warm_{i}", job=os.environ["BENCH_JOB"], macros={"RUN_ID": str(i)})
        started, started_cpu = time.perf_counter(), time.process_time()
        task.execute({})
        if i:
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
    print(json.dumps({"package": package, "times": times, "cpu": cpu}))


def _measure(pythonpath: str | None, env: dict[str, str], runs: int) -> tuple[dict[str, float], str]:
    side_env = dict(env)
    if pythonpath:
        side_env["PYTHONPATH"] = pythonpath
    out = subprocess.run(
        [sys.executable, __file__, "_side", str(runs)], env=side_env, capture_output=True, text=True, check=True
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    return {"wall": statistics.median(row["times"]), "cpu": statistics.median(row["cpu"])}, row["package"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="folder holding the other airflow_python_exec package")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "hello"
        shutil.copytree(HELLO, job)
        env = {
            **os.environ,
            "BENCH_JOB": str(job),
            "AIRFLOW__PYTHON_EXEC__CACHE_DIR": str(Path(tmp) / "cache"),
            "AIRFLOW__PYTHON_EXEC__FERNET_KEY": FERNET_KEY,
        }
        env.pop("PYTHONPATH", None)
        _measure(None, env, 1)  # provisions the environment once (uv's cache is warm)
        ours: list[dict[str, float]] = []
        base: list[dict[str, float]] = []
        for pair in range(args.pairs):
            order = [("ours", None), ("base", args.base)]
            if pair % 2:
                order.reverse()
            got = {}
            for name, path in order:
                got[name], package = _measure(path, env, args.runs)
                expected = args.base if name == "base" else str(REPO)
                assert package.startswith(expected), (name, package)
            ours.append(got["ours"])
            base.append(got["base"])
    load = os.getloadavg()
    print(f"warm start, PythonJobOperator.execute, {args.pairs} pairs x median of {args.runs} runs")
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    for kind in ("wall", "cpu"):
        diffs = [o[kind] - b[kind] for o, b in zip(ours, base, strict=True)]
        faster = sum(d < 0 for d in diffs)
        print(
            f"{kind:>4}: base {statistics.median(b[kind] for b in base) * 1000:7.1f} ms, "
            f"ours {statistics.median(o[kind] for o in ours) * 1000:7.1f} ms; paired difference (ours - base): "
            f"median {statistics.median(diffs) * 1000:+.1f} ms, ours faster in {faster} of {len(diffs)} pairs"
        )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_side":
        _side(int(sys.argv[2]))
    else:
        main()
