"""Reach: what a job may name (DESIGN.md "Reach"), each rule proven by the attack that broke it.

Real runs of the service (real subprocesses, files, links, a FIFO, a local HTTP server on
127.0.0.1), written as a hostile job author would write them. The catalogue of hostile values fed
to every job-named field is in test_hostile_values.py.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import write_job

from airflow_python_exec import PythonExecutionService
from airflow_python_exec.errors import JobConfigError, ProvisioningError, PythonExecError
from airflow_python_exec.handlers.data_items import DataRun
from airflow_python_exec.models import PythonJob
from airflow_python_exec.models.reach import reach_for

READ = """
    from pathlib import Path

    def read(raw):
        Path(__file__).with_name("ran").write_text("yes")
        return raw.path.read_text() if raw.path.is_file() else sorted(p.name for p in raw.path.iterdir())
"""


def airflow_home() -> Path:
    return Path(os.environ["AIRFLOW_HOME"])


def run(settings, folder: Path, **kwargs):
    lines: list[str] = []
    result = PythonExecutionService(settings).run(folder, on_line=lines.append, on_setup_line=lines.append, **kwargs)
    return result, lines


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def reach_settings(settings, store):
    return settings.override(data_store=f"file://{store}")


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _refused_before_install(settings, job) -> str:
    """Run ``job``, expecting a refusal: its one-line message, which never quotes the sibling's
    file, and no environment holds the sibling's ``private.py``."""
    with pytest.raises(JobConfigError) as info:
        run(settings, job)
    message = str(info.value)
    assert "\n" not in message and "FILE-SECRET" not in message
    assert not list((settings.cache_dir / "envs").glob("*/lib/*/site-packages/private.py"))
    return message


# -- 2. outputs: only under the data store or an allowed prefix, never through a link, never over a file


@pytest.mark.parametrize("target", ["dags/evil_dag.py", "airflow.cfg"])
def test_an_output_uri_naming_a_dag_file_or_airflow_cfg_is_refused_before_the_start(
    tmp_path, reach_settings, store, target
) -> None:
    home = airflow_home()
    victim = home / target
    before = victim.read_bytes() if victim.exists() else None
    code = "from pathlib import Path\ndef make():\n    Path(__file__).with_name('ran').write_text('yes')\n"
    code += "    p = Path(__import__('tempfile').mkdtemp()) / 'x.py'\n"
    code += "    p.write_text('[python_exec]\\nsandbox = off\\n')\n"
    code += "    return p\n"
    outputs = [{"name": "evil", "kind": "artifact", "uri": f"file://{victim}"}]
    job = write_job(tmp_path / "job", code, job={"jobId": "evil", "function": {"handler": "make", "outputs": outputs}})
    with pytest.raises(JobConfigError, match=r"outputs\[0\]\.uri: .* is outside the data store") as info:
        run(reach_settings, job)
    assert "\n" not in str(info.value)
    assert not (job / "ran").exists()  # refused before the start
    assert (victim.read_bytes() if victim.exists() else None) == before and files_in(store) == []


def test_an_output_goes_only_to_an_allowed_folder_and_never_over_a_file_nor_through_a_link(
    tmp_path, reach_settings
) -> None:
    allowed = tmp_path / "exports"
    (allowed / "sub").mkdir(parents=True)
    settings = reach_settings.override(data_allowed_uris=str(allowed))
    code = "import pandas as pd\ndef make():\n    return pd.DataFrame({'a': [1, 2]})\n"
    outputs = [{"name": "t", "format": "csv", "uri": f"FILE://{allowed}/sub/t.csv"}]
    job = write_job(tmp_path / "job", code, job={"jobId": "out", "function": {"handler": "make", "outputs": outputs}})
    result, _ = run(settings, job)
    assert result.exit_code == 0 and (allowed / "sub" / "t.csv").read_text().splitlines() == ["a", "1", "2"]
    with pytest.raises(JobConfigError, match="exists already; an output is never overwritten"):
        run(settings, job)
    # A link planted on the way (a job with a writable path could do it) is refused, not followed.
    secret = tmp_path / "secret-folder"
    secret.mkdir()
    (allowed / "sub").rename(allowed / "old")
    (allowed / "sub").symlink_to(secret)
    with pytest.raises(PythonExecError, match="symbolic link"):
        run(settings, job)
    assert list(secret.iterdir()) == []


