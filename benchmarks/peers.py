"""PythonJobOperator against Airflow's own ways of running a Python script, measured in one run.

    python benchmarks/peers.py [--rounds 7]                 (make bench runs it after run.py)

Every figure is a task's duration (``end_date - start_date`` of its task instance) under
``dag.test()`` on the SQLite metadata database, the median of ``--rounds`` interleaved rounds: each
round runs every case once, in an order rotated from round to round, so a noisy neighbour on a
shared machine hits all cases alike. The ratios are what the targets are about; the milliseconds
move with the machine.

Cases (one DAG with one task each):

- plain script: ``PythonJobOperator`` on a folder holding ``app.py`` (``print('ok')``, no
  environment) against ``BashOperator`` running ``python3 app.py`` with the same interpreter; also
  the time spent inside ``execute()`` alone, for both (target: plain <= 1.0x BashOperator);
- 200,000 short output lines: the same two operators on one script printing them, each line a
  record in the task log (target <= 1.0x BashOperator's task time);
- warm, one locked dependency (python-dotenv, imported by the script): ``PythonJobOperator`` on its
  cached environment against ``PythonVirtualenvOperator`` with a filled ``venv_cache_path`` and
  ``ExternalPythonOperator`` on that same virtual environment (targets <= 0.85x and <= 0.6x). All
  three push their last line as XCom: the callable returns it, as our task and BashOperator do;
- cold, the same job: ``PythonJobOperator`` with an empty ``cache_dir`` (its install compiles
  bytecode) against ``PythonVirtualenvOperator`` installing with uv into an empty
  ``venv_cache_path``; uv's package cache is filled first, so neither side downloads anything
  (target <= 0.4x).

Task logs go to a file at INFO through Airflow's own logging set-up for ``dag.test()``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar

REPO = Path(__file__).resolve().parent.parent
HELLO = REPO / "example_dags" / "jobs" / "hello"
DOTENV_REQ = "python-dotenv==1.2.4"  # what example_dags/jobs/hello/pylock.toml locks


LINES = 200_000
LINES_SCRIPT = (
    f"import sys\nw = sys.stdout.write\nfor i in range({LINES}):\n    w(f'output line {{i}} of the job\\n')\n"
)


def _callable() -> str:
    """The virtualenv operators' callable: the same work as the job's script, and its last line
    returned (pushed as XCom), as ``PythonJobOperator`` and ``BashOperator`` push theirs."""
    import dotenv  # noqa: F401

    print("ok")
    return "ok"


class _Timer:
    """Wraps an operator's ``execute`` to record the time spent inside it, per task id."""

    inside: ClassVar[dict[str, list[float]]] = {}

    @classmethod
    def wrap(cls, op):
        original = op.execute

        def execute(context):
            started = time.perf_counter()
            try:
                return original(context)
            finally:
                cls.inside.setdefault(op.task_id, []).append(time.perf_counter() - started)

        op.execute = execute
        return op


def _setup(work: Path) -> dict:
    """Job folders, caches, and the environment variables the cases read."""
    plain = work / "plain"
    plain.mkdir()
    (plain / "app.py").write_text("print('ok')\n")
    dep = work / "dep"
    dep.mkdir()
    shutil.copy(HELLO / "pylock.toml", dep / "pylock.toml")
    (dep / "app.py").write_text("import dotenv\nprint('ok')\n")
    lines = work / "lines"
    lines.mkdir()
    (lines / "app.py").write_text(LINES_SCRIPT)
    (dep / "job.json").write_text(
        json.dumps({"jobId": "dep", "packageName": "app.py", "pythonEnv": {"pylock": "pylock.toml"}})
    )
    return {
        "work": work,
        "plain": plain,
        "dep": dep,
        "lines": lines,
        "python": Path(sys.base_prefix) / "bin" / "python3",
        "ours_warm": work / "ours-warm",
        "ours_cold": work / "ours-cold",
        "ours_plain": work / "ours-plain",
        "pvo_warm": work / "pvo-warm",
        "pvo_cold": work / "pvo-cold",
    }


def _paths_from_env() -> dict:
    return {k: Path(v) for k, v in json.loads(os.environ["APE_PEERS_PATHS"]).items()}


