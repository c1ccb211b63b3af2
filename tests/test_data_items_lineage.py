"""OpenLineage of data items: a real ``airflow dags test`` with the OpenLineage provider (the
``[openlineage]`` extra, installed by the ``test`` extra) writing its events with the file transport.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from conftest import write_job

pytest.importorskip("airflow.providers.openlineage")

AIRFLOW = str(Path(sys.executable).parent / "airflow")

CODE = """
    def produce(raw, run=None):
        frame = raw.as_df()
        return frame[frame["pop"] > 1000000]
"""


def test_openlineage_events_report_inputs_outputs_schema_and_statistics(tmp_path: Path) -> None:
    dags, store, events = tmp_path / "dags", tmp_path / "store", tmp_path / "openlineage.jsonl"
    raw = tmp_path / "shared" / "raw.csv"  # outside the job folder: a folder the administrator allowed
    raw.parent.mkdir()
    raw.write_text("city,pop\nRome,2800000\nMilan,1400000\nTurin,850000\n")
    write_job(dags / "jobs" / "produce", CODE, job={"jobId": "produce", "function": {"handler": "produce"}})
    (dags / ".airflowignore").write_text("jobs/\n")
    name = f"big-cities-{uuid.uuid4().hex[:8]}"
    (dags / "lineage_dag.py").write_text(
        textwrap.dedent(
            f"""
            import pendulum
            from airflow.sdk import DAG
            from airflow_python_exec import PythonJobOperator

            with DAG("lineage_dag", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
                PythonJobOperator(task_id="produce", job="jobs/produce", inputs={{"raw": "file://{raw}"}},
                                  outputs=["{name}"])
            """
        )
    )
    env = {
        **os.environ,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__PYTHON_EXEC__INSTALL_PATH": sys.prefix,
        "AIRFLOW__PYTHON_EXEC__DATA_STORE": f"file://{store}",
        "AIRFLOW__PYTHON_EXEC__DATA_ALLOWED_URIS": str(raw.parent),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events), "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "python-exec-tests",
    }
    done = subprocess.run(
        [AIRFLOW, "dags", "test", "lineage_dag"], check=False, capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    lines = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    [complete] = [
        e for e in lines if e.get("eventType") == "COMPLETE" and e.get("job", {}).get("name") == "lineage_dag.produce"
    ]
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [("file", str(raw))]
    [output] = complete["outputs"]
    assert (output["namespace"], output["name"]) == ("file", f"{store}/dataitem/{name}")
    assert [(f["name"], f["type"]) for f in output["facets"]["schema"]["fields"]] == [
        ("city", "string"),
        ("pop", "integer"),
    ]
    [written] = store.rglob("*.parquet")
    statistics = output["outputFacets"]["outputStatistics"]
    assert statistics["rowCount"] == 2 and statistics["size"] == written.stat().st_size
