"""What the start-up shortcuts must keep: the same settings as Airflow's own configuration, an
interpreter index that notices new Pythons, probes that notice a changed interpreter, the same
errors for a command that cannot start. Behaviour only: nothing here is timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_python_exec import settings_file
from airflow_python_exec.environments import interpreter_index, interpreters
from airflow_python_exec.isolation.process import JobProcess

#: Prints the settings a fresh process gets, and whether Airflow's configuration was imported to
#: get them (``fernet_keys()`` last: it may need Airflow for ``[core] fernet_key``).
SETTINGS_OF = """
import json, sys
if sys.argv[1] == "airflow":
    import airflow.configuration  # noqa: F401  - Airflow loaded: the exact path
from airflow_python_exec.settings import EngineSettings
s = EngineSettings.from_airflow_config()
imported = "airflow.configuration" in sys.modules
out = s.model_dump(mode="json", exclude={"fernet_key"})
out["fernet_keys"] = s.fernet_keys()
print(json.dumps({"settings": out, "airflow_imported_for_options": imported}))
"""


def settings_in_new_process(home: Path, path: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__PYTHON_EXEC__")}
    full = {**clean, "AIRFLOW_HOME": str(home), "AIRFLOW_CONFIG": str(home / "airflow.cfg"), **env}
    done = subprocess.run(
        [sys.executable, "-c", SETTINGS_OF, path], capture_output=True, text=True, env=full, timeout=300, cwd=home
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def airflow_home(tmp_path: Path, python_exec: str, core_key: str) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "airflow.cfg").write_text(
        textwrap.dedent(f"""
        [core]
        fernet_key = {core_key}
        load_examples = False

        [database]
        sql_alchemy_conn = sqlite:///{home / "airflow.db"}

        [python_exec]
        """)
        + textwrap.dedent(python_exec)
    )
    return home


def test_both_configuration_paths_give_the_same_settings(tmp_path: Path, fernet_key: str) -> None:
    from cryptography.fernet import Fernet

    other = Fernet.generate_key().decode()
    home = airflow_home(
        tmp_path,
        f"""
        cache_dir = $BENCH_BASE/cache
        fernet_key = {fernet_key}, {other}
        python_downloads = manual
        lock_timeout = 30
        inherit_env = False
        """,
        core_key=Fernet.generate_key().decode(),
    )
    env = {
        "BENCH_BASE": str(tmp_path / "base"),
        "AIRFLOW__PYTHON_EXEC__LOCK_TIMEOUT": "45",
        "AIRFLOW__PYTHON_EXEC__ENABLED": "false",
    }
    fast = settings_in_new_process(home, "fast", **env)
    exact = settings_in_new_process(home, "airflow", **env)
    assert fast["airflow_imported_for_options"] is False
    assert fast["settings"] == exact["settings"]
    assert fast["settings"]["cache_dir"] == str(tmp_path / "base" / "cache")
    assert fast["settings"]["lock_timeout"] == 45 and fast["settings"]["enabled"] is False
    assert fast["settings"]["fernet_keys"] == [fernet_key, other]


def test_core_fernet_key_comes_from_airflow_on_both_paths(tmp_path: Path, fernet_key: str) -> None:
    """Unset ``[python_exec] fernet_key``: Airflow's ``[core] fernet_key``, asked of Airflow."""
    home = airflow_home(tmp_path, "cache_dir = ~/jobs-cache\n", core_key=fernet_key)
    fast = settings_in_new_process(home, "fast", HOME=str(tmp_path))
    exact = settings_in_new_process(home, "airflow", HOME=str(tmp_path))
    assert fast["settings"] == exact["settings"]
    assert fast["settings"]["fernet_keys"] == [fernet_key]
    assert fast["settings"]["cache_dir"] == str(tmp_path / "jobs-cache")


