"""A data platform function runs unchanged: the platform's handler files, decorator, reserved
arguments and output rules, run through the ``airflow-python-exec`` CLI as a platform user would.

Real CLI subprocesses, the real bootstrap, pandas and pyarrow from the ``test`` extra, a ``file://``
data store under ``tmp_path``. ``tests/platform_etl/`` is the platform's ETL tutorial: its
``functions.py`` (the handlers as the tutorial writes them, ``from digitalhub_runtime_python import
handler`` first) and a sample of the traffic CSV it downloads. The Airflow side is in
test_platform_airflow.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import CLI, cli_env, write_job

ETL = Path(__file__).with_name("platform_etl")
TRAFFIC = "data/rilevazione-flusso-veicoli-tramite-spire-anno-2023.csv"
KEYS = [
    "codice spira",
    "longitudine",
    "latitudine",
    "Livello",
    "tipologia",
    "codice",
    "codice arco",
    "codice via",
    "Nome via",
    "stato",
    "direzione",
    "angolo",
    "geopoint",
]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=cli_env(), timeout=240)


def last_json(proc: subprocess.CompletedProcess):
    return json.loads(proc.stdout.strip().splitlines()[-1])


def local(uri: str) -> Path:
    assert uri.startswith("file://"), uri
    return Path(uri[len("file://") :])


def etl_job(tmp_path: Path, handler: str, **function) -> Path:
    """The tutorial's folder as a job of the project ``demo-etl``, its ``functions.py`` byte for byte."""
    job = tmp_path / handler
    shutil.copytree(ETL, job)
    config = {"jobId": handler, "project": "demo-etl", "function": {"handler": f"functions:{handler}", **function}}
    (job / "job.json").write_text(json.dumps(config))
    return job


def test_the_etl_tutorial_runs_unchanged_and_makes_the_same_data_items(tmp_path) -> None:
    store = tmp_path / "store"
    source = pd.read_csv(ETL / TRAFFIC, sep=";")
    assert (ETL / "functions.py").read_text().splitlines()[1] == "from digitalhub_runtime_python import handler"

    down = cli(
        "run",
        str(etl_job(tmp_path, "downloader")),
        "--input",
        f"url={TRAFFIC}",
        "--data-store",
        str(store),
        "--result",
        "-",
    )
    assert down.returncode == 0, down.stdout + down.stderr
    dataset = last_json(down)["outputs"]["dataset"]
    # The project's level in the store, the output's name from the decorator, parquet as on the platform.
    assert dataset.startswith(f"file://{store}/demo-etl/dataitem/dataset/") and dataset.endswith("/dataset.parquet")
    table = pq.read_table(local(dataset))
    assert table.column_names == list(source.columns) and table.num_rows == len(source) == 12

    spire = cli(
        "run",
        str(etl_job(tmp_path, "process")),
        "--input",
        f"di={dataset}",
        "--data-store",
        str(store),
        "--result",
        "-",
    )
    assert spire.returncode == 0, spire.stdout + spire.stderr
    written = local(last_json(spire)["outputs"]["dataset-spire"])
    frame = pd.read_parquet(written)
    assert list(frame.columns) == KEYS and len(frame) == source["codice spira"].nunique() == 4
    assert "__index_level_0__" not in pq.read_schema(written).names  # written without the index

    measures = cli(
        "run",
        str(etl_job(tmp_path, "process_measures")),
        "--input",
        f"di={dataset}",
        "--data-store",
        str(store),
        "--result",
        "-",
    )
    assert measures.returncode == 0, measures.stdout + measures.stderr
    melted = pd.read_parquet(local(last_json(measures)["outputs"]["dataset-measures"]))
    assert list(melted.columns) == ["data", "codice spira", "valore"] and len(melted) == 12 * 3

    # Found by name: every version, its rows, schema, the job and the input that made it.
    shown = cli("data-items", "show", "demo-etl/dataset-spire", "--data-store", str(store))
    assert shown.returncode == 0, shown.stderr
    assert "1 version(s)" in shown.stdout and "(4 rows, " in shown.stdout
    assert "schema: codice spira string, longitudine number" in shown.stdout
    assert f"made by job process from di={dataset}" in shown.stdout
    listed = cli("data-items", "list", "--data-store", str(store), "--project", "demo-etl").stdout
    rows = {line.split()[0]: line.split() for line in listed.splitlines()[1:]}
    assert set(rows) == {"demo-etl/dataset", "demo-etl/dataset-spire", "demo-etl/dataset-measures"}
    assert rows["demo-etl/dataset"][1:3] == ["table", "1"] and rows["demo-etl/dataset"][-2:] == ["12", "downloader"]


