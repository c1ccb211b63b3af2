"""Environment sizes: walked once when an environment is provisioned and recorded beside its marker,
so ``envs list`` and ``envs prune`` read one small file per environment (real uv, real environments,
the real CLI)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from test_environments import cli, env_folders, locked_job, run, wheels  # noqa: F401 - fixtures

from airflow_python_exec.environments import list_environments, prune, registry


@pytest.fixture
def walks(monkeypatch) -> list[Path]:
    """Every environment whose files are walked for its size, in order."""
    walked: list[Path] = []
    real = registry.walk_size

    def counting(path: Path) -> int:
        walked.append(path)
        return real(path)

    monkeypatch.setattr(registry, "walk_size", counting)
    return walked


def test_the_size_is_recorded_when_provisioned_and_read_by_envs_list(settings, locked_job: Path) -> None:
    run(settings, locked_job)
    (env,) = env_folders(settings)
    recorded = json.loads((env / ".size").read_text())["bytes"]
    assert recorded > 0 and abs(registry.walk_size(env) - recorded) <= 8192  # the record's own block
    (env / ".size").write_text(json.dumps({"bytes": 5 * 1024 * 1024}))  # what envs list shows is the record
    out, err = cli("envs", "list", settings=settings).communicate(timeout=60)
    assert "5.0 MiB" in out, (out, err)


def test_an_older_environment_gets_its_size_walked_once(settings, locked_job: Path, walks) -> None:
    """Provisioned before sizes were recorded (no .size): the first listing walks and records it, the
    next ones only read the record."""
    run(settings, locked_job)
    (env,) = env_folders(settings)
    (env / ".size").unlink()
    walks.clear()
    (first,) = list_environments(settings.cache_dir)
    (again,) = list_environments(settings.cache_dir)
    assert walks == [env]
    assert first.size_bytes == again.size_bytes == json.loads((env / ".size").read_text())["bytes"] > 0


def test_prune_walks_no_environment_it_keeps(settings, locked_job: Path, walks) -> None:
    """Neither a recently used environment nor one in use is walked; of the removed ones only those
    without a record are, and a dry run records what it walked."""
    run(settings, locked_job)
    (env,) = env_folders(settings)
    (env / ".size").unlink()
    walks.clear()
    removed, busy = prune(settings.cache_dir, unused_for_s=3600)
    assert (removed, busy, walks) == ([], [], [])
    old = time.time() - 8 * 86400
    os.utime(env / ".last_used", (old, old))
    os.utime(env / ".provisioned", (old, old))
    (would,), _ = prune(settings.cache_dir, unused_for_s=7 * 86400, dry_run=True)
    assert would.size_bytes > 0 and walks == [env] and (env / ".size").is_file()
    walks.clear()
    (gone,), _ = prune(settings.cache_dir, unused_for_s=7 * 86400)
    assert gone.size_bytes == would.size_bytes and walks == [] and not env.exists()


def test_an_unfinished_environment_is_walked_but_not_recorded(settings, locked_job: Path) -> None:
    """No marker: still being built (or left by a killed build), so its size is not final."""
    run(settings, locked_job)
    (env,) = env_folders(settings)
    (env / ".size").unlink()
    (env / ".provisioned").unlink()
    (listed,) = list_environments(settings.cache_dir)
    assert not listed.provisioned and listed.size_bytes > 0 and not (env / ".size").exists()
