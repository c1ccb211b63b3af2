"""The environment cache key covers exactly the bytes that are built (DESIGN.md "The environment
cache"; issue 23, point 4).

The attack: an attacker's local extra equal to the victim's but for a ``zipfile.pyc`` got the same
key (``*.pyc`` and ``__pycache__`` were skipped by the digest, yet copied by the build), so the victim
ran in the attacker's environment. And an extra changed between the key and the build must never be
built under the old key.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_job
from wheels import write_wheel

from airflow_python_exec.environments import EnvironmentProvisioner
from airflow_python_exec.environments.key import content_digest
from airflow_python_exec.errors import ProvisioningError
from airflow_python_exec.models import PythonJob
from airflow_python_exec.validator import PythonEngineValidator

PYPROJECT = """[project]
name = "victim-pkg"
version = "1.0"
"""


def job_with_extra(folder: Path, extra_files: dict[str, bytes]) -> PythonJob:
    extra = folder / "extra"
    (extra / "victim_pkg").mkdir(parents=True)
    (extra / "pyproject.toml").write_text(PYPROJECT)
    (extra / "victim_pkg" / "__init__.py").write_text("def upload(secret):\n    return None\n")
    for rel, data in extra_files.items():
        (extra / rel).parent.mkdir(parents=True, exist_ok=True)
        (extra / rel).write_bytes(data)
    write_job(folder, "print('ran')\n", job={"jobId": folder.name, "pythonEnv": {"local_extra_deps": ["extra"]}})
    return PythonJob.load(folder)


@pytest.mark.parametrize(
    "poison",
    ["zipfile.pyc", "victim_pkg/__pycache__/__init__.cpython-311.pyc", "__pycache__/zipfile.cpython-311.pyc"],
)
def test_extras_differing_only_by_bytecode_get_different_environments(tmp_path, settings, poison) -> None:
    interpreter = PythonEngineValidator(settings).validate()
    victim = job_with_extra(tmp_path / "victim", {})
    attacker = job_with_extra(tmp_path / "attacker", {poison: b"\x6f\x0d\x0d\x0a poisoned bytecode"})
    provisioner = EnvironmentProvisioner(settings)
    assert provisioner.spec(attacker, interpreter).key != provisioner.spec(victim, interpreter).key


def test_the_copy_that_is_built_has_the_digest_of_the_key(tmp_path) -> None:
    extra = job_with_extra(tmp_path / "job", {"zipfile.pyc": b"bytes", "bin/tool": b"#!/bin/sh\n"}).folder / "extra"
    (extra / "bin" / "tool").chmod(0o755)
    copy = tmp_path / "copy" / "extra"
    copy.parent.mkdir()
    assert content_digest(extra, copy) == content_digest(extra) == content_digest(copy)
    assert (copy / "zipfile.pyc").read_bytes() == b"bytes" and (copy / "bin" / "tool").stat().st_mode & 0o100


def test_an_extra_changed_after_its_key_was_made_is_refused_and_nothing_is_left(tmp_path, settings) -> None:
    """The extra is swapped for another wheel of the same name between the key and the build."""
    wheel = write_wheel(tmp_path / "job" / "dist", "swapped", module="WHO = 'the reviewed code'\n")
    job = write_job(
        tmp_path / "job", "print('ran')\n", job={"jobId": "swap", "pythonEnv": {"local_extra_deps": [str(wheel)]}}
    )

    def swap_on_miss(line: str) -> None:
        if "cache miss" in line:
            write_wheel(wheel.parent, "swapped", module="WHO = 'the attacker'\n")

    interpreter = PythonEngineValidator(settings).validate()
    provisioner = EnvironmentProvisioner(settings, on_line=swap_on_miss)
    with pytest.raises(ProvisioningError, match=r"local extra .*swapped-1\.0.* changed while .* run the job again"):
        provisioner.provision(PythonJob.load(job), interpreter)
    envs = settings.cache_dir / "envs"
    assert not [p for p in envs.iterdir() if p.is_dir()], "a half-built environment was left"