ANATOMY = """
    import pandas as pd
    from digitalhub_runtime_python import handler


    @handler(outputs=["my-sdk-output", "my-primitive-output"])
    def func(project, run, input_1, parameter_1):
        run.log_metric("my-metric", -14.6)
        df = input_1.as_df(sep=";")
        parameter_1.pop("some-key")
        print("project", project.name, "still callable:", callable(func), func.__name__)
        return df.head(70), 19.45
"""


def test_the_anatomy_example_takes_each_kind_from_the_value(tmp_path) -> None:
    store = tmp_path / "store"
    data = tmp_path / "job" / "in.csv"  # a job-folder file: other places need data_allowed_uris
    data.parent.mkdir()
    data.write_text("a;b\n1;x\n2;y\n")
    job = write_job(tmp_path / "job", ANATOMY, name="main.py")  # no packageName: main.py, as on the platform
    function = {"handler": "func", "parameters": {"parameter_1": {"some-key": 1}}}
    (job / "job.json").write_text(json.dumps({"jobId": "anatomy", "function": function}))
    proc = cli("run", str(job), "--input", f"input_1={data}", "--data-store", str(store), "--result", "-")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = last_json(proc)
    assert result["results"] == {"my-primitive-output": 19.45}  # a number: a result, not "stored as table"
    assert list(result["outputs"]) == ["my-sdk-output"]  # the DataFrame: a table data item
    assert "project anatomy still callable: True func" in proc.stdout  # main.py found without packageName


def test_a_name_only_output_of_a_string_is_a_result_and_the_cli_can_say_a_kind(tmp_path) -> None:
    code = """
        from pathlib import Path
        from digitalhub_runtime_python import handler

        @handler(outputs=["message"])
        def hello(name: str = "world"):
            return f"hello {name}"

        def report():
            Path("report.txt").write_text("ok")
            return Path("report.txt"), {"score": 1}
    """
    store = tmp_path / "store"
    job = write_job(tmp_path / "job", code, job={"jobId": "quick", "function": {"handler": "hello"}})
    quick = cli("run", str(job), "--data-store", str(store), "--result", "-")
    assert quick.returncode == 0, quick.stdout + quick.stderr
    assert last_json(quick) == {"outputs": {}, "results": {"message": "hello world"}}
    both = cli(
        "run",
        str(job),
        "--handler",
        "report",
        "--output",
        "report:artifact",
        "--output",
        "stats:result",
        "--data-store",
        str(store),
        "--result",
        "-",
    )
    assert both.returncode == 0, both.stdout + both.stderr
    result = last_json(both)
    assert result["results"] == {"stats": {"score": 1}} and local(result["outputs"]["report"]).read_text() == "ok"
    wrong = cli("run", str(job), "--handler", "report", "--output", "report:table", "--data-store", str(store))
    assert wrong.returncode == 1 and "output 'report': a value of type PosixPath cannot be stored as table" in (
        wrong.stdout + wrong.stderr
    )
    typo = cli("run", str(job), "--output", "report:artefact", "--data-store", str(store))
    assert typo.returncode == 2 and "kind 'artefact' is not one of table, artifact, result" in typo.stderr


