"""Parse time of a DAG file exposing 200 job folders (``load_job_dags``), as the DAG processor pays it
on every parse; target at most 1 s.

    python benchmarks/job_dags.py [--jobs 200] [--repeat 7]      (make bench runs it)

Job folders: three in four are script jobs (three plain macros, one secure macro, a ``.env``), one in
four handler jobs (four typed parameters); one in five has a ``dag`` object with a schedule.

Each measurement is a fresh process (the DAG processor parses each file in a process of its own) that
imports Airflow first, untimed, then times Airflow's own parse of the file (``DagBag``: import, DAG
validation, bagging) and, separately, the serialization of every DAG (what the processor writes to the
metadata database). Baseline, measured in the same run: a hand-written DAG file making the same 200
DAGs (same Params, same ``PythonJobOperator`` task) from a Python list, without reading any job folder;
the two files are measured in turns, medians of 7 each.
The ratio is what reading and checking the job folders costs on top of Airflow's own work (it can be
under 1: ``load_job_dags`` reads the configuration defaults that Airflow's ``DAG`` reads for every DAG
once per file).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

TARGET_S = 1.0

MEASURE = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization

start = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
parsed = time.perf_counter() - start
assert not bag.import_errors, bag.import_errors
start = time.perf_counter()
for dag in bag.dags.values():
    DagSerialization.to_dict(dag)
serialized = time.perf_counter() - start
print(json.dumps({"dags": len(bag.dags), "parse": parsed, "serialize": serialized}))
"""

BASELINE = """
import pendulum
from airflow.sdk import DAG, Param
from airflow_python_exec import PythonJobOperator

JOBS = {jobs!r}
for spec in JOBS:
    with DAG(spec["dag_id"], schedule=spec["schedule"], start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
             catchup=False, tags=["python-job"],
             params={{k: Param(v, type=t) for k, (v, t) in spec["params"].items()}}) as dag:
        PythonJobOperator(task_id=spec["task_id"], job=spec["folder"], macros=spec["macros"] or None,
                          parameters=spec["parameters"])
    globals()[spec["dag_id"]] = dag
"""


def make_jobs(root: Path, count: int) -> list[dict]:
    """Write ``count`` job folders under ``root``; return the baseline's description of each DAG."""
    specs = []
    for i in range(count):
        folder = root / f"job{i:04d}"
        folder.mkdir(parents=True)
        config: dict = {"jobId": f"job{i:04d}"}
        params: dict = {}
        macros: dict = {}
        parameters = None
        if i % 4 == 3:
            values = {"limit": i, "ratio": 0.5, "country": "IT", "flag": True}
            (folder / "mod.py").write_text("def run(limit, ratio, country, flag):\n    return limit\n")
            config["function"] = {"handler": "mod:run", "parameters": values}
            types = {int: "integer", float: "number", str: "string", bool: "boolean"}
            params = {k: (v, types[type(v)]) for k, v in values.items()}
            parameters = "{" + ", ".join(f'"{k}": {{{{ params["{k}"] | tojson }}}}' for k in values) + "}"
        else:
            (folder / "app.py").write_text("import os\nprint(os.environ['APP_NAME'])\n")
            (folder / ".env").write_text("APP_VERSION=1.0\nAPP_AUTHOR=someone\n")
            plain = [{"key": k, "value": f"{k.lower()}-{i}"} for k in ("APP_NAME", "REGION", "MODE")]
            secure = {"key": "API_TOKEN", "value": "gAAAAABtoken", "secure": True}
            config["packageName"] = "app.py"
            config["runtimeConfig"] = {"macros": [*plain, secure]}
            params = {m["key"]: (m["value"], "string") for m in plain}
            macros = {m["key"]: f'{{{{ params["{m["key"]}"] }}}}' for m in plain}
        schedule = "*/15 * * * *" if i % 5 == 0 else None
        if schedule:
            config["dag"] = {"schedule": schedule, "tags": ["bench"]}
        (folder / "job.json").write_text(json.dumps(config))
        specs.append(
            {
                "dag_id": f"hand_job{i:04d}",
                "task_id": f"job{i:04d}",
                "folder": str(folder),
                "schedule": schedule,
                "params": params,
                "macros": macros,
                "parameters": parameters,
            }
        )
    return specs


def run_once(dag_file: Path, env: dict[str, str]) -> dict:
    """One fresh process: parse and serialization seconds, and the DAG count."""
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(dag_file)], env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"measuring {dag_file} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(files: list[Path], env: dict[str, str], repeat: int) -> list[dict]:
    """Medians of ``repeat`` runs of each file, interleaved (a machine whose load drifts during the
    benchmark weighs on every file alike)."""
    runs: list[list[dict]] = [[] for _ in files]
    for _ in range(repeat):
        for index, dag_file in enumerate(files):
            runs[index].append(run_once(dag_file, env))
    return [
        {
            "dags": file_runs[0]["dags"],
            "parse": statistics.median(r["parse"] for r in file_runs),
            "serialize": statistics.median(r["serialize"] for r in file_runs),
        }
        for file_runs in runs
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-job-dags-") as tmp:
        work = Path(tmp)
        specs = make_jobs(work / "jobs", args.jobs)
        dags = work / "dags"
        dags.mkdir()
        ours = dags / "python_jobs.py"
        ours.write_text(
            "from airflow_python_exec.job_dags import load_job_dags\n\n"
            f"load_job_dags(globals(), folders=[{str(work / 'jobs')!r}])\n"
        )
        baseline = dags / "hand_written.py"
        baseline.write_text(textwrap.dedent(BASELINE.format(jobs=specs)))
        # Only the folder given: no upload_folder; the DAGs folder is this one.
        env = {**os.environ, "AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER": "", "AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
        base, mine = measure([baseline, ours], env, args.repeat)
    if mine["dags"] != args.jobs or base["dags"] != args.jobs:
        raise SystemExit(f"expected {args.jobs} DAGs, got {mine['dags']} (load_job_dags) and {base['dags']} (baseline)")
    verdict = "met" if mine["parse"] <= TARGET_S else "MISSED"
    print(
        f"\nJobs as DAGs: one DAG file exposing {args.jobs} job folders"
        f" (medians of {args.repeat} fresh processes each, interleaved)"
    )
    print(f"{'DAG file':<48}{'parse s':>9}{'serialize s':>13}{'parse vs base':>15}")
    print(f"{'hand-written, same DAGs (baseline)':<48}{base['parse']:>9.3f}{base['serialize']:>13.3f}{1:>14.2f}x")
    print(
        f"{'load_job_dags(globals(), folders=[...])':<48}{mine['parse']:>9.3f}{mine['serialize']:>13.3f}"
        f"{mine['parse'] / base['parse']:>14.2f}x"
    )
    print(
        f"parse time {mine['parse']:.3f} s for {args.jobs} jobs ({mine['parse'] / args.jobs * 1000:.2f} ms per job): "
        f"target <= {TARGET_S:.1f} s {verdict}"
    )


if __name__ == "__main__":
    main()