# -- 5. inputs: the allow-list, no link at any component, bounded copies


def test_a_symlink_swapped_while_the_worker_copies_never_brings_the_hidden_file_in(tmp_path, reach_settings) -> None:
    secret = airflow_home() / "reach-test-secret.txt"
    secret.write_text("TOP-SECRET-4711")
    job_folder = write_job(tmp_path / "job", READ, job={"jobId": "swap", "function": {"handler": "read"}})
    (job_folder / "data").mkdir()
    plain, link, path = job_folder / "plain.tmp", job_folder / "link.tmp", job_folder / "data" / "x.csv"
    path.write_text("harmless")
    stop = threading.Event()

    def swap() -> None:  # what a second job with a shared writable path does, as fast as it can
        while not stop.is_set():
            link.unlink(missing_ok=True)
            link.symlink_to(secret)
            os.replace(link, path)
            plain.write_text("harmless")
            os.replace(plain, path)

    job = PythonJob.load(job_folder).with_function(inputs={"raw": "data/x.csv"})
    swapper = threading.Thread(target=swap)
    swapper.start()
    copied, refused = 0, 0
    try:
        for i in range(300):
            data = DataRun(job, reach=reach_for(reach_settings, job.folder), data_store=reach_settings.data_store)
            run_folder = tmp_path / f"run{i}"
            run_folder.mkdir()
            try:
                data.check()
                data.stage(run_folder)
            except JobConfigError as exc:
                assert "TOP-SECRET" not in str(exc)
                refused += 1
                continue
            assert (run_folder / "inputs" / "raw" / "x.csv").read_text() == "harmless"
            copied += 1
    finally:
        stop.set()
        swapper.join()
        secret.unlink()
    assert copied + refused == 300 and refused > 0  # the swap was seen, and never followed


def test_a_folder_input_holding_airflow_home_is_refused(tmp_path, reach_settings) -> None:
    parent = airflow_home().parent
    settings = reach_settings.override(data_allowed_uris=str(parent))  # even where an administrator allowed it
    job = write_job(tmp_path / "job", READ, job={"jobId": "home", "function": {"handler": "read"}})
    job_config = PythonJob.load(job).with_function(inputs={"raw": f"file://{parent}"})
    with pytest.raises(JobConfigError, match=f"holds {airflow_home()}"):
        run(settings, job_config)
    assert not (job / "ran").exists()


def test_an_input_over_the_byte_cap_is_refused_in_one_line(tmp_path, reach_settings) -> None:
    job = write_job(tmp_path / "job", READ, job={"jobId": "big", "function": {"handler": "read"}})
    with open(job / "big.bin", "wb") as f:
        f.truncate(64 << 20)  # sparse: 64 MiB that cost nothing on disk
    job_config = PythonJob.load(job).with_function(inputs={"raw": "big.bin"})
    with pytest.raises(JobConfigError, match=r"larger than 1048576 bytes \(\[python_exec\] max_data_bytes\)"):
        run(reach_settings.override(max_data_bytes=1 << 20), job_config)
    assert not (job / "ran").exists()


# -- 6. connections: only those an administrator listed


