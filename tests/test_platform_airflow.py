"""A data platform function runs unchanged in Airflow: the ETL tutorial's ``functions.py`` as two
tasks of one DAG (``dag.test()``), its ``@handler`` outputs known as assets when the DAG is parsed,
named ``{project}/{name}``, one event per version; a name-only output that gets a JSON value is an
XCom result and announces no asset event; a folder artifact is one version and one event.

Real ``dag.test()`` on the SQLite metadata database ``make test`` prepares; the job's interpreter is
this venv's (pandas and pyarrow from the ``test`` extra); a ``file://`` data store under ``tmp_path``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pandas as pd
import pytest
from conftest import CLI, cli_env, write_job
from test_airflow import _engine, dags, jobs, load_dag, run_dag  # noqa: F401 - fixtures
from test_data_items_airflow import _events, _xcoms
from test_platform_functions import ETL, KEYS, TRAFFIC


@pytest.fixture
def store(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "store"
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__DATA_STORE", f"file://{folder}")
    return folder


def test_the_etl_tutorial_runs_as_a_dag_with_project_assets(dags, jobs, capfd, caplog, store) -> None:
    project = f"etl-{uuid.uuid4().hex[:8]}"  # the metadata database outlives the test: fresh assets
    for handler in ("downloader", "process"):
        shutil.copytree(ETL, jobs / handler)
        function = {"handler": f"functions:{handler}"}
        (jobs / handler / "job.json").write_text(
            json.dumps({"jobId": handler, "project": project, "function": function})
        )
    dag = load_dag(
        dags,
        f"""
        with DAG("platform_etl", schedule=None, start_date=START) as dag:
            downloader = PythonJobOperator(task_id="downloader", job="jobs/{jobs.name}/downloader",
                                           inputs={{"url": "{TRAFFIC}"}})
            process = PythonJobOperator(task_id="process", job="jobs/{jobs.name}/process",
                                        inputs={{"di": downloader.output["dataset"]}})
    """,
        "platform_etl",
    )
    # Parse time: the decorator's outputs, read from functions.py without running it, are the assets.
    [outlet] = dag.get_task("downloader").outlets
    assert (outlet.name, outlet.uri) == (f"{project}/dataset", f"file://{store}/{project}/dataitem/dataset")
    assert [a.name for a in dag.get_task("process").outlets] == [f"{project}/dataset-spire"]

    states, log = run_dag(dag, capfd, caplog)
    assert states == {"downloader": "success", "process": "success"}, log
    item = _xcoms(dag, "process")["dataset-spire"]
    assert item["asset"] == f"{project}/dataset-spire" and item["rows"] == 4
    frame = pd.read_parquet(item["uri"][len("file://") :])
    assert list(frame.columns) == KEYS and len(frame) == 4
    [(extra, source)] = _events(f"{project}/dataset-spire")
    assert source == "process" and extra["rows"] == 4 and extra["job_id"] == "process"
    assert extra["inputs"] == {"di": _xcoms(dag, "downloader")["dataset"]["uri"]}  # the lineage
    [(extra, _)] = _events(f"{project}/dataset")
    assert extra["rows"] == 12 and [f["name"] for f in extra["schema"]["fields"]][:2] == ["data", "codice spira"]
    # The same versions are found by name outside Airflow's database (Airflow's own `assets details`
    # shows no last event: it reads the asset's row only).
    shown = subprocess.run(
        [CLI, "data-items", "show", f"{project}/dataset-spire", "--data-store", str(store)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert shown.returncode == 0 and "(4 rows, " in shown.stdout and "made by job process from di=" in shown.stdout


def test_a_result_announces_no_event_and_a_folder_artifact_one(dags, jobs, capfd, caplog, store) -> None:
    tag = uuid.uuid4().hex[:8]
    code = f"""
        from pathlib import Path
        from digitalhub_runtime_python import handler

        @handler(outputs=["message-{tag}", "model-{tag}"])
        def train():
            Path("model").mkdir(exist_ok=True)
            Path("model/weights.bin").write_bytes(b"w")
            Path("model/card.md").write_text("# model")
            return "trained", Path("model")
    """
    write_job(jobs / "train", code, job={"jobId": "train", "function": {"handler": "train"}})
    dag = load_dag(
        dags,
        f"""
        with DAG("platform_kinds", schedule=None, start_date=START) as dag:
            PythonJobOperator(task_id="train", job="jobs/{jobs.name}/train")
    """,
        "platform_kinds",
    )
    assert sorted(a.name for a in dag.get_task("train").outlets) == [f"message-{tag}", f"model-{tag}"]
    states, log = run_dag(dag, capfd, caplog)
    assert states == {"train": "success"}, log
    xcoms = _xcoms(dag, "train")
    assert xcoms[f"message-{tag}"] == "trained"
    assert _events(f"message-{tag}") == []  # a result is an XCom: no version to announce
    [(extra, _)] = _events(f"model-{tag}")
    assert extra["kind"] == "artifact" and extra["format"] == "folder"
    folder = Path(extra["uri"][len("file://") :])
    assert sorted(p.name for p in folder.iterdir()) == ["card.md", "weights.bin"]


def test_the_python_jobs_page_shows_a_jobs_outputs_and_their_latest_version(client, auth, uploads, store) -> None:
    from conftest import bearer

    code = """
        import pandas as pd
        from digitalhub_runtime_python import handler

        @handler(outputs=["dataset", "note"])
        def make():
            return pd.DataFrame({"a": [1, 2, 3]}), "done"
    """
    job = write_job(uploads / "maker", code, job={"jobId": "maker", "project": "shop", "function": {"handler": "make"}})
    page = client.get("/jobs/maker", headers=bearer(auth, "viewer"))
    assert page.status_code == 200 and "dataset" in page.text and "no version yet" in page.text
    proc = subprocess.run(
        [CLI, "run", str(job), "--data-store", str(store)], capture_output=True, text=True, env=cli_env(), timeout=240
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [written] = store.rglob("*.parquet")
    page = client.get("/jobs/maker", headers=bearer(auth, "viewer"))
    assert page.status_code == 200
    assert f"latest <code>{written.parent.name}</code>" in page.text and "3 rows" in page.text
    assert "shop/dataset" in page.text
    detail = client.get("/api/jobs/maker", headers=bearer(auth, "viewer")).json()
    assert detail["outputs"] == [{"name": "dataset", "kind": None}, {"name": "note", "kind": None}]
