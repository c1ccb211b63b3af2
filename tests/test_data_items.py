"""Data items from the command line: inputs as ``DataItem``, outputs published to the data store.

Real subprocesses of the ``airflow-python-exec`` CLI, the real bootstrap, real pandas and pyarrow
(the ``test`` extra), a ``file://`` data store under ``tmp_path``. The Airflow side (assets, events,
XCom, OpenLineage) is in test_data_items_airflow.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import CLI, cli_env, write_job

VERSION_RECORD = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{6}\.json\Z")

PROCESS = """
    from pathlib import Path

    def process(raw, n: int = 2, run=None, context=None):
        Path(__file__).with_name("ran").write_text("yes")
        df = raw.as_df()
        run.log_metric("rows_in", len(df))
        run.log_metric("rows_in", len(df) + 1)
        run.log_metric("ratio", 0.5, single_value=True)
        print("input", raw.name, raw.uri, raw.extra, type(raw).__name__)
        return df.sort_values("pop", ascending=False).head(n)
"""


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    """A file outside the job folder, in a folder an administrator allowed (``data_allowed_uris``)."""
    (tmp_path / "shared").mkdir()
    path = tmp_path / "shared" / "raw.csv"
    path.write_text("city,pop,capital\nRome,2800000,true\nMilan,1400000,false\nTurin,850000,false\n")
    return path


def run_cli(*args: str, **settings: str) -> subprocess.CompletedProcess:
    """The CLI, with the ``raw`` fixture's folder allowed (``data_allowed_uris``) unless told otherwise."""
    store_arg = next((a for a in args if "/store" in a), "")
    if store_arg and "data_allowed_uris" not in settings:
        shared = store_arg.removeprefix("file://").rsplit("/store", 1)[0] + "/shared/"
        settings["data_allowed_uris"] = shared
    return subprocess.run([CLI, "run", *args], capture_output=True, text=True, env=cli_env(**settings), timeout=240)