def test_a_connection_not_in_data_connections_is_refused_in_one_line(tmp_path, reach_settings) -> None:
    job = write_job(tmp_path / "job", READ, job={"jobId": "conn", "function": {"handler": "read"}})
    job_config = PythonJob.load(job).with_function(inputs={"raw": "s3://prod_db@bucket/x.csv"})
    with pytest.raises(JobConfigError) as info:
        run(reach_settings.override(data_allowed_uris="s3://bucket/"), job_config)
    assert str(info.value) == (
        "input 'raw': connection 'prod_db' in 's3://***@bucket/x.csv' is not in [python_exec] data_connections; "
        "use an allowed connection or ask an administrator to add it"
    )
    listed = reach_settings.override(data_connections="aws_default")
    with pytest.raises(JobConfigError, match="connection 'prod_db' is not in \\[python_exec\\] data_connections"):
        run(listed.override(data_store="s3://prod_db@bucket/store"), job_config)


# -- 7. requirements and sources


def test_a_requirement_naming_a_sibling_jobs_wheel_is_refused_before_any_build(tmp_path, reach_settings) -> None:
    sibling = tmp_path / "other-job" / "dist"
    sibling.mkdir(parents=True)
    (sibling / "x-1.0-py3-none-any.whl").write_bytes(b"PK")
    requirements = [f"x @ file://{sibling}/x-1.0-py3-none-any.whl"]
    job = write_job(tmp_path / "job", "print('ran')\n", job={"jobId": "w", "pythonEnv": {"requirements": requirements}})
    with pytest.raises(JobConfigError, match="is outside the job folder"):
        run(reach_settings, job)
    assert not (reach_settings.cache_dir / "envs").exists() or not any((reach_settings.cache_dir / "envs").iterdir())


@pytest.mark.parametrize("spelling", ["file://{jobs}/job/%2e%2e/sibling/{name}", "file:{rel}/sibling/{name}"])
def test_a_requirement_file_url_cannot_be_spelled_to_reach_a_sibling_jobs_wheel(
    tmp_path, reach_settings, monkeypatch, spelling
) -> None:
    """uv reads ``%2e%2e`` in a ``file:`` URL as ``..``, and ``file:x`` from its working folder (the
    worker's: ``/`` here): a decoy at the literal spelling in the job folder must not let the check
    pass while uv installs the sibling's wheel."""
    from wheels import write_wheel

    monkeypatch.chdir("/")

    jobs = tmp_path / "jobs"
    wheel = write_wheel(jobs / "sibling", "private", module="VALUE = 'FILE-SECRET-4711'\n")
    rel = str(jobs).lstrip("/")
    requirements = ["private @ " + spelling.format(jobs=jobs, rel=rel, name=wheel.name)]
    script = "import private\nprint(private.VALUE)\n"
    job = write_job(jobs / "job", script, job={"jobId": "w", "pythonEnv": {"requirements": requirements}})
    for decoy in (job / "%2e%2e" / "sibling" / wheel.name, job / rel / "sibling" / wheel.name):
        decoy.parent.mkdir(parents=True)
        decoy.write_text("decoy")
    message = _refused_before_install(reach_settings, job)
    assert "is outside the job folder" in message or "relative file: URL" in message


@pytest.mark.parametrize("path", ["/proc/self/environ", "{home}/airflow.cfg", "link.txt"])
def test_a_requirements_file_outside_the_job_folder_is_refused_and_never_quoted(
    tmp_path, reach_settings, monkeypatch, path
) -> None:
    monkeypatch.setenv("REACH_SECRET", "ENV-SECRET-0815")
    path = path.format(home=airflow_home())
    job = write_job(tmp_path / "job", "print('ran')\n", job={"jobId": "r", "pythonEnv": {"requirements": path}})
    (job / "link.txt").symlink_to(airflow_home() / "airflow.cfg")
    with pytest.raises(PythonExecError) as info:
        run(reach_settings, job)
    message = str(info.value)
    assert "\n" not in message and "ENV-SECRET" not in message and "[core]" not in message
    assert "is outside the job folder" in message or "symbolic link" in message


