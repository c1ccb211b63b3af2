"""Every job-named path and URL field x a catalogue of hostile values (DESIGN.md "Reach").

One table-driven test: each row feeds one hostile value to one field, as a hostile job author (or a
DAG author passing it on) would, and expects the job refused before it starts, in one line that
quotes the value (credentials hidden) and never the content of a file, with nothing written and
nothing left. A field added later joins by one entry in :data:`FIELDS`; a new trick joins
:data:`HOSTILE`. The swapped symlink (a race, not a value) is test_reach.py's
``test_a_symlink_swapped_while_the_worker_copies_never_brings_the_hidden_file_in``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CLI, cli_env, write_job

from airflow_python_exec import PythonExecutionService
from airflow_python_exec.errors import PythonExecError
from airflow_python_exec.models import PythonJob

#: Text that only the files and variables the job must not reach hold.
SECRETS = ("ENV-SECRET-0815", "FILE-SECRET-4711", "[core]", "sql_alchemy_conn")
HANDLER = "from pathlib import Path\ndef read(raw=None):\n    Path(__file__).with_name('ran').write_text('yes')\n"


@dataclass
class Ctx:
    """The places of one row: the job folder, a sibling job with a secret, the data store."""

    job: Path
    store: Path
    settings: object
    home: Path

    @property
    def cfg(self) -> Path:
        return self.home / "airflow.cfg"


#: id -> the hostile value, made for the row's places. ``remote`` values only apply to URI fields.
HOSTILE: dict[str, Callable[[Ctx], str]] = {
    "proc-environ": lambda c: "/proc/self/environ",
    "file-proc-environ": lambda c: "file:///proc/self/environ",
    "sys": lambda c: "/sys/kernel/notes",
    "dev-zero": lambda c: "file:///dev/zero",
    "local-scheme": lambda c: f"local://{c.cfg}",
    "File-scheme": lambda c: f"File://{c.cfg}",
    "FILE-scheme": lambda c: f"FILE://{c.cfg}",
    "airflow-home": lambda c: str(c.home),
    "parent-of-airflow-home": lambda c: f"file://{c.home.parent}",
    "hidden-file-by-dotdot": lambda c: "../sibling/secret.txt",
    "dotdot-out-of-the-store": lambda c: f"file://{c.store}/../sibling/secret.txt",
    "fifo": lambda c: "pipe",
    "symlink": lambda c: "link.txt",
    "symlinked-folder": lambda c: "linked/secret.txt",
    "huge": lambda c: "x" * 100_000,
    "control-character": lambda c: "data\n.csv",
}
REMOTE: dict[str, Callable[[Ctx], str]] = {
    "url-credentials": lambda c: "s3://AKIA:hunter2@bucket/x.csv",
    "connection-not-allowed": lambda c: "s3://prod_db@bucket/x.csv",
    "http-not-allowed": lambda c: "http://127.0.0.1:9/x.csv",
}
#: Web URLs a job names for the worker to fetch: refused with ``sandbox_network = False`` (and
#: their credentials never shown).
WEB: dict[str, Callable[[Ctx], str]] = {
    "web-offline": lambda c: "https://files.example.org/src.zip",
    "web-credentials-offline": lambda c: "https://bot:hunter2@files.example.org/src.zip",
}


def _service(ctx: Ctx, job: PythonJob | Path, settings=None) -> None:
    PythonExecutionService(settings or ctx.settings).run(job, on_line=lambda _: None, on_setup_line=lambda _: None)


def _job(ctx: Ctx, **function) -> Path:
    config = {"jobId": "hostile", "function": {"handler": "read", **function}}
    (ctx.job / "job.json").write_text(json.dumps(config))
    return ctx.job


def _file_url(ctx: Ctx, value: str) -> str:
    return value if "://" in value else f"file://{value if value.startswith('/') else ctx.job / value}"


def _cli(ctx: Ctx, *args: str) -> None:
    env = cli_env(cache_dir=str(ctx.settings.cache_dir))
    proc = subprocess.run(
        [CLI, "run", str(_job(ctx)), *args, "--data-store", str(ctx.store)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    if proc.returncode != 0:
        raise PythonExecError(proc.stderr.strip().removeprefix("error: "))


def _operator(ctx: Ctx, **kwargs) -> None:
    from airflow_python_exec import PythonJobOperator

    op = PythonJobOperator(task_id="hostile", job=str(_job(ctx)), **kwargs)
    _service(ctx, op.make_job({}))


def _script(ctx: Ctx, python_env: dict | None = None, script: str = "print('ran')\n") -> None:
    config = {"jobId": "hostile", "packageName": "app.py", **({"pythonEnv": python_env} if python_env else {})}
    (ctx.job / "job.json").write_text(json.dumps(config))
    (ctx.job / "app.py").write_text(script)
    _service(ctx, ctx.job)


def _lock_place(ctx: Ctx, key: str, value: str, kind: str = "wheels") -> None:
    """A PEP 751 lock naming the hostile value as a package's local ``path`` or ``file:`` ``url``."""
    table = "[[packages.wheels]]" if kind == "wheels" else f"[packages.{kind}]"
    lock = "\n".join(
        [
            'lock-version = "1.0"',
            'created-by = "hostile"',
            "[[packages]]",
            'name = "x"',
            'version = "1.0"',
            table,
            f"{key} = {json.dumps(value)}",
            f'hashes = {{sha256 = "{"0" * 64}"}}',
        ]
    )
    (ctx.job / "pylock.toml").write_text(lock + "\n")
    _script(ctx, {"pylock": "pylock.toml"})


