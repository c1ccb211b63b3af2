"""Configured folders reached through a symbolic link, as on a machine where ``/var/cache`` or the
DAGs folder is a link to another disk: ``cache_dir``, ``upload_folder``, ``data_store`` and the job
folder each behind a link. A job must run exactly as with the real path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CLI, SECRET, bearer, bundle, cli_env, hello_files, post_bundle, write_job
from test_sources import git, make_zip

from airflow_python_exec import EngineSettings
from airflow_python_exec.service import PythonExecutionService

CODE = "def hello(name):\n    return f'hello {name}'\n"


def behind_a_link(tmp_path: Path, name: str) -> Path:
    """A link ``<tmp>/<name>`` to the real folder ``<tmp>/disk/<name>`` (created)."""
    real = tmp_path / "disk" / name
    real.mkdir(parents=True)
    link = tmp_path / name
    link.symlink_to(real, target_is_directory=True)
    return link


def handler_job(folder: Path, form: str, tmp_path: Path) -> Path:
    """A handler job whose code is inline, in a zip in the job folder, or in a local git repository."""
    function: dict = {"handler": "hello", "parameters": {"name": form}}
    if form == "inline":
        function["code"] = CODE
    elif form == "zip":
        function.update(handler="mod:hello", source="code.zip")
    else:
        repo = folder / "repo"  # in the job folder: a repository elsewhere needs data_allowed_uris
        repo.mkdir(parents=True)
        git("init", "-q", cwd=repo)
        (repo / "mod.py").write_text(CODE)
        git("add", ".", cwd=repo)
        git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one", cwd=repo)
        function.update(handler="mod:hello", source=f"git+file://{repo}")
    write_job(folder, "", job={"jobId": f"linked-{form}", "function": function})
    if form == "zip":
        make_zip(folder / "code.zip", {"mod.py": CODE})
    return folder


def run(settings: EngineSettings, job: Path):
    service = PythonExecutionService(settings)
    try:
        return service.run(job, on_line=lambda _line: None, on_setup_line=lambda _line: None)
    finally:
        service.close()


@pytest.mark.parametrize("form", ["inline", "zip", "git"])
def test_handler_job_runs_with_cache_dir_behind_a_link(tmp_path: Path, form: str) -> None:
    """Every inline, zip or git source used to be refused: ``'app.py' is a symlink to
    /real/cache/sources/<sha>/app.py, outside the job folder``."""
    cache = behind_a_link(tmp_path, "cache")
    settings = EngineSettings(install_path=sys.prefix, cache_dir=cache)
    result = run(settings, handler_job(tmp_path / "job", form, tmp_path))
    assert (result.exit_code, result.value()) == (0, f"hello {form}")
    assert settings.cache_dir == cache.resolve()  # resolved once, in the settings
    if form != "inline":
        assert (tmp_path / "disk" / "cache" / "sources").is_dir()


@pytest.mark.parametrize("form", ["inline", "zip", "git"])
def test_handler_job_runs_from_a_job_folder_behind_a_link(tmp_path: Path, form: str) -> None:
    real = handler_job(tmp_path / "disk" / "job", form, tmp_path)
    link = tmp_path / "job"
    link.symlink_to(real, target_is_directory=True)
    result = run(EngineSettings(install_path=sys.prefix, cache_dir=tmp_path / "cache"), link)
    assert (result.exit_code, result.value()) == (0, f"hello {form}")


@pytest.mark.parametrize("sandbox", ["off", "bubblewrap"])
def test_outputs_go_to_a_data_store_behind_a_link(tmp_path: Path, sandbox: str) -> None:
    store = behind_a_link(tmp_path, "store")
    code = "import pandas as pd\ndef make():\n    return pd.DataFrame({'city': ['Rome']})\n"
    function = {"handler": "make", "outputs": [{"name": "note", "format": "csv"}]}
    job = write_job(tmp_path / "job", code, job={"jobId": "store", "function": function})
    done = subprocess.run(
        [CLI, "run", str(job), "--data-store", f"file://{store}", "--result", "-"],
        capture_output=True,
        text=True,
        env=cli_env(cache_dir=str(tmp_path / "cache"), sandbox=sandbox),
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout.strip().splitlines()[-1])["outputs"]["note"]
    # the output, beside its version record (data-items list/show read it)
    [real_file] = [p for p in (tmp_path / "disk" / "store").rglob("*") if p.is_file() and p.suffix != ".json"]
    assert real_file.read_text() == "city\nRome\n"
    assert Path(written.removeprefix("file://")).resolve() == real_file


def test_upload_into_an_upload_folder_behind_a_link_then_run(client, auth, key, monkeypatch, tmp_path: Path) -> None:
    uploads = behind_a_link(tmp_path, "uploads")
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER", str(uploads))
    answer = post_bundle(client, auth, bundle(hello_files(key, "through a link")))
    assert answer.status_code == 201, answer.text
    assert (tmp_path / "disk" / "uploads" / "hello" / "app.py").is_file()
    listed = client.get("/api/jobs", headers=bearer(auth, "viewer")).json()["jobs"]
    uploaded = str(tmp_path / "disk" / "uploads" / "hello")
    assert [job["jobId"] for job in listed if job["folder"] == uploaded] == ["hello"]
    lines: list[str] = []
    settings = EngineSettings.from_airflow_config()
    result = PythonExecutionService(settings).run(uploads / "hello", on_line=lines.append)
    assert result.exit_code == 0 and lines == [f"hello through a link {len(SECRET)}"]