@pytest.mark.parametrize(
    ("python_exec", "env"),
    [
        ("fernet_key_cmd = cat /etc/key\n", {}),
        ("fernet_key_secret = python_exec/key\n", {}),
        ("", {"AIRFLOW__PYTHON_EXEC__FERNET_KEY_CMD": "cat /etc/key"}),
        ("", {"AIRFLOW__PYTHON_EXEC__FERNET_KEY_SECRET": "path"}),
        ("", {"AIRFLOW__SECRETS__BACKEND": "some.Backend"}),
        ("cache_dir = %(base)s/cache\nbase = /x\n", {}),
        ("", {"AIRFLOW__CORE__UNIT_TEST_MODE": "True"}),
        ("cache_dir = /a\ncache_dir = /b\n", {}),  # Airflow refuses duplicates: let it say so
    ],
)
def test_fast_path_leaves_to_airflow_what_needs_airflow(
    tmp_path: Path, monkeypatch, python_exec: str, env: dict
) -> None:
    home = airflow_home(tmp_path, python_exec, core_key="x")
    monkeypatch.setenv("AIRFLOW_CONFIG", str(home / "airflow.cfg"))
    for key in [k for k in os.environ if k.startswith("AIRFLOW__PYTHON_EXEC__")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert settings_file.read_python_exec(["cache_dir", "fernet_key"]) is None


@pytest.mark.parametrize(
    "env",
    [
        {},
        {
            "AIRFLOW__PYTHON_EXEC__CACHE_DIR": "$BENCH_BASE/cache",
            "AIRFLOW__PYTHON_EXEC__LOCK_TIMEOUT": "45",
            "AIRFLOW__PYTHON_EXEC__SANDBOX_WRITABLE_PATHS": "/data/a, ~/b",
            "AIRFLOW__PYTHON_EXEC__INHERIT_ENV": "False",
            "BENCH_BASE": "/srv/base",
        },
    ],
    ids=["defaults", "variables"],
)
def test_without_airflow_cfg_both_paths_give_the_same_settings(tmp_path: Path, fernet_key: str, env: dict) -> None:
    """A laptop or a CI job: no ``airflow.cfg`` yet. The CLI's reading (variables plus the documented
    defaults, no Airflow import, no file written) equals what Airflow's ``conf`` returns."""
    (tmp_path / "fast").mkdir()
    (tmp_path / "airflow").mkdir()
    env = {**env, "HOME": str(tmp_path), "XDG_CACHE_HOME": "", "AIRFLOW__CORE__FERNET_KEY": fernet_key}
    fast = settings_in_new_process(tmp_path / "fast", "fast", **env)
    exact = settings_in_new_process(tmp_path / "airflow", "airflow", **env)
    assert fast["airflow_imported_for_options"] is False
    assert fast["settings"] == exact["settings"]
    assert fast["settings"]["fernet_keys"] == [fernet_key]
    assert not (tmp_path / "fast" / "airflow.cfg").exists()  # reading the settings wrote nothing


def test_fast_path_needs_a_file_airflow_can_read(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONFIG", str(tmp_path / "missing.cfg"))  # Airflow would write its defaults
    monkeypatch.delenv("AIRFLOW__PYTHON_EXEC__CACHE_DIR", raising=False)
    assert settings_file.read_python_exec(["cache_dir"]) == {}
    (tmp_path / "broken.cfg").write_text("[python_exec\ncache_dir = /x\n")
    monkeypatch.setenv("AIRFLOW_CONFIG", str(tmp_path / "broken.cfg"))  # Airflow says what is wrong
    assert settings_file.read_python_exec(["cache_dir"]) is None
    home = airflow_home(tmp_path, "cache_dir = /data/cache\n", core_key="x")
    monkeypatch.setenv("AIRFLOW_CONFIG", str(home / "airflow.cfg"))
    monkeypatch.delenv("AIRFLOW__PYTHON_EXEC__CACHE_DIR", raising=False)
    assert settings_file.read_python_exec(["cache_dir"]) == {"cache_dir": "/data/cache"}


def fake_python(folder: Path, version: str, calls: Path | None = None) -> Path:
    """An executable that answers a version probe with ``version`` (and notes each call)."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "python3"
    note = f"echo x >> {calls}\n" if calls else ""
    exe.write_text(f"#!/bin/sh\n{note}echo {version}\n")
    exe.chmod(0o755)
    return exe


def test_a_probe_is_shared_until_the_interpreter_file_changes(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    exe = fake_python(tmp_path / "bin", "3.99.1", calls)
    cache = tmp_path / "cache"
    assert interpreters.probe_version(exe, cache) == "3.99.1"
    interpreters._probe_cache.clear()  # as in a new process
    assert interpreters.probe_version(exe, cache) == "3.99.1"
    assert calls.read_text().count("x") == 1
    fake_python(tmp_path / "bin", "3.99.22", calls)  # upgraded in place: another size
    interpreters._probe_cache.clear()
    assert interpreters.probe_version(exe, cache) == "3.99.22"
    assert calls.read_text().count("x") == 2


def test_interpreter_index_is_shared_and_rebuilt_when_pyenv_versions_change(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "pyenv"
    monkeypatch.setenv("PYENV_ROOT", str(root))
    fake_python(root / "versions" / "3.98.1" / "bin", "3.98.1")
    listings: list[int] = []
    real = interpreters._list_pythons

    def counted(downloads: str):
        listings.append(1)
        return real(downloads)

    monkeypatch.setattr(interpreters, "_list_pythons", counted)
    cache = tmp_path / "cache"
    first = interpreters.installed_pythons("never", cache)
    assert ("3.98.1", root / "versions" / "3.98.1" / "bin" / "python3") in first
    assert (cache / interpreter_index.INDEX).is_file()
    assert interpreters.installed_pythons("never", cache) == first  # from the index
    assert len(listings) == 1
    for folder in ("a", "b"):  # a pyenv shim sets PYENV_DIR to the working directory
        monkeypatch.setenv("PYENV_DIR", str(tmp_path / folder))
        monkeypatch.setenv("PYENV_HOOK_PATH", str(tmp_path / folder / "hooks"))
        assert interpreters.installed_pythons("never", cache) == first
    assert len(listings) == 1
    fake_python(root / "versions" / "3.98.2" / "bin", "3.98.2")  # pyenv install
    again = interpreters.installed_pythons("never", cache)
    assert len(listings) == 2
    assert ("3.98.2", root / "versions" / "3.98.2" / "bin" / "python3") in again
    assert interpreters.find_python("3.98", "never", cache) == (
        root / "versions" / "3.98.2" / "bin" / "python3",
        "3.98.2",
    )


def test_an_interpreter_replaced_in_place_rebuilds_the_listing(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "pyenv"
    monkeypatch.setenv("PYENV_ROOT", str(root))
    exe = fake_python(root / "versions" / "3.98.1" / "bin", "3.98.1")
    listings: list[int] = []
    real = interpreters._list_pythons
    monkeypatch.setattr(interpreters, "_list_pythons", lambda d: listings.append(1) or real(d))
    cache = tmp_path / "cache"
    interpreters.installed_pythons("never", cache)
    exe.write_text("#!/bin/sh\necho 3.98.1  # rebuilt\n")  # same folder entries, another file
    interpreters.installed_pythons("never", cache)
    assert len(listings) == 2


def test_a_command_that_cannot_start_raises_as_before(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        JobProcess([str(tmp_path / "missing")], dict(os.environ), tmp_path)
    plain = tmp_path / "not-executable"
    plain.write_text("")
    with pytest.raises(PermissionError):
        JobProcess([str(plain)], dict(os.environ), tmp_path)
    with pytest.raises(FileNotFoundError):
        JobProcess(["no-such-command-anywhere"], {"PATH": str(tmp_path)}, tmp_path)
