"""The source distribution holds what ships: the package, its docs, its tests and the shipped
examples, never a job folder of a user's own in ``example_dags/`` (README's "Your first job"
puts one there, with a Fernet token in its ``job.json``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import REPO, shipped

#: What the sdist may hold at its top (PKG-INFO is the build's own).
ALLOWED_TOP = {
    "airflow_python_exec",
    "docs",
    "tests",
    "tests_e2e",
    "scripts",
    "example_dags",
    "Makefile",
    "mkdocs.yml",
    "pyproject.toml",
    "README.md",
    "CHANGELOG.md",
    "LICENSE",
    "PKG-INFO",
    ".gitignore",
}


def checkout(target: Path) -> Path:
    """A copy of the files git tracks (every file outside a git checkout, e.g. an unpacked sdist)."""
    if (REPO / ".git").exists():
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
        names = [name for name in listed.stdout.decode().split("\0") if name]
    else:
        names = [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file()]
    for name in names:
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return target


def add_users_own_job(tree: Path) -> None:
    """What "Your first job" in the README adds: a job folder with a secure macro, and its DAG."""
    job = tree / "example_dags" / "jobs" / "my_first_job"
    job.mkdir(parents=True)
    (job / "app.py").write_text("print('hello')\n")
    macro = {"key": "PASSWORD", "value": "gAAAAABusers-own-token", "secure": True}
    (job / "job.json").write_text(json.dumps({"jobId": "my_first_job", "runtimeConfig": {"macros": [macro]}}))
    (tree / "example_dags" / "my_first_job.py").write_text("# the user's DAG\n")


def test_the_sdist_holds_the_package_docs_tests_and_shipped_examples_only(tmp_path: Path) -> None:
    uv = Path(sys.executable).parent / "uv"
    if not uv.exists():
        pytest.skip("uv is not installed beside this Python (make test installs it)")
    tree = checkout(tmp_path / "clone")
    add_users_own_job(tree)
    dist = tmp_path / "dist"
    subprocess.run([str(uv), "build", "--sdist", "--out-dir", str(dist), str(tree)], check=True, timeout=300)
    [sdist] = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {name.split("/")[0] for name in names} <= ALLOWED_TOP
    assert not [name for name in names if "my_first_job" in name]
    examples = {str(p.relative_to(REPO)) for p in shipped(REPO / "example_dags", "**/*") if p.is_file()}
    assert examples and examples <= names, sorted(examples - names)
    for needed in ("airflow_python_exec/__init__.py", "docs/index.md", "tests/conftest.py", "LICENSE"):
        assert needed in names, needed
