"""Shared fixtures: job folders written on the fly, engine settings isolated per test.

The suite runs under ``make test``, which prepares the tests' own throw-away AIRFLOW_HOME
(``.airflow_home/tests``: SQLite metadata database, logs, environment cache) before pytest starts;
Airflow-side tests run real ``dag.test()`` against it, never against the demo's database.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
# The demo's home for this venv (.venv -> .airflow_home, .venv-3.12 -> .airflow_home-3.12) and the
# tests' own inside it, which `make test` prepares. An AIRFLOW_HOME pointing at the demo's (exported
# for the CLI, as the README says) is replaced by the tests' own: the tests never write the demo's.
_VENV = Path(sys.prefix).name
DEMO_HOME = REPO / (".airflow_home" + (_VENV[5:] if _VENV.startswith(".venv") else ""))
TEST_HOME = DEMO_HOME / "tests"
if os.path.realpath(os.environ.get("AIRFLOW_HOME") or DEMO_HOME) == os.path.realpath(DEMO_HOME):
    os.environ["AIRFLOW_HOME"] = str(TEST_HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from cryptography.fernet import Fernet  # noqa: E402

from airflow_python_exec import EngineSettings  # noqa: E402
from airflow_python_exec.crypto import encrypt, generate_key  # noqa: E402

#: The console script, from the environment running the tests.
CLI = str(Path(sys.executable).parent / "airflow-python-exec")

#: A script that prints its environment as one JSON line, for precedence tests.
DUMP_ENV = "import json, os\nprint('ENV=' + json.dumps(dict(os.environ)))\n"


def write_job(
    folder: Path, script: str = DUMP_ENV, *, job: dict | None = None, dotenv: str | None = None, name: str = "app.py"
) -> Path:
    """Write a job folder: ``name`` holding ``script``, optional ``job.json`` and ``.env``.

    A ``job.json`` gets ``packageName: name`` unless it sets one (or runs ``pythonEnv.command``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(script))
    if job is not None:
        if "command" not in (job.get("pythonEnv") or {}):
            job = {"packageName": name, **job}
        (folder / "job.json").write_text(json.dumps(job))
    if dotenv is not None:
        (folder / ".env").write_text(textwrap.dedent(dotenv))
    return folder


def shipped(folder: Path, pattern: str) -> list[Path]:
    """The files matching ``pattern`` under ``folder`` that ship with the project: those git tracks
    (a user's own DAG or job added beside the examples is not shipped), every match outside a git
    checkout (an unpacked sdist, which holds only what ships)."""
    found = sorted(folder.glob(pattern))
    if not (REPO / ".git").exists():
        return found
    listed = subprocess.run(["git", "ls-files", "-z", "--", str(folder)], cwd=REPO, capture_output=True, check=True)
    tracked = {REPO / name for name in listed.stdout.decode().split("\0") if name}
    return [path for path in found if path in tracked]


def cli_env(**settings: str) -> dict[str, str]:
    """Environment for a CLI subprocess: this interpreter as install_path, plus ``[python_exec]`` options."""
    extra = {f"AIRFLOW__PYTHON_EXEC__{k.upper()}": v for k, v in settings.items()}
    return {**os.environ, "AIRFLOW__PYTHON_EXEC__INSTALL_PATH": sys.prefix, **extra}


def task_log_lines(log: str, logger: str = "airflow_python_exec.job") -> list[str]:
    """The messages that ``logger`` wrote into a ``dag.test()`` task log (Airflow's console format:
    ``<time> [info     ] <message, padded> [<logger>] loc=...``). The script's output is written
    through structlog, as SubprocessHook writes, so it is in the log text, not in stdlib records."""
    import re

    pattern = re.compile(r"^\S+ \[\w+\s*\] (.*?)\s*\[" + re.escape(logger) + r"\](?: |$)", re.MULTILINE)
    return pattern.findall(log)


def env_of(lines: list[str]) -> dict[str, str]:
    """The environment a DUMP_ENV script printed."""
    for line in lines:
        if line.startswith("ENV="):
            return json.loads(line[4:])
    raise AssertionError(f"no ENV= line in output: {lines!r}")