def _pep723(ctx: Ctx, value: str) -> None:
    dependency = json.dumps(f"x @ {_file_url(ctx, value)}")
    _script(ctx, script=f"# /// script\n# dependencies = [{dependency}]\n# ///\nprint('ran')\n")


def _offline(ctx: Ctx, **function) -> None:
    _service(ctx, _job(ctx, **function), ctx.settings.override(sandbox_network=False))


#: field id -> (applies to remote values, how the value is given to the field).
FIELDS: dict[str, tuple[bool, Callable[[Ctx, str], None]]] = {
    "function.inputs": (True, lambda c, v: _service(c, _job(c, inputs={"raw": v}))),
    "function.inputs spec": (True, lambda c, v: _service(c, _job(c, inputs={"raw": {"uri": v}}))),
    "operator inputs=": (True, lambda c, v: _operator(c, inputs={"raw": v})),
    "cli --input": (True, lambda c, v: _cli(c, "--input", f"raw={v}")),
    "function.outputs[].uri": (
        True,
        lambda c, v: _service(c, _job(c, outputs=[{"name": "o", "uri": _file_url(c, v)}])),
    ),
    "operator outputs=": (True, lambda c, v: _operator(c, outputs=[{"name": "o", "uri": _file_url(c, v)}])),
    "cli --output": (True, lambda c, v: _cli(c, "--output", f"o={_file_url(c, v)}")),
    "pythonEnv.requirements": (False, lambda c, v: _script(c, {"requirements": [f"x @ {_file_url(c, v)}"]})),
    "pythonEnv.requirements file": (False, lambda c, v: _script(c, {"requirements": v})),
    "PEP 723 dependencies": (False, _pep723),
    "pythonEnv.pylock": (False, lambda c, v: _script(c, {"pylock": v})),
    "pythonEnv.local_extra_deps": (False, lambda c, v: _script(c, {"local_extra_deps": [v]})),
    "pylock.toml packages[].wheels[].path": (False, lambda c, v: _lock_place(c, "path", v)),
    "pylock.toml packages[].archive.url": (False, lambda c, v: _lock_place(c, "url", _file_url(c, v), "archive")),
    "function.source folder": (False, lambda c, v: _service(c, _job(c, source=v))),
    "function.source zip": (False, lambda c, v: _service(c, _job(c, source=f"{v}.zip"))),
    "function.source git+file": (False, lambda c, v: _service(c, _job(c, source=f"git+{_file_url(c, v)}"))),
    "data_store (operator, CLI)": (False, lambda c, v: _service(c, _job(c), c.settings.override(data_store=v))),
}
#: Fields that fetch a web URL, fed the :data:`WEB` values.
WEB_FIELDS: dict[str, Callable[[Ctx, str], None]] = {
    "function.source zip+https": lambda c, v: _offline(c, source=f"zip+{v}"),
    "function.source git+https": lambda c, v: _offline(c, source=f"git+{v}"),
    "function.inputs http(s)": lambda c, v: _offline(c, inputs={"raw": v}),
    "pythonEnv.requirements URL": lambda c, v: _script_offline(c, v),
}