def test_a_git_source_in_a_sibling_folder_and_web_sources_without_network_are_refused(tmp_path, reach_settings) -> None:
    sibling = tmp_path / "secret-repo"
    (sibling / ".git").mkdir(parents=True)
    job = write_job(tmp_path / "job", "", job={"jobId": "g", "function": {"handler": "m:f", "source": "x/"}})
    for source, expected in [
        (f"git+file://{sibling}", "is outside the job folder"),
        (f"git+{sibling}", "is outside the job folder"),
        (f"git+FILE://{airflow_home()}", "is outside the job folder"),
        ("git+ext::sh", "git transport helper"),
    ]:
        with pytest.raises(JobConfigError, match=expected):
            run(reach_settings, PythonJob.load(job).with_function(source=source))
    offline = reach_settings.override(sandbox_network=False)
    for source in ["zip+https://example.org/src.zip", "git+https://example.org/r.git", "git+git@example.org:r.git"]:
        with pytest.raises(JobConfigError, match="sandbox_network is False"):
            run(offline, PythonJob.load(job).with_function(source=source))
    requirements = ["x @ https://example.org/x-1.0-py3-none-any.whl"]
    script = write_job(
        tmp_path / "script", "print('ran')\n", job={"jobId": "n", "pythonEnv": {"requirements": requirements}}
    )
    with pytest.raises(JobConfigError, match="sandbox_network is False"):
        run(offline, script)


def _git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout.strip()


def _one_commit_repo(folder: Path, returns: str) -> str:
    """A git repository at ``folder`` with one commit of ``m.py`` (``f()`` returns ``returns``); its
    commit id."""
    folder.mkdir(parents=True)
    _git("init", "-q", cwd=folder)
    (folder / "m.py").write_text(f"def f():\n    return {returns!r}\n")
    _git("add", "m.py", cwd=folder)
    _git("commit", "-q", "-m", returns, cwd=folder)
    return _git("rev-parse", "HEAD", cwd=folder)


def _borrowing_repo(tmp_path: Path, how: str) -> tuple[Path, str]:
    """A sibling job's private repository (one commit holding a secret) and, in the hostile job's
    folder, a repository that borrows its objects: through ``objects/info/alternates``, a symlinked
    ``objects`` folder, or a ``.git`` file (``gitdir:``) pointing at the sibling's. Its ``HEAD``
    names the sibling's commit, which the hostile repository itself does not hold."""
    sibling = tmp_path / "jobs" / "sibling" / "private"
    secret = _one_commit_repo(sibling, "FILE-SECRET-4711")
    job = write_job(tmp_path / "jobs" / "job", "", job={"jobId": "g", "function": {"handler": "m:f", "source": "x/"}})
    repo = job / "repo"
    repo.mkdir()
    if how == "gitdir file":
        (repo / ".git").write_text(f"gitdir: {sibling / '.git'}\n")
        return job, secret
    _git("init", "-q", cwd=repo)
    if how == "alternates":
        (repo / ".git" / "objects" / "info" / "alternates").write_text(f"{sibling / '.git' / 'objects'}\n")
    else:
        import shutil

        shutil.rmtree(repo / ".git" / "objects")
        (repo / ".git" / "objects").symlink_to(sibling / ".git" / "objects")
    _git("update-ref", "refs/heads/main", secret, cwd=repo)
    _git("symbolic-ref", "HEAD", "refs/heads/main", cwd=repo)
    return job, secret


@pytest.mark.parametrize("how", ["alternates", "symlinked objects", "gitdir file"])
def test_a_local_git_source_cannot_borrow_another_repositorys_objects(tmp_path, reach_settings, how) -> None:
    """git reads a local repository's ``objects/info/alternates``, follows links in its git folder
    and a ``.git`` file's ``gitdir:``: with the worker's rights, each would bring a sibling job's
    private commit into this job's source. Refused in one line before anything is fetched."""
    job, secret = _borrowing_repo(tmp_path, how)
    for source in (f"git+{job / 'repo'}", f"git+{job / 'repo'}@{secret}"):
        with pytest.raises(JobConfigError) as info:
            run(reach_settings, PythonJob.load(job).with_function(source=source))
        message = str(info.value)
        assert "\n" not in message and "FILE-SECRET" not in message
        assert "another repository" in message
    sources = reach_settings.cache_dir / "sources"
    assert not any("FILE-SECRET" in p.read_text(errors="replace") for p in files_in(sources))


