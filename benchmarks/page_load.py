"""The "Python jobs" page as a user feels it in a running deployment, against Airflow's own DAG list.

    AIRFLOW_PORT=8095 make airflow DB=postgres
    AIRFLOW_PORT=8095 .venv/bin/python benchmarks/page_load.py [--dags 1000,3000] [--uploads 1000]
        [--per-file 250] [--viewers 4] [--rounds 5] [--upload-only] [--upload-tries 1] [--upload-after 0]
        [--keep]
    make airflow-stop

What it adds to the deployment (``<dags_folder>/page_load_bench/``, gitignored; at the end the folder
is removed and its DAGs, with their runs, deleted through the REST API, unless ``--keep``): DAG files
of ``--per-file`` DAGs each (250; ``--per-file 1``: one DAG file per DAG; ``page_load_0000`` ..., a
``PythonJobOperator`` running its own job folder, paused from creation), grown to each size of
``--dags`` in turn; ``--uploads`` job
folders exposed as job DAGs by four ``load_job_dags(globals(), folders=[...], shard=(i, 4))`` files
(each its own task id, as uploads have); one run per DAG through the REST API (paused DAGs: no task
loads the machine). While it measures, a thread keeps changing run states (``PATCH`` of a run to
success, failed or queued, every 0.5 s), as a busy deployment does: between the blocks of the CPU
measurement (its own requests' CPU would otherwise count in whichever block is running), throughout
the viewers' measurement.

For each size: the first request of each endpoint once the DAGs are there (cold: the api-server has
read none of their serialized versions), then warm ones, ``--rounds`` rounds each interleaving
``GET /api/v2/dags?limit=100`` (the baseline, Airflow's own list), ``GET /python-exec/api/jobs`` and
``GET /python-exec/`` (default page: 50 jobs): latency (median) and the api-server's CPU per request
(``utime + stime`` of its process group, ``/proc/<pid>/stat``: far less sensitive to the machine's
load than latency); then ``--viewers`` viewers at once, each asking for all three in turn. Every
figure is printed next to the baseline's of the same round, with the load average.

After the largest size: one new job folder uploaded through the page's own upload API (``POST
/python-exec/api/jobs``, a zip, into ``[python_exec] upload_folder``, which ``example_dags/python_jobs.py``
and the four shard files expose as job DAGs), then ``GET /api/v2/dags/job_<jobId>`` every second until
it answers: the seconds from the upload to its DAG, with the number of DAG files and DAGs in the
deployment and the load average. The uploaded folder (and ``upload_folder`` itself when the upload
made it) is removed and its DAG deleted at the end, as the rest. ``--upload-tries N``: N uploads in
turn, each a new job (``pl_up_upload``, ``pl_up_upload_2`` ...), each timed. ``--upload-after S``:
wait S seconds before the first upload; with ``--upload-only`` the upload otherwise comes as the DAG
processor ends its first pass over the files, its queue empty, while a deployment of thousands of
DAG files is always in a pass (each file is due again ``min_file_process_interval``, 30 s, after its
last parse): 60 s puts the upload behind a queue of most of the files.

``--upload-only``: no runs, no page or viewer measurement: the DAGs of each size, then the upload(s)
timed as above (only after the DAG processor lists every DAG of the largest size, and every job DAG).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import threading
import time
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
PREFIX = "page_load_"
UPLOAD_PREFIX = "pl_up_"
#: The job uploaded after the largest size (its DAG, ``job_pl_up_upload``, is deleted with the others);
#: the next tries of ``--upload-tries`` upload ``pl_up_upload_2`` ...
UPLOADED = f"{UPLOAD_PREFIX}upload"
#: DAGs per DAG file unless ``--per-file``.
PER_FILE = 250
SHARDS = 4
BASELINE = "/api/v2/dags?limit=100"
PAGES = {"baseline /api/v2/dags?limit=100": BASELINE, "JSON /python-exec/api/jobs": "/python-exec/api/jobs"}
PAGES["HTML /python-exec/"] = "/python-exec/"
DAG_FILE = """# Written by benchmarks/page_load.py; removed when it ends.
import pendulum
from airflow.sdk import DAG
from airflow_python_exec import PythonJobOperator