def files_in(folder: Path) -> list[Path]:
    """The data files under ``folder``: not the record kept beside each version (``{version}.json``)."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and not VERSION_RECORD.match(p.name))


def test_cli_runs_a_function_with_an_input_and_a_data_store(tmp_path, store, raw) -> None:
    job = write_job(tmp_path / "job", PROCESS, job={"jobId": "cities", "function": {"handler": "process"}})
    proc = run_cli(
        str(job), "--input", f"raw={raw}", "--output", "top", "--data-store", f"file://{store}", "--result", "-"
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    [written] = files_in(store)
    assert written.relative_to(store).parts[:2] == ("dataitem", "top") and written.name == "top.parquet"
    assert result == {"outputs": {"top": f"file://{written}"}, "results": {}}
    frame = pd.read_parquet(written)
    assert list(frame.city) == ["Rome", "Milan"]
    # The handler saw a DataItem of the local copy, with the URI it came from.
    assert f"input raw.csv file://{raw} {{}} DataItem" in proc.stdout  # .name: the item's own (file) name
    assert f"[python_exec] output 'top' (table, 2 rows, {written.stat().st_size:,} bytes) written to" in proc.stderr


def test_each_run_is_a_new_version_and_csv_has_no_index(tmp_path, store, raw) -> None:
    outputs = [{"name": "top", "format": "csv"}]
    job = write_job(
        tmp_path / "job", PROCESS, job={"jobId": "cities", "function": {"handler": "process", "outputs": outputs}}
    )
    for _ in range(2):
        proc = run_cli(str(job), "--input", f"raw={raw}", "--data-store", str(store))
        assert proc.returncode == 0, proc.stderr
    first, second = files_in(store)
    assert first.parent.name != second.parent.name and first.parent.parent == second.parent.parent
    assert first.read_text().splitlines()[0] == "city,pop,capital"  # no index column


def test_results_artifacts_split_and_extra_values(tmp_path, store) -> None:
    code = """
        import pandas as pd
        from pathlib import Path

        def make(run=None):
            report = Path("report.txt")
            report.write_text("all good")
            return pd.DataFrame({"a": [1, 2], "when": pd.to_datetime(["2026-01-01", "2026-01-02"])}), report, "ok", 7
    """
    outputs = ["table", {"name": "report", "kind": "artifact"}, {"name": "label", "kind": "result"}]
    job = write_job(tmp_path / "job", code, job={"jobId": "multi", "function": {"handler": "make", "outputs": outputs}})
    proc = run_cli(str(job), "--data-store", str(store), "--result", "-")
    assert proc.returncode == 0, proc.stderr
    assert "4 values for 3 output(s): the extra value is named output_3" in proc.stdout  # the job's own line
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["results"] == {"label": "ok", "output_3": 7}
    assert set(result["outputs"]) == {"table", "report"}
    assert result["outputs"]["report"].startswith(f"file://{store}/artifact/report/")
    assert Path(result["outputs"]["report"][len("file://") :]).read_text() == "all good"


def test_a_dataframe_without_declared_outputs_is_output_0_with_a_warning(tmp_path, store) -> None:
    code = "import pandas as pd\ndef make():\n    return pd.DataFrame({'a': [1]})\n"
    job = write_job(tmp_path / "job", code, job={"jobId": "undeclared", "function": {"handler": "make"}})
    proc = run_cli(str(job), "--data-store", str(store), "--result", "-")
    assert proc.returncode == 0, proc.stderr
    assert "stored as output_0" in proc.stdout and "declare function.outputs" in proc.stdout
    [written] = files_in(store)
    assert written.relative_to(store).parts[:2] == ("dataitem", "output_0")


@pytest.mark.parametrize(
    ("config", "args", "expected"),
    [
        ({"inputs": {"raw": "missing.csv"}}, [], "error: input 'raw': file://{job}/missing.csv does not exist"),
        ({"inputs": {"raw": "file:///nowhere/x.csv"}}, [], "error: input 'raw': 'file:///nowhere/x.csv' is outside"),
        ({"inputs": {"raw": {"asset": "world-cities"}}}, [], "input 'raw': asset 'world-cities' is read from Airflow"),
        (
            {"outputs": [{"name": "top", "fromat": "csv"}]},
            [],
            "outputs[0]: unknown key 'fromat' (did you mean 'format'?)",
        ),
        ({"outputs": ["a/b"]}, [], "outputs[0]: name 'a/b' is not a data item name"),
        ({"outputs": ["metrics"]}, [], "outputs[0]: name 'metrics' is an XCom key of the task itself"),
        ({"inputs": {"raw": "{raw}"}, "parameters": {"raw": 1}}, [], "'raw' is both an input and a parameter"),
        ({"inputs": {"other": "{raw}"}}, [], "has no parameter 'other'"),
        ({"inputs": {"raw": "../raw.csv"}}, [], "input 'raw': '../raw.csv' is outside the job folder"),
        ({}, ["--input", "raw"], "--input 'raw' is not NAME=URI"),
    ],
)
def test_bad_inputs_and_outputs_are_one_line_errors_before_the_job_starts(
    tmp_path, store, raw, config, args, expected
) -> None:
    job = tmp_path / "job"
    config = json.loads(json.dumps(config).replace("{raw}", str(raw)))
    write_job(job, PROCESS, job={"jobId": "bad", "function": {"handler": "process", **config}})
    proc = run_cli(str(job), *args, "--data-store", str(store))
    output = proc.stdout + proc.stderr  # a handler's refusal is its bootstrap's line, before the call
    assert proc.returncode == 2, output
    assert expected.format(job=job.resolve()) in output
    errors = [line for line in output.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in output, output
    assert not (job / "ran").exists()  # the handler never ran
    assert files_in(store) == []


def test_a_value_that_cannot_be_stored_fails_and_publishes_nothing(tmp_path, store) -> None:
    code = "import pandas as pd\ndef make():\n    return pd.DataFrame({'a': [1]}), {1, 2}\n"
    outputs = ["table", {"name": "x", "kind": "result"}]
    job = write_job(
        tmp_path / "job", code, job={"jobId": "unstorable", "function": {"handler": "make", "outputs": outputs}}
    )
    proc = run_cli(str(job), "--data-store", str(store))
    assert proc.returncode == 1
    assert "output 'x': a value of type set cannot be stored" in proc.stdout
    assert files_in(store) == []


def test_a_failing_handler_publishes_nothing(tmp_path, store) -> None:
    code = (
        "import pandas as pd\ndef make():\n"
        "    pd.DataFrame({'a': [1]}).to_parquet('local.parquet')\n    raise RuntimeError('boom')\n"
    )
    job = write_job(tmp_path / "job", code, job={"jobId": "fails", "function": {"handler": "make", "outputs": ["t"]}})
    proc = run_cli(str(job), "--data-store", str(store))
    assert proc.returncode == 1 and "RuntimeError: boom" in proc.stderr
    assert files_in(store) == []


def test_a_job_cannot_make_the_worker_publish_a_file_it_links_to(tmp_path, store) -> None:
    """The attacker's handler: once the bootstrap has written its output, replace it with a link to
    a file only the worker should read; the worker must refuse to publish it."""
    secret = tmp_path / "worker_secret.txt"
    secret.write_text("worker-only secret")
    code = f"""
        import atexit, json, os
        import pandas as pd

        def swap():
            folder = os.path.join(os.path.dirname(os.environ["PYTHON_EXEC_RESULT_FILE"]), "outputs")
            os.remove(os.path.join(folder, "t.parquet"))
            os.symlink({str(secret)!r}, os.path.join(folder, "t.parquet"))

        def make():
            atexit.register(swap)
            return pd.DataFrame({{"a": [1]}})
    """
    job = write_job(tmp_path / "job", code, job={"jobId": "attack", "function": {"handler": "make", "outputs": ["t"]}})
    proc = run_cli(str(job), "--data-store", str(store))
    assert proc.returncode == 1
    assert "error: output 't' cannot be published" in proc.stderr
    assert all("worker-only secret" not in p.read_text(errors="replace") for p in files_in(store))


def test_the_dataitem_works_as_the_platforms(tmp_path, store, raw) -> None:
    code = f"""
        import json, os

        def use(raw):
            dest = {str(tmp_path / "copies")!r}
            os.makedirs(dest)
            first = raw.download(dest)
            try:
                raw.download(dest)
                again = "overwrote"
            except FileExistsError:
                again = "refused"
            return {{
                "name": raw.name,
                "open": open(raw).readline().strip(),
                "fspath": os.fspath(raw) == str(raw.path),
                "as_file": raw.as_file() == [str(raw.path)],
                "download": first == os.path.join(dest, "raw.csv"),
                "again": again,
                "overwrite": raw.download(dest, overwrite=True) == first,
                "rows": len(raw.as_df(file_format="csv")),
                "extra": raw.extra,
                "mode": oct(os.stat(raw.path).st_mode & 0o777),
            }}
    """
    job = write_job(tmp_path / "job", code, job={"jobId": "api", "function": {"handler": "use"}})
    proc = run_cli(str(job), "--input", f"raw={raw}", "--data-store", str(store), "--result", "-")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "name": "raw.csv",  # the data item's own name: the file name of a plain URI
        "open": "city,pop,capital",
        "fspath": True,
        "as_file": True,
        "download": True,
        "again": "refused",
        "overwrite": True,
        "rows": 3,
        "extra": {},
        "mode": "0o444",  # the staged copy is read-only
    }
    assert files_in(store) == []  # a JSON result is no data item


def test_sandboxed_inputs_are_read_only_and_hidden_files_are_refused(tmp_path, store, raw) -> None:
    from test_sandbox import _PROBLEM

    if _PROBLEM is not None:
        pytest.skip(f"bwrap cannot run here: {_PROBLEM}")
    code = """
        def touch(raw):
            try:
                with open(raw.path, "a") as f:
                    f.write("changed")
                return "written"
            except OSError as exc:
                return type(exc).__name__
    """
    job = write_job(tmp_path / "job", code, job={"jobId": "sandboxed", "function": {"handler": "touch"}})
    (job / "raw.csv").write_text(raw.read_text())  # a job-folder file (the sandbox hides the rest of /tmp)
    proc = run_cli(
        str(job), "--input", "raw=raw.csv", "--sandbox", "bubblewrap", "--data-store", str(store), "--result", "-"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) in ("PermissionError", "OSError")
    # The worker's configuration is hidden from a sandboxed job: it cannot have it copied in as an input.
    cfg = Path(cli_env()["AIRFLOW_HOME"]) / "airflow.cfg"
    proc = run_cli(str(job), "--input", f"raw=file://{cfg}", "--sandbox", "bubblewrap", "--data-store", str(store))
    assert proc.returncode == 2
    assert f"error: input 'raw': 'file://{cfg}' is outside" in proc.stderr, proc.stderr


def test_a_link_inside_an_input_folder_is_refused_not_followed(tmp_path, store) -> None:
    """The attack: a folder input holding a link to the worker's airflow.cfg. Only the folder's own
    path is checked against what the sandbox hides, so the worker (which can read airflow.cfg)
    would copy the file in for the job. Every entry must be a plain file or folder."""
    code = """
        import os
        def peek(raw):
            return sorted(os.listdir(raw.path))
    """
    job = write_job(tmp_path / "job", code, job={"jobId": "linked", "function": {"handler": "peek"}})
    data = job / "data"
    data.mkdir()
    (data / "plain.csv").write_text("a\n1\n")
    cfg = Path(cli_env()["AIRFLOW_HOME"]) / "airflow.cfg"
    (data / "cfg").symlink_to(cfg)
    proc = run_cli(str(job), "--input", "raw=data", "--data-store", str(store), "--result", "-")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "a symbolic link or a special file" in proc.stderr and "fernet" not in proc.stdout + proc.stderr
    (data / "cfg").unlink()  # the same folder without the link is staged as it is
    proc = run_cli(str(job), "--input", "raw=data", "--data-store", str(store), "--result", "-")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["plain.csv"]


def test_secrets_are_masked_in_named_results(tmp_path, store, fernet_key) -> None:
    from airflow_python_exec.crypto import encrypt

    code = """
        import os
        import pandas as pd

        def leak(run=None):
            token = os.environ["API_TOKEN"]
            return pd.DataFrame({token: [1]}), token
    """
    job = {
        "jobId": "leak",
        "runtimeConfig": {
            "macros": [{"key": "API_TOKEN", "value": encrypt("s3cr3t-value", [fernet_key]), "secure": True}]
        },
        "function": {"handler": "leak", "outputs": ["t", {"name": "label", "kind": "result"}]},
    }
    folder = write_job(tmp_path / "job", code, job=job)
    proc = run_cli(str(folder), "--data-store", str(store), "--result", "-", fernet_key=fernet_key)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["results"] == {"label": "***"}
    assert "s3cr3t-value" not in proc.stdout + proc.stderr


def test_an_artifact_named_after_a_secret_is_not_published(tmp_path, store, fernet_key) -> None:
    """The attack: the handler names its artifact file after a secure macro's value, so the secret
    would be in the data store's path, the URI in XCom, the asset event and the log line."""
    from airflow_python_exec.crypto import encrypt

    code = """
        import os
        import pathlib

        def leak():
            path = pathlib.Path(os.environ["API_TOKEN"] + ".txt")
            path.write_text("model")
            return path.resolve()
    """
    job = {
        "jobId": "leakname",
        "runtimeConfig": {
            "macros": [{"key": "API_TOKEN", "value": encrypt("s3cr3t-name", [fernet_key]), "secure": True}]
        },
        "function": {"handler": "leak", "outputs": [{"name": "model", "kind": "artifact"}]},
    }
    folder = write_job(tmp_path / "job", code, job=job)
    proc = run_cli(str(folder), "--data-store", str(store), "--result", "-", fernet_key=fernet_key)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "output 'model': its file name holds a secret value" in proc.stderr
    assert "s3cr3t-name" not in proc.stdout + proc.stderr
    assert files_in(store) == []