def _dags(paths: dict) -> dict:
    import pendulum
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.python import ExternalPythonOperator, PythonVirtualenvOperator
    from airflow.sdk import DAG

    from airflow_python_exec import PythonJobOperator

    start = pendulum.datetime(2026, 1, 1, tz="UTC")

    def dag(case: str, make) -> object:
        with DAG(dag_id=f"bench_{case}", schedule=None, start_date=start, catchup=False) as d:
            _Timer.wrap(make())
        return d

    pvo = {
        "python_callable": _callable,
        "requirements": [DOTENV_REQ],
        "system_site_packages": False,
        "serializer": "pickle",
    }
    warm_venv = paths["pvo_warm_python"]
    return {
        "bash_plain": dag(
            "bash_plain",
            lambda: BashOperator(task_id="t", bash_command=f"{paths['python']} app.py", cwd=str(paths["plain"])),
        ),
        "ours_plain": dag("ours_plain", lambda: PythonJobOperator(task_id="t", job=str(paths["plain"]))),
        "bash_lines": dag(
            "bash_lines",
            lambda: BashOperator(task_id="t", bash_command=f"{paths['python']} app.py", cwd=str(paths["lines"])),
        ),
        "ours_lines": dag("ours_lines", lambda: PythonJobOperator(task_id="t", job=str(paths["lines"]))),
        "ours_warm": dag("ours_warm", lambda: PythonJobOperator(task_id="t", job=str(paths["dep"]))),
        "pvo_warm": dag(
            "pvo_warm", lambda: PythonVirtualenvOperator(task_id="t", venv_cache_path=str(paths["pvo_warm"]), **pvo)
        ),
        "epo_warm": dag(
            "epo_warm",
            lambda: ExternalPythonOperator(
                task_id="t", python=str(warm_venv), python_callable=_callable, serializer="pickle"
            ),
        ),
        "ours_cold": dag("ours_cold", lambda: PythonJobOperator(task_id="t", job=str(paths["dep"]))),
        "pvo_cold": dag(
            "pvo_cold", lambda: PythonVirtualenvOperator(task_id="t", venv_cache_path=str(paths["pvo_cold"]), **pvo)
        ),
    }


#: Each case's own [python_exec] cache_dir (read from the environment when the task runs).
CACHE_OF = {"ours_plain": "ours_plain", "ours_lines": "ours_plain", "ours_warm": "ours_warm", "ours_cold": "ours_cold"}
#: Emptied before each run of the case (outside the measured time).
EMPTIED = {"ours_cold": "ours_cold", "pvo_cold": "pvo_cold"}


def _publish(paths: dict, dags_folder: Path) -> None:
    """A DAG file defining the same DAGs: dag.test() runs only DAGs that its DAG bundle holds."""
    os.environ["APE_PEERS_PATHS"] = json.dumps({k: str(v) for k, v in paths.items()})
    (dags_folder / "bench_peers.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "import peers  # airflow DAG file (safe mode looks for both words)\n"
        "globals().update({f'dag_{k}': v for k, v in peers._dags(peers._paths_from_env()).items()})\n"
    )


def _run(case: str, dag, paths: dict) -> float:
    """Run ``dag`` once; return its task's duration in seconds (the task must succeed)."""
    if case in EMPTIED:
        shutil.rmtree(paths[EMPTIED[case]], ignore_errors=True)
    if case in CACHE_OF:
        os.environ["AIRFLOW__PYTHON_EXEC__CACHE_DIR"] = str(paths[CACHE_OF[case]])
    dag_run = dag.test(logical_date=datetime.now(timezone.utc))
    (ti,) = dag_run.get_task_instances()
    state = getattr(ti.state, "value", ti.state)
    if state != "success":
        sys.stdout.flush()
        log = (paths["work"] / "tasks.log").read_text(errors="replace").splitlines()
        sys.stderr.write("\n".join(log[-60:]) + "\n")
        raise SystemExit(f"benchmark case {case} ended {state}; the end of its task log is above")
    return (ti.end_date - ti.start_date).total_seconds()