for i in range({first}, {last}):
    with DAG(f"{prefix}{{i:04d}}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
             is_paused_upon_creation=True, tags=["page-load-bench", f"team-{{i % 10}}"]) as dag:
        PythonJobOperator(task_id="run", job=f"jobs/job_{{i:04d}}")
    globals()[dag.dag_id] = dag
"""
SHARD_FILE = """# Written by benchmarks/page_load.py; removed when it ends.
from airflow_python_exec.job_dags import load_job_dags

load_job_dags(globals(), folders=[{folder!r}], shard=({index}, {count}))
"""


def home() -> Path:
    os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".airflow_home"))
    return Path(os.environ["AIRFLOW_HOME"])


def dags_folder() -> Path:
    """The deployment's ``[core] dags_folder``."""
    home()
    from airflow.configuration import conf

    return Path(conf.get("core", "dags_folder"))


def admin_token(base: str) -> str:
    """A JWT for the deployment's admin, whose password ``make airflow`` keeps in ``run/passwords.json``."""
    passwords = json.loads((home() / "run" / "passwords.json").read_text())
    answer = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": passwords["admin"]}, timeout=30)
    answer.raise_for_status()
    return answer.json()["access_token"]


def job_folder(folder: Path, job_id: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text("print('hello')\n")
    macros = [{"key": "APP_NAME", "value": job_id}]
    job = {"jobId": job_id, "packageName": "app.py", "runtimeConfig": {"macros": macros}}
    (folder / "job.json").write_text(json.dumps(job))
    (folder / ".env").write_text("DB_PASSWORD=x\nREGION=eu\n")


def write_dags(folder: Path, first: int, last: int, per_file: int = PER_FILE) -> None:
    """DAGs ``first`` to ``last - 1``, ``per_file`` per DAG file, each with its job folder."""
    for i in range(first, last):
        job_folder(folder / "jobs" / f"job_{i:04d}", f"job_{i:04d}")
    (folder / ".airflowignore").write_text("jobs/\nuploads/\n")
    for start in range(first - first % per_file, last, per_file):
        text = DAG_FILE.format(first=start, last=min(start + per_file, last), prefix=PREFIX)
        (folder / f"page_load_dags_{start:04d}.py").write_text(text)


def write_uploads(folder: Path, count: int) -> None:
    """``count`` job folders exposed as job DAGs by :data:`SHARDS` shard files."""
    for i in range(count):
        job_folder(folder / "uploads" / f"{UPLOAD_PREFIX}{i:04d}", f"{UPLOAD_PREFIX}{i:04d}")
    for index in range(SHARDS):
        text = SHARD_FILE.format(folder=str(folder / "uploads"), index=index, count=SHARDS)
        (folder / f"page_load_jobs_{index}.py").write_text(text)


def dag_count(http: httpx.Client, pattern: str) -> int:
    answer = http.get("/api/v2/dags", params={"dag_id_pattern": pattern, "limit": 1})
    return answer.json()["total_entries"] if answer.status_code == 200 else 0


def wait_for(http: httpx.Client, pattern: str, n: int, timeout_s: float = 1800) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if dag_count(http, pattern) >= n:
            return time.monotonic() - started
        time.sleep(3)
    raise SystemExit(f"the DAG processor did not list {n} {pattern}* DAGs within {timeout_s:.0f} s")


def pause(http: httpx.Client, pattern: str) -> None:
    """Pause every DAG matching ``pattern`` (job DAGs start unpaused in ``make airflow``)."""
    answer = http.patch("/api/v2/dags", params={"dag_id_pattern": pattern, "limit": 10000}, json={"is_paused": True})
    answer.raise_for_status()


def trigger(http: httpx.Client, dag_ids: list[str]) -> None:
    """One run per DAG, four requests at a time."""

    def one(dag_id: str) -> None:
        for _ in range(10):  # SQLite answers "database is locked" (500) while another process writes
            answer = http.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})
            if answer.status_code in (200, 201, 409):
                return
            time.sleep(1)
        raise SystemExit(f"triggering {dag_id}: {answer.status_code} {answer.text[:300]}")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, dag_ids))