def test_asset_uris_never_carry_the_connection_id() -> None:
    from airflow_python_exec.models.data_item_specs import parse_outputs
    from airflow_python_exec.operators.data_items import outlets_for

    outputs = parse_outputs(["cities", {"name": "model", "kind": "artifact"}, {"name": "n", "kind": "result"}])
    assets = outlets_for(outputs, "s3://aws_default@bucket/dh")
    assert [(a.name, a.uri, a.group) for a in assets] == [
        ("cities", "s3://bucket/dh/dataitem/cities", "dataitem"),
        ("model", "s3://bucket/dh/artifact/model", "artifact"),
    ]


def test_the_job_side_module_needs_only_the_standard_library() -> None:
    """``functions/data.py`` runs in the job's environment (no Airflow, no this package): its
    module-level imports are the standard library's; pandas is imported by ``as_df`` only."""
    import ast
    import sys

    from airflow_python_exec.handlers import DATA_MODULE

    tree = ast.parse(DATA_MODULE.read_text())
    imported = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    imported |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    assert imported and imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_named_results_are_read_once_from_the_run_result(tmp_path, store) -> None:
    """The named results travel in the run's result only (read and masked once): a manifest that names
    results of its own, as a job could write it, does not reach XCom."""
    from airflow_python_exec.handlers.data_items import DataRun
    from airflow_python_exec.models import PythonJob

    outputs = [{"name": "label", "kind": "result"}]
    job = write_job(
        tmp_path / "job",
        "def f():\n    return 'ok'\n",
        job={"jobId": "j", "function": {"handler": "f", "outputs": outputs}},
    )
    data = DataRun(PythonJob.load(job), data_store=str(store))
    run = tmp_path / "run"
    (run / "outputs").mkdir(parents=True)
    manifest = {"outputs": [], "results": {"label": "forged"}, "metrics": {}, "declared": True}
    (run / "outputs" / "manifest.json").write_text(json.dumps(manifest))
    value = {"outputs": {}, "results": {"label": "***"}}
    published = data.publish(run, value, max_bytes=10_000)
    assert dict(published.results) == {"label": "***"}
    assert data.result(value, published) == {"outputs": {}, "results": {"label": "***"}}
