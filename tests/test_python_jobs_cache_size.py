"""The environment cache's size on the "Python jobs" page and in ``GET /api/jobs``: the figures of
``airflow-python-exec envs list`` for the api-server's own ``cache_dir``, read at most once a minute,
and "unknown" with the reason instead of a failed page. Real environments provisioned with uv from
tiny wheels (as tests/test_bytecode_store.py), the real CLI, the plugin's app with real JWTs."""

from __future__ import annotations

import dataclasses
import socket
import subprocess

import pytest
from conftest import CLI, bearer, cli_env
from test_bytecode_store import env_of_job, locked, wheels  # noqa: F401 - wheels is a fixture

from airflow_python_exec.environments.cache_cap import human_bytes
from airflow_python_exec.plugins import cache_figures

CAP = 3 * 1024**3


def envs_list_total(cache_dir, cap: int) -> str:
    """The closing line of the real ``airflow-python-exec envs list``."""
    out = subprocess.run(
        [CLI, "envs", "list"],
        env=cli_env(cache_dir=str(cache_dir), max_cache_bytes=str(cap)),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return out.splitlines()[-1]


def total_line(cache: dict) -> str:
    """The JSON's ``cache`` object written as ``envs list`` writes its total."""
    n, stored = cache["environments"], cache["store_entries"]
    return (
        f"total: {n} environment{'s' * (n != 1)}, {human_bytes(cache['environments_bytes'])}; "
        f"bytecode store: {stored} entr{'y' if stored == 1 else 'ies'}, {human_bytes(cache['store_bytes'])}; "
        f"together {human_bytes(cache['total_bytes'])}; max_cache_bytes {human_bytes(cache['max_cache_bytes'])}"
    )


def test_the_page_and_json_show_the_cache_size_envs_list_reports(
    client, auth, key, settings, wheels, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("AIRFLOW__PYTHON_EXEC__MAX_CACHE_BYTES", str(CAP))
    assert settings.cache_dir == tmp_path / "cache"  # the one the server reads (the key fixture)
    env_of_job(settings, locked(tmp_path / "first", wheels, ["tinyapp"]))
    reads = []
    measure = cache_figures.cache_size
    monkeypatch.setattr(cache_figures, "cache_size", lambda cache_dir: reads.append(cache_dir) or measure(cache_dir))
    viewer = bearer(auth, "viewer")

    answer = client.get("/api/jobs", headers=viewer)
    assert answer.status_code == 200, answer.text
    cache = answer.json()["cache"]
    assert cache["host"] == socket.gethostname() and cache["cache_dir"] == str(settings.cache_dir)
    assert cache["error"] is None and cache["environments"] == 1 and cache["store_entries"] == 2  # tinyapp, tinydep
    assert cache["environments_bytes"] > 0 and cache["store_bytes"] > 0 and cache["max_cache_bytes"] == CAP
    assert cache["total_bytes"] == cache["environments_bytes"] + cache["store_bytes"]
    assert total_line(cache) == envs_list_total(settings.cache_dir, CAP)

    page = client.get("/", headers=viewer)
    assert page.status_code == 200
    shown = page.text.split('id="cache"')[1]
    assert f"on this machine ({socket.gethostname()})" in shown
    assert "a worker on another machine has its own <code>cache_dir</code>, not counted here" in shown
    assert f"1 environment, {human_bytes(cache['environments_bytes'])}" in shown
    assert f"2 entries, {human_bytes(cache['store_bytes'])}" in shown
    assert f"<strong>{human_bytes(cache['total_bytes'])}</strong>" in shown and "3.0 GiB" in shown
    assert len(reads) == 1  # the page's request used the figures the JSON's request read

    # A second environment: the figures kept stand for KEEP_S seconds, then are read again.
    env_of_job(settings, locked(tmp_path / "second", wheels, ["tinyapp", "tinyextra"]))
    assert client.get("/api/jobs", headers=viewer).json()["cache"] == cache and len(reads) == 1
    kept = cache_figures._kept
    assert kept is not None
    monkeypatch.setattr(cache_figures, "_kept", dataclasses.replace(kept, at=kept.at - cache_figures.KEEP_S))
    later = client.get("/api/jobs", headers=viewer).json()["cache"]
    assert later["environments"] == 2 and later["store_entries"] == 3 and len(reads) == 2
    assert total_line(later) == envs_list_total(settings.cache_dir, CAP)


@pytest.mark.parametrize("layout", ["missing", "a file"])
def test_an_unreadable_cache_dir_shows_unknown_without_failing_the_page(client, auth, key, tmp_path, layout) -> None:
    cache_dir = tmp_path / "nowhere"
    if layout == "a file":
        cache_dir.write_text("not a folder\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__PYTHON_EXEC__CACHE_DIR", str(cache_dir))
        mp.delenv("AIRFLOW__PYTHON_EXEC__MAX_CACHE_BYTES", raising=False)
        viewer = bearer(auth, "viewer")
        answer = client.get("/api/jobs", headers=viewer)
        page = client.get("/", headers=viewer)
    assert answer.status_code == 200 and page.status_code == 200
    cache = answer.json()["cache"]
    reason = "does not exist on this machine" if layout == "missing" else "Not a directory"
    assert reason in cache["error"] and str(cache_dir) in cache["error"]
    figures = ("environments", "environments_bytes", "store_entries", "store_bytes", "total_bytes", "max_cache_bytes")
    assert all(cache[name] is None for name in figures)
    shown = page.text.split('id="cache"')[1]
    assert f"on this machine ({socket.gethostname()})" in shown and f"unknown ({cache['error']})" in shown


def test_a_failing_read_shows_unknown_with_the_reason(client, auth, key, tmp_path, monkeypatch) -> None:
    (tmp_path / "cache").mkdir()

    def broken(_cache_dir):
        raise ValueError("a damaged listing")

    monkeypatch.setattr(cache_figures, "cache_size", broken)
    answer = client.get("/api/jobs", headers=bearer(auth, "admin"))
    assert answer.status_code == 200
    assert answer.json()["cache"]["error"] == "ValueError: a damaged listing"
    assert answer.json()["cache"]["total_bytes"] is None