@pytest.mark.parametrize("beside", ["repo.git", "repo.git/.git"])
def test_a_local_git_source_is_the_folder_named_not_one_git_finds_beside_it(tmp_path, reach_settings, beside) -> None:
    """git's upload-pack, given ``repo`` that is no repository, tries ``repo.git/.git`` and ``repo.git``,
    and follows a ``gitdir:`` file there: an empty ``repo`` folder passed the check while git read the
    sibling job's private repository named by ``repo.git``."""
    job, secret = _borrowing_repo(tmp_path, "gitdir file")
    sibling = tmp_path / "jobs" / "sibling" / "private"
    (job / "repo" / ".git").unlink()
    (job / beside).parent.mkdir(parents=True, exist_ok=True)
    (job / beside).write_text(f"gitdir: {sibling / '.git'}\n")
    for source in (f"git+{job / 'repo'}", f"git+{job / 'repo'}@{secret}"):
        with pytest.raises(PythonExecError) as info:
            run(reach_settings, PythonJob.load(job).with_function(source=source))
        message = str(info.value)
        assert "\n" not in message and "FILE-SECRET" not in message
        assert str(job / "repo") in message
    sources = reach_settings.cache_dir / "sources"
    assert not any("FILE-SECRET" in p.read_text(errors="replace") for p in files_in(sources))


@pytest.mark.parametrize("spelling", ["git+{job}/%2e%2e/sibling/private", "git+file://{job}/%2e%2e/sibling/private"])
def test_a_local_git_source_is_read_where_it_was_checked_not_where_git_decodes_it(
    tmp_path, reach_settings, spelling
) -> None:
    """git decodes ``%2e%2e`` (and ``%2F``) in a ``file://`` URL: the job makes a harmless
    repository at the literal path ``%2e%2e/sibling/private`` in its folder, which passes the check,
    while git, handed ``file://<that path>``, would read the sibling job's private repository."""
    job, secret = _borrowing_repo(tmp_path, "alternates")
    _one_commit_repo(job / "%2e%2e" / "sibling" / "private", "decoy")
    source = spelling.format(job=job)
    with pytest.raises(PythonExecError) as info:
        run(reach_settings, PythonJob.load(job).with_function(source=f"{source}@{secret}"))
    message = str(info.value)
    assert "\n" not in message and "FILE-SECRET" not in message
    sources = reach_settings.cache_dir / "sources"
    assert not any("FILE-SECRET" in p.read_text(errors="replace") for p in files_in(sources))


# -- 8. outputs copied with a byte cap


def test_a_sparse_artifact_over_the_cap_fails_the_run_in_one_line_and_stores_nothing(tmp_path, reach_settings, store):
    code = """
        import tempfile
        from pathlib import Path

        def make():
            path = Path(tempfile.mkdtemp()) / "huge.bin"
            with open(path, "wb") as f:
                f.truncate(256 << 20)
            return path
    """
    outputs = [{"name": "huge", "kind": "artifact"}]
    job = write_job(tmp_path / "job", code, job={"jobId": "huge", "function": {"handler": "make", "outputs": outputs}})
    with pytest.raises(PythonExecError) as info:
        run(reach_settings.override(max_data_bytes=1 << 20), job)
    assert str(info.value) == (
        "output 'huge' is not published: it is larger than 1048576 bytes ([python_exec] max_data_bytes)"
    )
    assert files_in(store) == []


# -- issue 25.3: http(s) inputs through fsspec, only where allowed