def _script_offline(ctx: Ctx, value: str) -> None:
    ctx.settings = ctx.settings.override(sandbox_network=False)
    _script(ctx, {"requirements": [f"x @ {value}"]})


#: (field, value) pairs that are no attack: ``..`` resolved out of one store folder names another
#: plain folder, a fine data store (the DAG author's own choice).
HARMLESS = {("data_store (operator, CLI)", "dotdot-out-of-the-store")}
ROWS = [
    pytest.param(field, value, id=f"{field}|{value}")
    for field, (remote, _) in FIELDS.items()
    for value in [*HOSTILE, *(REMOTE if remote else ())]
    if (field, value) not in HARMLESS
] + [pytest.param(field, value, id=f"{field}|{value}") for field in WEB_FIELDS for value in WEB]


@pytest.fixture
def ctx(tmp_path: Path, settings, monkeypatch) -> Ctx:
    monkeypatch.setenv("REACH_SECRET", "ENV-SECRET-0815")
    job = write_job(tmp_path / "jobs" / "job", HANDLER)
    sibling = tmp_path / "jobs" / "sibling"
    sibling.mkdir()
    (sibling / "secret.txt").write_text("FILE-SECRET-4711")
    (sibling / "secret.txt.zip").write_text("FILE-SECRET-4711")
    os.mkfifo(job / "pipe")
    home = Path(os.environ["AIRFLOW_HOME"])
    (job / "link.txt").symlink_to(home / "airflow.cfg")
    (job / "linked").symlink_to(sibling)
    store = tmp_path / "store"
    return Ctx(job, store, settings.override(data_store=f"file://{store}"), home)


def _shown(value: str) -> tuple[str, ...]:
    """What a refusal may quote of ``value``: itself, its last part, or its length when huge."""
    tail = value.rstrip("/").rsplit("/", 1)[-1].rsplit("@", 1)[-1]
    return (value, tail, "characters", repr(value)[1:-1][:40])


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("field", "hostile"), ROWS)
def test_a_hostile_value_in_a_job_named_field_is_refused_before_the_start(ctx: Ctx, field, hostile) -> None:
    value = {**HOSTILE, **REMOTE, **WEB}[hostile](ctx)
    before = sorted(p.name for p in ctx.home.iterdir())
    with pytest.raises(PythonExecError) as info:
        (WEB_FIELDS[field] if field in WEB_FIELDS else FIELDS[field][1])(ctx, value)
    message = str(info.value)
    assert "\n" not in message.strip(), message
    assert not any(secret in message for secret in SECRETS), message
    assert "hunter2" not in message and "Traceback" not in message, message
    assert any(part and part in message for part in _shown(value)), message
    assert not (ctx.job / "ran").exists()  # refused before the start
    assert not ctx.store.exists() or not any(p.is_file() for p in ctx.store.rglob("*"))  # nothing written
    assert sorted(p.name for p in ctx.home.iterdir()) == before  # nothing left in AIRFLOW_HOME
    cache = ctx.settings.cache_dir
    assert not (cache / "envs").exists() or not [p for p in (cache / "envs").iterdir() if p.is_dir()]