def group_cpu_s(pid: int) -> float:
    """User + system CPU seconds of every live process in the process group ``pid`` (the api-server
    and its workers: ``make airflow`` starts each service as a group leader)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pid:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def timed_get(http: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    answer = http.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 200:
        raise SystemExit(f"GET {path}: {answer.status_code} {answer.text[:300]}")
    return elapsed


class StateChanger(threading.Thread):
    """Changes the state of a random bench run every ``every_s`` (success, failed, queued)."""

    def __init__(self, base: str, headers: dict[str, str], dag_ids: list[str], every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.base, self.headers, self.dag_ids, self.every_s = base, headers, dag_ids, every_s
        self.stop, self.changes = threading.Event(), 0
        #: Held by :func:`measure` during a CPU block: no change is being made meanwhile.
        self.lock = threading.Lock()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=60) as http:
            while not self.stop.wait(self.every_s):
                with self.lock:
                    self.change(http)

    def change(self, http: httpx.Client) -> None:
        dag_id = random.choice(self.dag_ids)
        runs = http.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 1})
        if runs.status_code != 200 or not runs.json()["dag_runs"]:
            return
        run_id = runs.json()["dag_runs"][0]["dag_run_id"]
        state = random.choice(["success", "failed", "queued"])
        if http.patch(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", json={"state": state}).status_code == 200:
            self.changes += 1


def measure(
    http: httpx.Client, pid: int, rounds: int, changer: StateChanger, per_block: int = 3
) -> dict[str, tuple[float, float]]:
    """Warm, one viewer: ``{name: (median ms, median CPU ms per request)}``, endpoints interleaved per
    round; ``changer`` waits during each block (state changes come between blocks)."""
    latency: dict[str, list[float]] = {name: [] for name in PAGES}
    cpu: dict[str, list[float]] = {name: [] for name in PAGES}
    for _ in range(rounds):
        for name, path in PAGES.items():
            with changer.lock:
                before = group_cpu_s(pid)
                latency[name] += [timed_get(http, path) for _ in range(per_block)]
                cpu[name].append((group_cpu_s(pid) - before) * 1000 / per_block)
            time.sleep(changer.every_s * 2)  # a state change or two between blocks
    return {name: (statistics.median(latency[name]), statistics.median(cpu[name])) for name in PAGES}


def viewers(base: str, headers: dict[str, str], count: int, rounds: int) -> dict[str, float]:
    """``count`` viewers at once, each asking every endpoint ``rounds`` times: median ms per endpoint."""

    def viewer(_: int) -> list[tuple[str, float]]:
        with httpx.Client(base_url=base, headers=headers, timeout=300) as http:
            return [(name, timed_get(http, path)) for _ in range(rounds) for name, path in PAGES.items()]

    with ThreadPoolExecutor(count) as pool:
        results = [item for items in pool.map(viewer, range(count)) for item in items]
    return {name: statistics.median(ms for n, ms in results if n == name) for name in PAGES}


def report(size: int, uploads: int, cold: dict[str, float], warm: dict, many: dict, count: int, changes: int) -> None:
    base_cpu = warm[next(iter(PAGES))][1]
    base_many = many[next(iter(PAGES))]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n{size:,} DAGs + {uploads:,} job DAGs; load average {load}; {changes} run state changes meanwhile")
    print(f"{'endpoint':<36}{'cold ms':>9}{'warm ms':>9}{'CPU ms':>8}{'CPU x':>7}{f'{count} viewers ms':>16}{'x':>6}")
    for name in PAGES:
        ms, cpu = warm[name]
        print(
            f"{name:<36}{cold[name]:>9.0f}{ms:>9.0f}{cpu:>8.0f}{cpu / base_cpu:>7.2f}"
            f"{many[name]:>16.0f}{many[name] / base_many:>6.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('AIRFLOW_PORT', '8080')}")
    parser.add_argument("--dags", default="1000,3000", help="sizes, in turn (comma-separated)")
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--per-file", type=int, default=PER_FILE, help="DAGs per DAG file (1: a file per DAG)")
    parser.add_argument("--viewers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--upload-only", action="store_true", help="no runs, no page or viewer measurement: only time the upload"
    )
    parser.add_argument("--upload-tries", type=int, default=1, help="uploads timed in turn, each a new job")
    parser.add_argument(
        "--upload-after", type=float, default=0.0, help="seconds to wait before the first upload (DAG processor busy)"
    )
    parser.add_argument("--keep", action="store_true", help="leave the bench DAG files and job folders in place")
    args = parser.parse_args()
    if args.per_file < 1 or args.upload_tries < 1:
        parser.error("--per-file and --upload-tries must be at least 1")
    folder = dags_folder() / "page_load_bench"
    uploaded: list[Path] = []  # what the upload wrote, to remove
    try:
        run(args, folder, uploaded)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
            for path in uploaded:
                shutil.rmtree(path, ignore_errors=True)
            deleted = delete_dags(args.url, [PREFIX, f"job_{UPLOAD_PREFIX}"])
            print(f"removed {folder} and deleted its {deleted} DAGs")


def delete_dags(base: str, patterns: list[str]) -> int:
    """Delete every DAG matching ``patterns`` (their files are gone, so none comes back); how many."""
    headers = {"Authorization": f"Bearer {admin_token(base)}"}
    with httpx.Client(base_url=base, headers=headers, timeout=300) as http:
        dag_ids: list[str] = []
        for pattern in patterns:
            offset = 0
            while True:
                query = {"dag_id_pattern": pattern, "limit": 100, "offset": offset, "exclude_stale": False}
                page = http.get("/api/v2/dags", params=query)
                found = [d["dag_id"] for d in page.json().get("dags", [])] if page.status_code == 200 else []
                dag_ids, offset = dag_ids + found, offset + len(found)
                if len(found) < 100:
                    break
        print(f"deleting {len(dag_ids):,} DAGs through the REST API", flush=True)
        with ThreadPoolExecutor(8) as pool:
            return sum(pool.map(lambda dag_id: http.delete(f"/api/v2/dags/{dag_id}").status_code == 204, dag_ids))


def upload_bundle(job_id: str) -> bytes:
    """A zip of a job folder (``app.py``, ``job.json``) whose ``jobId`` is ``job_id``."""
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("app.py", "print('hello')\n")
        bundle.writestr("job.json", json.dumps({"jobId": job_id, "packageName": "app.py"}))
    return buffer.getvalue()


def upload_to_dag(http: httpx.Client, uploaded: list[Path], job_id: str = UPLOADED, timeout_s: float = 1800) -> float:
    """Upload ``job_id`` through ``POST /python-exec/api/jobs``, then poll its DAG: print (and return) the seconds.

    ``uploaded`` gets what to remove at the end: the job's folder and its kept versions, or the whole
    ``upload_folder`` when it did not exist before.
    """
    root = http.get("/python-exec/api/jobs", params={"limit": 1}).json().get("uploadFolder")
    if not root:
        raise SystemExit("uploads are off in this deployment ([python_exec] upload_folder is unset)")
    existed = Path(root).is_dir()
    dag_id = f"job_{job_id}"
    started = time.monotonic()
    bundle = upload_bundle(job_id)
    answer = http.post("/python-exec/api/jobs", files={"file": (f"{job_id}.zip", bundle, "application/zip")})
    if answer.status_code != 201:
        raise SystemExit(f"POST /python-exec/api/jobs: {answer.status_code} {answer.text[:300]}")
    posted = time.monotonic() - started
    uploaded += [Path(root)] if not existed else [Path(root) / job_id, Path(root) / ".versions" / job_id]
    while http.get(f"/api/v2/dags/{dag_id}").status_code != 200:
        if time.monotonic() - started > timeout_s:
            raise SystemExit(f"{dag_id} was no DAG {timeout_s:.0f} s after its upload")
        time.sleep(1)
    seconds = time.monotonic() - started
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    from airflow.utils.file import list_py_file_paths

    with warnings.catch_warnings():  # pathspec's deprecation of the pattern class Airflow uses
        warnings.simplefilter("ignore", DeprecationWarning)
        files = len(list_py_file_paths(dags_folder()))
    dags = http.get("/api/v2/dags", params={"limit": 1}).json()["total_entries"]
    print(
        f"\nupload to DAG: {dag_id} listed {seconds:.1f} s after POST /python-exec/api/jobs (answered in "
        f"{posted:.1f} s; re-parse asked for {len(answer.json()['reparse'])} files); {files} DAG files, "
        f"{dags} DAGs in the deployment; load average {load}",
        flush=True,
    )
    return seconds


def run(args: argparse.Namespace, folder: Path, uploaded: list[Path]) -> None:
    pid = int((home() / "run" / "api-server.pid").read_text())
    headers = {"Authorization": f"Bearer {admin_token(args.url)}"}
    print(f"Python jobs page under load: {args.url}, api-server pid {pid}, {os.cpu_count()} CPUs")
    write_uploads(folder, args.uploads)
    made = 0
    with httpx.Client(base_url=args.url, headers=headers, timeout=300) as http:
        for size in sorted(int(n) for n in args.dags.split(",")):
            write_dags(folder, made, size, args.per_file)
            files = -(-size // args.per_file) + SHARDS
            print(f"{size:,} DAGs in {files:,} DAG files written; waiting for the DAG processor", flush=True)
            waited = wait_for(http, PREFIX, size)
            wait_for(http, f"job_{UPLOAD_PREFIX}", args.uploads)
            pause(http, f"job_{UPLOAD_PREFIX}")
            if args.upload_only:
                print(f"{size:,} DAGs + {args.uploads:,} job DAGs listed after {waited:.0f} s", flush=True)
                made = size
                continue
            cold = {name: timed_get(http, path) for name, path in PAGES.items()}
            bench = [f"{PREFIX}{i:04d}" for i in range(made, size)]
            uploads = [f"job_{UPLOAD_PREFIX}{i:04d}" for i in range(args.uploads)] if not made else []
            started = time.monotonic()
            trigger(http, bench + uploads)
            print(f"{size:,} DAGs listed after {waited:.0f} s; runs triggered in {time.monotonic() - started:.0f} s")
            made = size
            changer = StateChanger(args.url, headers, bench + uploads)
            changer.start()
            try:
                warm = measure(http, pid, args.rounds, changer)
                many = viewers(args.url, headers, args.viewers, args.rounds)
            finally:
                changer.stop.set()
                changer.join()
            report(size, args.uploads, cold, warm, many, args.viewers, changer.changes)
        names = [UPLOADED] + [f"{UPLOADED}_{k}" for k in range(2, args.upload_tries + 1)]
        if args.upload_after > 0:
            print(f"waiting {args.upload_after:.0f} s before the upload: the DAG processor parses every file again")
            time.sleep(args.upload_after)
        seconds = [upload_to_dag(http, uploaded, name) for name in names]
        if len(seconds) > 1:
            print("upload to DAG, each try: " + ", ".join(f"{s:.1f}" for s in seconds) + " s")


if __name__ == "__main__":
    sys.exit(main())