def _verdict(ratio: float, target: float) -> str:
    if ratio <= target:
        return f"<= {target:g}x: met"
    return f"<= {target:g}x: MISSED by {ratio - target:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cases", help="comma-separated subset (default: all)")
    args = parser.parse_args()
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    # PythonVirtualenvOperator installs with uv when [standard] venv_install_method says so and uv is
    # on PATH: the uv of this environment, the one our provisioner runs too.
    os.environ["AIRFLOW__STANDARD__VENV_INSTALL_METHOD"] = "uv"
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.pop("AIRFLOW__PYTHON_EXEC__INSTALL_PATH", None)  # the default: Airflow's own base Python
    with tempfile.TemporaryDirectory(prefix="ape-peers-") as tmp:
        work = Path(tmp)
        dags_folder = work / "dags"
        dags_folder.mkdir()
        os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags_folder)
        paths = _setup(work)
        # The virtualenv that PythonVirtualenvOperator caches: found after its first (warm-up) run.
        paths["pvo_warm_python"] = paths["pvo_warm"] / "PENDING" / "bin" / "python"
        _publish(paths, dags_folder)
        # Task logs go to stdout at INFO, as in a deployment; they go to a file, not the terminal.
        saved_stdout, saved_stderr = os.dup(1), os.dup(2)
        log_file = os.open(work / "tasks.log", os.O_WRONLY | os.O_CREAT)
        os.dup2(log_file, 1)
        os.dup2(log_file, 2)
        sys.stderr = os.fdopen(saved_stderr, "w", closefd=False)  # progress lines still show
        dags = _dags(paths)
        cases = [c for c in dags if not args.cases or c in args.cases.split(",")]
        # Warm-up, outside the figures: fills uv's cache, both warm caches, this process's imports.
        for case in ("ours_warm", "pvo_warm", "ours_plain", "bash_plain"):
            _run(case, dags[case], paths)
        (venv,) = [p for p in paths["pvo_warm"].iterdir() if p.is_dir()]
        paths["pvo_warm_python"] = venv / "bin" / "python"
        _publish(paths, dags_folder)
        dags = _dags(paths)
        _run("epo_warm", dags["epo_warm"], paths)
        _Timer.inside.clear()
        durations: dict[str, list[float]] = {c: [] for c in cases}
        inside: dict[str, list[float]] = {c: [] for c in cases}
        for r in range(args.rounds):
            order = cases[r % len(cases) :] + cases[: r % len(cases)]
            for case in order:
                _Timer.inside.pop("t", None)
                durations[case].append(_run(case, dags[case], paths))
                inside[case].extend(_Timer.inside.get("t", []))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os.dup2(saved_stdout, 1)
        os.dup2(saved_stderr, 2)
    _report(durations, inside, args.rounds)


def _report(durations: dict[str, list[float]], inside: dict[str, list[float]], rounds: int) -> None:
    med = {c: statistics.median(v) * 1000 for c, v in durations.items() if v}
    ins = {c: statistics.median(v) * 1000 for c, v in inside.items() if v}
    print(
        f"\nAirflow peers: task duration (end_date - start_date) under dag.test(), SQLite, medians of "
        f"{rounds} interleaved rounds, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}"
    )
    print(f"{'ours':<46}{'ms':>7}  {'baseline (same run)':<44}{'ms':>7}  {'ratio':>6}  target")
    rows = [
        ("plain script: PythonJobOperator", "ours_plain", "BashOperator `python3 app.py`", "bash_plain", 1.0),
        ("200,000 lines: PythonJobOperator", "ours_lines", "BashOperator, same script", "bash_lines", 1.0),
        (
            "warm, 1 locked dep: PythonJobOperator",
            "ours_warm",
            "PythonVirtualenvOperator, venv_cache_path",
            "pvo_warm",
            0.85,
        ),
        ("warm, 1 locked dep: PythonJobOperator", "ours_warm", "ExternalPythonOperator", "epo_warm", 0.6),
        (
            "cold, empty cache: PythonJobOperator",
            "ours_cold",
            "PythonVirtualenvOperator, uv, empty cache",
            "pvo_cold",
            0.4,
        ),
    ]
    for name, ours, base_name, base, target in rows:
        if ours in med and base in med:
            ratio = med[ours] / med[base]
            print(
                f"{name:<46}{med[ours]:>7.0f}  {base_name:<44}{med[base]:>7.0f}  "
                f"{ratio:>5.2f}x  {_verdict(ratio, target)}"
            )
    print("time inside execute() only (the rest of a task's duration is Airflow's own, alike for all):")
    for name, ours, base_name, base, _target in rows:
        if ours in ins and base in ins:
            ratio = ins[ours] / ins[base]
            print(f"{'  ' + name:<46}{ins[ours]:>7.0f}  {'  ' + base_name:<44}{ins[base]:>7.0f}  {ratio:>5.2f}x")


if __name__ == "__main__":
    main()