def test_project_get_dataitem_reads_the_latest_version_and_projects_never_collide(tmp_path) -> None:
    produce = """
        import pandas as pd
        from digitalhub_runtime_python import handler

        @handler(outputs=["dataset"])
        def make(n: int):
            return pd.DataFrame({"n": list(range(n))})
    """
    consume = """
        from digitalhub_runtime_python import handler

        @handler(outputs=["summary"])
        def use(project):
            di = project.get_dataitem("dataset")
            project.log_metric("rows", len(di.as_df()), single_value=True)
            return {"project": project.name, "name": di.name, "rows": len(di.as_df())}
    """
    store = tmp_path / "store"
    for project, n in (("alpha", 2), ("beta", 3), ("alpha", 5)):
        job = write_job(
            tmp_path / f"make-{project}",
            produce,
            job={"jobId": "make", "project": project, "function": {"handler": "make", "parameters": {"n": n}}},
        )
        assert cli("run", str(job), "--data-store", str(store)).returncode == 0
    assert sorted(p.relative_to(store).parts[:3] for p in store.rglob("*.parquet")) == [
        ("alpha", "dataitem", "dataset"),
        ("alpha", "dataitem", "dataset"),
        ("beta", "dataitem", "dataset"),
    ]
    for project, rows in (("alpha", 5), ("beta", 3)):  # the latest version of its own project's item
        job = write_job(
            tmp_path / f"use-{project}",
            consume,
            job={"jobId": "use", "project": project, "function": {"handler": "use"}},
        )
        proc = cli("run", str(job), "--data-store", str(store), "--result", "-")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert last_json(proc)["results"]["summary"] == {"project": project, "name": "dataset", "rows": rows}
    # An item the project does not have: the handler's KeyError says so, in the job's own line.
    missing = write_job(
        tmp_path / "use-gamma", consume, job={"jobId": "use", "project": "gamma", "function": {"handler": "use"}}
    )
    proc = cli("run", str(missing), "--data-store", str(store))
    assert proc.returncode == 1 and "project 'gamma' has no data item 'dataset'" in proc.stderr


def test_a_uri_inputs_name_is_its_file_name_and_download_keeps_the_extension(tmp_path) -> None:
    """The validation tutorial: the item is saved under its own name, so a CSV checker sees ``.csv``."""
    code = """
        import os

        def validate(di, out, out2):
            path = di.download(os.path.join(out, di.name))
            into_folder = di.download(out2)
            return {"name": di.name, "path": os.path.basename(path), "folder": os.path.basename(into_folder)}
    """
    data = tmp_path / "job" / "employees.csv"  # a job-folder file: other places need data_allowed_uris
    data.parent.mkdir()
    data.write_text("id,name\n1,Ada\n")
    out, out2 = tmp_path / "out", tmp_path / "out2"
    out.mkdir()
    out2.mkdir()
    job = write_job(tmp_path / "job", code, job={"jobId": "v", "function": {"handler": "validate"}})
    proc = cli(
        "run",
        str(job),
        "--input",
        f"di={data}",
        "--param",
        f'out="{out}"',
        "--param",
        f'out2="{out2}"',
        "--result",
        "-",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert last_json(proc) == {"name": "employees.csv", "path": "employees.csv", "folder": "employees.csv"}


def test_a_folder_artifact_is_stored_whole_as_one_version_and_a_link_inside_is_refused(tmp_path) -> None:
    code = """
        import os
        from pathlib import Path
        from digitalhub_runtime_python import handler

        @handler(outputs=["model"])
        def train(link: str = ""):
            Path("model/sub").mkdir(parents=True, exist_ok=True)
            Path("model/weights.bin").write_bytes(b"\\x00\\x01")
            Path("model/sub/config.json").write_text("{}")
            if link:
                os.symlink(link, "model/stolen")
            return Path("./model/")
    """
    store = tmp_path / "store"
    job = write_job(tmp_path / "job", code, job={"jobId": "train", "function": {"handler": "train"}})
    proc = cli("run", str(job), "--data-store", str(store), "--result", "-")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    model = local(last_json(proc)["outputs"]["model"])
    assert model.parent.parent == store / "artifact" / "model" and model.name == "model"
    assert sorted(str(p.relative_to(model)) for p in model.rglob("*") if p.is_file()) == [
        "sub/config.json",
        "weights.bin",
    ]
    assert len(list((store / "artifact" / "model").glob("*.json"))) == 1  # one version
    # The attacker's model folder holds a link to a file only the worker should read.
    secret = tmp_path / "worker_secret.txt"
    secret.write_text("worker-only")
    shutil.rmtree(job / "model")
    attack = cli("run", str(job), "--param", f'link="{secret}"', "--data-store", str(tmp_path / "store2"))
    assert attack.returncode == 1 and "is a link or a special file" in attack.stderr
    assert not any(
        "worker-only" in p.read_text(errors="replace") for p in (tmp_path / "store2").rglob("*") if p.is_file()
    )


def test_a_table_output_without_a_parquet_engine_is_refused_before_the_handler_runs(tmp_path) -> None:
    """pandas without pyarrow (the world_cities example's lock): one line naming pyarrow, exit 2."""
    code = """
        from pathlib import Path
        import pandas as pd
        from digitalhub_runtime_python import handler

        @handler(outputs=["dataset"])
        def make():
            Path(__file__).with_name("ran").write_text("yes")
            return pd.DataFrame({"a": [1]})
    """
    job = write_job(
        tmp_path / "job",
        code,
        job={"jobId": "noarrow", "function": {"handler": "make"}, "pythonEnv": {"pylock": "pylock.toml"}},
    )
    shutil.copyfile(Path(__file__).parent.parent / "example_dags/jobs/world_cities/pylock.toml", job / "pylock.toml")
    proc = cli("run", str(job), "--data-store", str(tmp_path / "store"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    [line] = proc.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: output 'dataset' is stored as parquet") and "add pyarrow" in line
    assert "Traceback" not in proc.stdout + proc.stderr and not (job / "ran").exists()


def test_a_handler_signature_refusal_goes_to_stderr(tmp_path) -> None:
    job = write_job(
        tmp_path / "job",
        "def main(a):\n    return a\n",
        job={"jobId": "sig", "function": {"handler": "main", "parameters": {"b": 1}}},
    )
    proc = cli("run", str(job))
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: handler main(a) has no parameter 'b'; fix the parameters or the signature"
    assert "error" not in proc.stdout


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"project": "../etc"}, "project '../etc' is not a project name"),
        ({"project": "a/b"}, "project 'a/b' is not a project name"),
        ({"project": ".hidden"}, "project '.hidden' is not a project name"),
        ({"pythonEnv": {"python_version": "PYTHON3"}}, "python_version 'PYTHON3' is not a version"),
    ],
)
def test_hostile_project_names_and_versions_are_refused_in_one_line(tmp_path, config, expected) -> None:
    job = write_job(
        tmp_path / "job", "def f():\n    return 1\n", job={"jobId": "h", "function": {"handler": "f"}, **config}
    )
    proc = cli("run", str(job), "--data-store", str(tmp_path / "store"))
    assert proc.returncode == 2 and expected in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "store").exists()


