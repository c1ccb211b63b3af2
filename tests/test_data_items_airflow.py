"""Data items in Airflow: outlets and inlets at parse time, asset events with ``extra``, XCom per
output, inputs from an asset's latest event and from an upstream output, native parameters.

Real ``dag.test()`` on the SQLite metadata database ``make test`` prepares; the job's interpreter is
this venv's (pandas and pyarrow from the ``test`` extra); a ``file://`` data store under ``tmp_path``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_job
from test_airflow import _engine, dags, jobs, load_dag, run_dag  # noqa: F401 - fixtures

PRODUCE = """
    import pandas as pd

    def produce(raw, n, run=None, context=None):
        assert isinstance(n, int), type(n)  # a Param's int stays an int (parameters render natively)
        frame = raw.as_df()
        run.log_metric("rows_in", len(frame), single_value=True)
        return frame.head(n), f"kept {n}"
"""

CONSUME = """
    def consume(cities, context=None):
        frame = cities.as_df()
        print("consumer read", cities.uri, "rows", len(frame), "version", cities.extra.get("version"))
        return {"rows": len(frame), "uri": cities.uri}
"""


@pytest.fixture
def store(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "store"
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__DATA_STORE", f"file://{folder}")
    return folder


def _events(asset_name: str) -> list:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == asset_name)
            .order_by(AssetEvent.id)
            .all()
        )
        return [(row.extra, row.source_task_id) for row in rows]


def _xcoms(dag, task_id: str) -> dict:
    from airflow.models import DagRun
    from airflow.models.xcom import XComModel as XCom
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag.dag_id).order_by(DagRun.id.desc()).first()
        rows = session.query(XCom).filter(XCom.dag_id == dag.dag_id, XCom.run_id == run.run_id, XCom.task_id == task_id)
        return {row.key: XCom.deserialize_value(row) for row in rows}


def test_outputs_are_assets_with_events_xcoms_and_a_consumer_reads_them(
    dags, jobs, capfd, caplog, store, tmp_path, monkeypatch
) -> None:
    raw = tmp_path / "shared" / "raw.csv"  # outside the job folder: a folder the administrator allowed
    raw.parent.mkdir()
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__DATA_ALLOWED_URIS", str(raw.parent))
    raw.write_text("city,pop\nRome,2800000\nMilan,1400000\nTurin,850000\n")
    name = f"cities-{uuid.uuid4().hex[:8]}"  # the metadata database outlives the test: a fresh asset
    write_job(jobs / "produce", PRODUCE, job={"jobId": "produce", "function": {"handler": "produce"}})
    consume = {"handler": "consume", "inputs": {"cities": {"asset": name}}}  # the latest version, by default
    write_job(jobs / "consume", CONSUME, job={"jobId": "consume", "function": consume})
    dag = load_dag(
        dags,
        f"""
        from airflow.sdk import Asset
        with DAG("data_items_dag", schedule=None, start_date=START, params={{"n": Param(2, type="integer")}}) as dag:
            produce = PythonJobOperator(
                task_id="produce", job="jobs/{jobs.name}/produce",
                parameters={{"n": "{{{{ params.n }}}}"}},
                inputs={{"raw": "file://{raw}"}},
                outputs=["{name}", {{"name": "label", "kind": "result"}}],
            )
            from_ref = PythonJobOperator(
                task_id="from_ref", job="jobs/{jobs.name}/consume", inputs={{"cities": produce.output["{name}"]}},
            )
            from_asset = PythonJobOperator(task_id="from_asset", job="jobs/{jobs.name}/consume")
            by_ref = PythonJobOperator(
                task_id="by_ref", job="jobs/{jobs.name}/consume", inputs={{"cities": Asset.ref(name="{name}")}},
            )
            produce >> [from_asset, by_ref]
    """,
        "data_items_dag",
    )
    # Parse time: the outlet is the data item's asset; the asset input an inlet; the ref a dependency.
    [outlet] = dag.get_task("produce").outlets
    assert (outlet.name, outlet.uri, outlet.group) == (name, f"file://{store}/dataitem/{name}", "dataitem")
    for task_id in ("from_asset", "by_ref"):  # from job.json, and from the operator's Asset.ref
        assert [type(a).__name__ for a in dag.get_task(task_id).inlets] == ["AssetNameRef"]
    assert dag.get_task("from_ref").upstream_task_ids == {"produce"}

    states, log = run_dag(dag, capfd, caplog)
    assert states == {"produce": "success", "from_ref": "success", "from_asset": "success", "by_ref": "success"}, log

    xcoms = _xcoms(dag, "produce")
    item = xcoms[name]
    [written] = sorted(store.rglob("*.parquet"))
    assert item == {
        "name": name,
        "uri": f"file://{written}",
        "kind": "table",
        "format": "parquet",
        "rows": 2,
        "schema": {"fields": [{"name": "city", "type": "string"}, {"name": "pop", "type": "integer"}]},
        "asset": name,
    }
    assert xcoms["label"] == "kept 2"
    assert xcoms["metrics"] == {"rows_in": 3}
    assert xcoms["return_value"] == {"outputs": {name: item["uri"]}, "results": {"label": "kept 2"}}
    assert list(pd.read_parquet(written).city) == ["Rome", "Milan"]

    [(extra, source)] = _events(name)
    assert source == "produce"
    assert extra["uri"] == item["uri"] and extra["rows"] == 2 and extra["schema"] == item["schema"]
    assert extra["kind"] == "table" and extra["format"] == "parquet" and extra["job_id"] == "produce"
    assert extra["size"] == written.stat().st_size and extra["version"] == written.parent.name
    assert extra["inputs"] == {"raw": f"file://{raw}"} and extra["metrics"] == {"rows_in": 3}

    # Both consumers read that version: through the upstream reference and the asset's latest event.
    for task_id in ("from_ref", "from_asset", "by_ref"):
        assert _xcoms(dag, task_id)["return_value"] == {"rows": 2, "uri": item["uri"]}
    assert f"consumer read {item['uri']} rows 2 version {written.parent.name}" in log


def test_an_asset_input_without_an_event_fails_the_task_without_retry(dags, jobs, capfd, caplog, store) -> None:
    write_job(jobs / "consume", CONSUME, job={"jobId": "consume", "function": {"handler": "consume"}})
    write_job(jobs / "produce", PRODUCE, job={"jobId": "produce", "function": {"handler": "produce"}})
    name = f"later-{uuid.uuid4().hex[:8]}"
    dag = load_dag(
        dags,
        f"""
        with DAG("no_event_dag", schedule=None, start_date=START) as dag:
            consume = PythonJobOperator(task_id="consume", job="jobs/{jobs.name}/consume", retries=3,
                                        inputs={{"cities": {{"asset": "{name}"}}}})
            # Declares the asset (so it exists) but runs only after the consumer: no event yet.
            later = PythonJobOperator(task_id="later", job="jobs/{jobs.name}/produce", outputs=["{name}"])
            consume >> later
    """,
        "no_event_dag",
    )
    states, log = run_dag(dag, capfd, caplog)
    assert states == {"consume": "failed", "later": "upstream_failed"}
    assert f"input 'cities': asset '{name}' has no event" in log
    assert "AirflowFailException" in log  # refused: no retry
    assert not store.exists()