@pytest.fixture
def web(tmp_path: Path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "data.csv").write_text("city,pop\nRome,2800000\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_http_input_is_read_where_allowed_and_refused_elsewhere(tmp_path, reach_settings, web) -> None:
    job = write_job(tmp_path / "job", READ, job={"jobId": "web", "function": {"handler": "read"}})
    job_config = PythonJob.load(job).with_function(inputs={"raw": f"{web}/data.csv"})
    result, _ = run(reach_settings.override(data_allowed_uris=f"{web}/"), job_config)
    assert result.exit_code == 0 and result.result == "city,pop\nRome,2800000\n"
    with pytest.raises(JobConfigError, match="is outside the data store and \\[python_exec\\] data_allowed_uris"):
        run(reach_settings, job_config)
    with pytest.raises(JobConfigError, match="sandbox_network is False"):
        run(reach_settings.override(data_allowed_uris=f"{web}/", sandbox_network=False), job_config)
    with pytest.raises(JobConfigError, match=r"\[python_exec\] max_data_bytes"):
        run(reach_settings.override(data_allowed_uris=f"{web}/", max_data_bytes=5), job_config)
    missing = PythonJob.load(job).with_function(inputs={"raw": f"{web}/nothing.csv"})
    with pytest.raises(JobConfigError, match=r"nothing\.csv does not exist"):
        run(reach_settings.override(data_allowed_uris=f"{web}/"), missing)


def test_the_data_store_may_not_be_a_worker_place(tmp_path, settings) -> None:
    job = write_job(tmp_path / "job", READ, job={"jobId": "ds", "function": {"handler": "read"}})
    for store in [str(airflow_home() / "dags"), str(airflow_home()), "/proc/self", "/"]:
        with pytest.raises(JobConfigError, match=r"data_store .* overlaps"):
            run(settings.override(data_store=store), job)
    assert not (job / "ran").exists()


@pytest.mark.parametrize(
    "form",
    [
        "relative path",
        "absolute path",
        "file url",
        "file url, line continuation",
        "file url, tab in the scheme",
        "file url, newline in the scheme",
        "directory",
    ],
)
def test_a_lock_cannot_install_a_sibling_jobs_private_wheel(tmp_path, reach_settings, form) -> None:
    """PEP 751 lets a lock name a package by a local ``path`` (relative to the lock) or a ``file:``
    URL, which uv reads with the worker's rights: a sibling job's private wheel would end up in this
    job's environment. Each local place in the lock is held to the Reach rule before uv reads it."""
    import hashlib

    from wheels import write_wheel

    sibling = tmp_path / "jobs" / "sibling"
    wheel = write_wheel(sibling, "private", module="VALUE = 'FILE-SECRET-4711'\n")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    script = "import private\nprint(private.VALUE)\n"
    job = write_job(tmp_path / "jobs" / "job", script, job={"jobId": "l", "pythonEnv": {"pylock": "pylock.toml"}})
    where = {
        "relative path": f'path = "../sibling/{wheel.name}"',
        "absolute path": f'path = "{wheel}"',
        "file url": f'url = "file://{wheel}"',
        # TOML drops a backslash, the newline and the blanks after it in a multi-line string: the
        # text holds no "file:", the value does
        "file url, line continuation": f'url = """fi\\\n   le://{wheel}"""',
        # a URL reader drops every tab and newline, which a TOML literal string holds as written
        "file url, tab in the scheme": f"url = 'fi\tle://{wheel}'",
        "file url, newline in the scheme": f"url = '''fi\nle://{wheel}'''",
    }
    if form == "directory":
        entry = f'[packages.directory]\npath = "{sibling}"\n'
    else:
        entry = f'[[packages.wheels]]\n{where[form]}\nhashes = {{sha256 = "{digest}"}}\n'
    lock = f'lock-version = "1.0"\ncreated-by = "test"\n\n[[packages]]\nname = "private"\nversion = "1.0"\n{entry}'
    (job / "pylock.toml").write_text(lock)
    message = _refused_before_install(reach_settings, job)
    assert "pylock.toml" in message and ("outside the job folder" in message or "control character" in message)


@pytest.mark.parametrize(
    "spelling",
    [
        "file://{jobs}/job/%2e%2e/sibling/{name}",  # a URL reader takes %2e%2e for ..
        "file://{jobs}/job/../sibling/{name}?/../../job/{name}",  # the query is not part of the path
        "file://{jobs}/job/../sibling/{name}#/../../job/{name}",  # nor the fragment
        "file://{jobs}/job/..\\sibling\\{name}",  # a file: URL reader takes a backslash for /
        "file:{rel}/sibling/{name}",  # file:x is /x to a URL reader, not relative to the lock
        "file://{jobs}/job/..%2Fsibling/{name}",  # uv hands the decoded ../ to the file system
        "file://{jobs}/job/.\t./sibling/{name}",  # a URL reader drops the tab: .. again
    ],
)
def test_a_lock_file_url_cannot_be_spelled_to_reach_a_sibling_jobs_wheel(tmp_path, reach_settings, spelling) -> None:
    """The attacker makes the literal spelling exist in the job folder (a folder named ``%2e%2e``,
    a file named ``..\\sibling\\x.whl``): uv reads the URL as a URL reader does, so the check must too."""
    import hashlib

    from wheels import write_wheel

    jobs = tmp_path / "jobs"
    wheel = write_wheel(jobs / "sibling", "private", module="VALUE = 'FILE-SECRET-4711'\n")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    script = "import private\nprint(private.VALUE)\n"
    job = write_job(jobs / "job", script, job={"jobId": "l", "pythonEnv": {"pylock": "pylock.toml"}})
    url = spelling.format(jobs=jobs, rel=str(jobs).lstrip("/"), name=wheel.name)
    decoys = [
        "%2e%2e/sibling/",
        "",
        "..\\sibling\\",
        str(jobs).lstrip("/") + "/sibling/",
        "..%2Fsibling/",
        ".\t./sibling/",
    ]
    for decoy in (job / f"{d}{wheel.name}" for d in decoys):
        decoy.parent.mkdir(parents=True, exist_ok=True)  # what a check of the literal spelling finds
        decoy.write_text("decoy")
    lock = (
        'lock-version = "1.0"\ncreated-by = "test"\n\n[[packages]]\nname = "private"\nversion = "1.0"\n'
        f"[[packages.wheels]]\nurl = '{url}'\nhashes = {{sha256 = \"{digest}\"}}\n"
    )
    (job / "pylock.toml").write_text(lock)
    message = _refused_before_install(reach_settings, job)
    assert "pylock.toml" in message and any(
        m in message for m in ("outside the job folder", "encoded '/'", "control character")
    )


def test_a_lock_path_spelled_as_a_file_url_cannot_reach_a_sibling_jobs_wheel(tmp_path, reach_settings) -> None:
    """uv reads a ``path`` as a path relative to the lock: ``file:/../../<job>/x.whl`` is the folder
    ``file:`` in the job, then two levels up, then the job's absolute path again, so in the folder
    of jobs, in the sibling job named by the first component of the job's path. Read as a URL, the
    check saw ``<job>/x.whl``, a decoy the attacker put there."""
    import hashlib

    from wheels import write_wheel

    jobs = tmp_path / "jobs"
    script = "import private\nprint(private.VALUE)\n"
    job = write_job(jobs / "job", script, job={"jobId": "l", "pythonEnv": {"pylock": "pylock.toml"}})
    wheel = write_wheel(jobs / str(job).lstrip("/"), "private", module="VALUE = 'FILE-SECRET-4711'\n")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (job / wheel.name).write_text("decoy")
    (job / "file:").mkdir()
    lock = (
        'lock-version = "1.0"\ncreated-by = "test"\n\n[[packages]]\nname = "private"\nversion = "1.0"\n'
        f'[[packages.wheels]]\npath = "file:/../..{job}/{wheel.name}"\nhashes = {{sha256 = "{digest}"}}\n'
    )
    (job / "pylock.toml").write_text(lock)
    message = _refused_before_install(reach_settings, job)
    assert "pylock.toml" in message and "outside the job folder" in message


def test_a_huge_sparse_lock_is_refused_without_taking_the_workers_memory(tmp_path) -> None:
    """A job's ``pylock.toml`` made a sparse file of 4 GiB (valid TOML, then zeros): the worker read
    every start's lock whole, and the search for local places copied it twice more. Under a 1.5 GiB
    address-space limit the CLI must still refuse it in one line, quickly, before anything starts."""
    import resource
    import time

    from conftest import CLI, cli_env

    job = write_job(tmp_path / "job", "open('ran', 'w')\n", job={"jobId": "h", "pythonEnv": {"pylock": "pylock.toml"}})
    lock = job / "pylock.toml"
    lock.write_text('lock-version = "1.0"\ncreated-by = "x"\n')
    os.truncate(lock, 4 << 30)
    limit = 3 << 29

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    started = time.monotonic()
    env = cli_env(cache_dir=str(tmp_path / "cache"))
    done = subprocess.run([CLI, "run", str(job)], env=env, capture_output=True, text=True, preexec_fn=cap, timeout=120)
    assert time.monotonic() - started < 60
    assert done.returncode != 0 and "Traceback" not in done.stderr and "MemoryError" not in done.stderr
    assert [line for line in done.stderr.splitlines() if "larger than" in line], done.stderr
    assert not (job / "ran").exists()


def test_a_lock_naming_a_relative_wheel_never_reuses_another_jobs_environment(tmp_path, reach_settings) -> None:
    """The environment's key was the lock's text only: a job copying a sibling's lock (uv takes
    ``hashes = {}`` for a local wheel) got the environment built from the sibling's private wheel,
    without holding the wheel. The key now covers what each local place of the lock holds."""
    from wheels import write_wheel

    script = "import private\nprint(private.VALUE)\n"
    lock = (
        'lock-version = "1.0"\ncreated-by = "test"\n\n[[packages]]\nname = "private"\nversion = "1.0"\n'
        '[[packages.wheels]]\npath = "private-1.0-py3-none-any.whl"\nhashes = {}\n'
    )
    owner = write_job(tmp_path / "jobs" / "owner", script, job={"jobId": "o", "pythonEnv": {"pylock": "pylock.toml"}})
    write_wheel(owner, "private", module="VALUE = 'FILE-SECRET-4711'\n")
    (owner / "pylock.toml").write_text(lock)
    assert any("FILE-SECRET-4711" in line for line in run(reach_settings, owner)[1])
    thief = write_job(tmp_path / "jobs" / "thief", script, job={"jobId": "t", "pythonEnv": {"pylock": "pylock.toml"}})
    (thief / "pylock.toml").write_text(lock)
    with pytest.raises(PythonExecError) as info:
        run(reach_settings, thief)
    message = str(info.value)
    assert "\n" not in message and "FILE-SECRET" not in message and "does not exist" in message
    write_wheel(thief, "private", module="VALUE = 'own'\n")
    assert not any("FILE-SECRET" in line for line in run(reach_settings, thief)[1])


def test_provisioning_errors_for_reach_are_not_retried_builds(tmp_path, reach_settings) -> None:
    job = write_job(tmp_path / "job", "print('ran')\n", job={"jobId": "p", "pythonEnv": {"pylock": "/etc/pylock.toml"}})
    with pytest.raises(JobConfigError, match=r"pythonEnv\.pylock: '/etc/pylock\.toml' is outside the job folder"):
        run(reach_settings, job)
    missing = write_job(tmp_path / "job2", "", job={"jobId": "q", "pythonEnv": {"pylock": "pylock.toml"}})
    with pytest.raises(ProvisioningError, match="does not exist"):
        run(reach_settings, missing)