def test_hostile_decorator_outputs_and_dataitem_names_reach_nothing(tmp_path) -> None:
    """A platform file that names paths where names belong: refused, or not looked up at all."""
    store = tmp_path / "store"
    bad_output = """
        from digitalhub_runtime_python import handler

        @handler(outputs=["../../escape"])
        def f():
            return 1
    """
    job = write_job(tmp_path / "bad", bad_output, job={"jobId": "bad", "function": {"handler": "f"}})
    proc = cli("run", str(job), "--data-store", str(store))
    assert proc.returncode == 2 and "name '../../escape' is not a data item name" in proc.stderr
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "x.json").write_text('{"uri": "file:///etc/passwd", "version": "9"}')
    # Version records planted in the store, pointing a copy out of it.
    planted = store / "dataitem" / "planted"
    planted.mkdir(parents=True)
    (planted / "20990101T000000000000Z-abcdef.json").write_text('{"uri": "file:///etc/passwd", "version": "../../.."}')
    (planted / "20990101T000000000001Z-abcdef.json").write_text(
        '{"uri": "file:///etc/passwd", "version": "20990101T000000000001Z-abcdef"}'
    )
    reach = """
        from digitalhub_runtime_python import handler

        def f(project):
            found = []
            for name in ("../../victim", "planted"):
                try:
                    found.append(project.get_dataitem(name).path.read_text())
                except KeyError:
                    found.append("not found")
            return found
    """
    job = write_job(tmp_path / "reach", reach, job={"jobId": "reach", "function": {"handler": "f"}})
    proc = cli("run", str(job), "--data-store", str(store), "--result", "-")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert last_json(proc) == ["not found", "not found"]