def process_gone(pid: int, timeout: float = 5.0) -> bool:
    """True once ``pid`` has exited (a zombie waiting for a reaper counts as exited)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def unprivileged(argv: list[str]) -> list[str]:
    """``argv`` run so that file permissions bind it.

    The tests run as root, which writes anywhere whatever the modes say. Through ``setpriv`` without
    the capabilities that bypass permission checks (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
    CAP_FOWNER), root is held to the owner's permission bits like any user: a cache whose write bits
    are removed is then truly read-only for the command, as it is for a second user.
    """
    if os.geteuid() != 0:
        return argv
    drop = [shutil.which("setpriv") or "setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    try:
        subprocess.run([*drop, "true"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("running as root without a working setpriv: a read-only folder cannot be simulated")
    return [*drop, *argv]


@contextlib.contextmanager
def read_only(tree: Path) -> Iterator[None]:
    """Remove the write bits of every folder and file under ``tree`` (symlinks untouched), restoring
    them afterwards."""
    paths = [tree, *(p for p in tree.rglob("*") if not p.is_symlink())]
    modes = {p: p.stat().st_mode for p in paths}
    for path, mode in modes.items():
        path.chmod(stat.S_IMODE(mode) & ~0o222)
    try:
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(stat.S_IMODE(mode))


@pytest.fixture
def fernet_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def settings(tmp_path: Path, fernet_key: str) -> EngineSettings:
    """Settings using the interpreter running the tests (it has python-dotenv) and a private cache."""
    return EngineSettings(install_path=sys.prefix, cache_dir=tmp_path / "cache", fernet_key=fernet_key)


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    return tmp_path / "job"


# -- the "Python jobs" UI plugin (test_python_jobs_page.py, test_python_jobs_security.py) ------------

SECRET = "plain-secret-value-4711"
ENV_SECRET = "dotenv-secret-value-0815"


@pytest.fixture(scope="module")
def auth(tmp_path_factory):
    """Airflow's simple auth manager with users admin (role admin) and viewer (role viewer); yields a
    function making a real JWT for a user name."""
    from airflow.api_fastapi.app import init_auth_manager, purge_cached_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("auth")
    mp.setenv(
        "AIRFLOW__CORE__AUTH_MANAGER", "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
    )
    mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,viewer:viewer")
    mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(home / "passwords.json"))
    # 64 bytes at least: PyJWT warns (InsecureKeyLengthWarning) below that for the HS512 it signs with
    mp.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "test-secret-" + generate_key() + generate_key())
    purge_cached_app()
    manager = init_auth_manager()
    roles = {"admin": "admin", "viewer": "viewer"}
    yield lambda user: manager.generate_jwt(SimpleAuthManagerUser(username=user, role=roles[user]))
    purge_cached_app()
    mp.undo()


@pytest.fixture
def key(monkeypatch, tmp_path) -> str:
    """The server's Fernet key, this interpreter as install path, a private cache."""
    fernet_key = generate_key()
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__FERNET_KEY", fernet_key)
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__INSTALL_PATH", sys.prefix)
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__CACHE_DIR", str(tmp_path / "cache"))
    return fernet_key


def forget_job_dags() -> None:
    """Delete every job DAG (``job_*``) from the tests' metadata database: one test's uploaded job
    would otherwise own its ``jobId`` in the next test's upload folder (an upload may not take the
    ``jobId`` of another existing job folder)."""
    from airflow.api.common.delete_dag import delete_dag
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        dag_ids = session.scalars(select(DagModel.dag_id).where(DagModel.dag_id.like("job\\_%", escape="\\"))).all()
    for dag_id in dag_ids:
        delete_dag(dag_id)


@pytest.fixture
def uploads(monkeypatch, tmp_path) -> Iterator[Path]:
    """``[python_exec] upload_folder``, set and existing (with one unrelated file in it); no job DAG
    of an earlier test in the metadata database, before or after."""
    folder = tmp_path / "dags" / "uploads"
    folder.mkdir(parents=True)
    (folder / "README.txt").write_text("jobs uploaded through the UI\n")
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER", str(folder))
    forget_job_dags()
    yield folder
    forget_job_dags()


@pytest.fixture
def client(auth):
    """A TestClient of the plugin's app, and headers per user."""
    from fastapi.testclient import TestClient

    from airflow_python_exec.plugins.app import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


def bearer(auth, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {auth(user)}"}


def bundle(
    files: dict[str, str | bytes],
    *,
    top: str | None = "hello",
    links: dict[str, str] | None = None,
    extra: list[zipfile.ZipInfo] | None = None,
) -> bytes:
    """A zip of a job folder: ``files`` under ``top/`` (or at the root), plus symlinks and raw entries."""
    buf = io.BytesIO()
    prefix = f"{top}/" if top else ""
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            zf.writestr(prefix + name, content)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(prefix + name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
        for info in extra or []:
            zf.writestr(info, b"x")
    return buf.getvalue()


def hello_files(key: str, message: str = "v1") -> dict[str, str]:
    """A job with a plain macro, a secure macro and a .env; it prints its message and the secret's length."""
    return {
        "app.py": f"import os\nprint('hello {message}', len(os.environ['API_TOKEN']))\n",
        "job.json": json.dumps(
            {
                "jobId": "hello",
                "packageName": "app.py",
                "runtimeConfig": {
                    "macros": [
                        {"key": "APP_NAME", "value": "demo"},
                        {"key": "API_TOKEN", "value": encrypt(SECRET, [key]), "secure": True},
                    ]
                },
            }
        ),
        ".env": f"DB_PASSWORD={ENV_SECRET}\nREGION=eu\n",
    }


def post_bundle(client, auth, data: bytes, name: str = "hello.zip", user: str = "admin"):
    return client.post("/api/jobs", files={"file": (name, data, "application/zip")}, headers=bearer(auth, user))


def tree_digest(folder: Path) -> str:
    """A digest of every path, type and file content under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        if path.is_symlink():
            digest.update(b"L" + os.readlink(path).encode())
        elif path.is_file():
            digest.update(b"F" + path.read_bytes())
        else:
            digest.update(b"D")
    return digest.hexdigest()


def save_parsed_dags(made: list) -> None:
    """Write serialized DAGs (``LazyDeserializedDAG``) to the metadata database as the DAG processor
    does for bundle ``dags-folder``, whose row it first makes when missing (a fresh test home)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.utils.session import create_session

    DagBundlesManager().sync_bundles_to_db(deactivate_missing=False)
    with create_session() as session:
        update_dag_parsing_results_in_db("dags-folder", None, made, {}, None, set(), session=session)
