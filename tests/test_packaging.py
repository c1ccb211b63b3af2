"""The package as others see it: its public names, its version, its license, its front page."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import airflow_python_exec

if sys.version_info >= (3, 11):
    import tomllib
else:  # a dependency of the package on 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent


def test_every_public_name_is_listed_in_all_and_imports() -> None:
    """``__all__`` is written out for type checkers and the API docs; it must name exactly the lazy names."""
    assert sorted(airflow_python_exec.__all__) == sorted(["__version__", *airflow_python_exec._LAZY])
    for name in airflow_python_exec.__all__:
        assert getattr(airflow_python_exec, name) is not None, name


def test_the_version_is_written_in_one_place() -> None:
    """pyproject.toml takes the version from ``__version__`` (hatch), and so does the provider info."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["hatch"]["version"]["path"] == "airflow_python_exec/__init__.py"
    from airflow_python_exec.get_provider_info import get_provider_info

    assert get_provider_info()["versions"] == [airflow_python_exec.__version__]


def test_license_and_changelog_are_at_the_root() -> None:
    assert "Apache License" in (REPO / "LICENSE").read_text() and "Version 2.0" in (REPO / "LICENSE").read_text()
    assert "## [Unreleased]" in (REPO / "CHANGELOG.md").read_text()


def test_the_readme_is_a_short_front_page_whose_links_resolve() -> None:
    """DESIGN.md "Documentation and habits": at most 300 lines, with the first-job path; the rest is in docs/."""
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    assert "## Your first job" in readme
    for needed in ("export AIRFLOW_HOME=$PWD/.airflow_home", "example_dags/demo_fernet.key", "airflow dags test"):
        assert needed in readme, needed
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert local and all((REPO / link).exists() for link in local), [
        link for link in local if not (REPO / link).exists()
    ]


def test_no_module_of_the_package_is_over_400_lines() -> None:
    """DESIGN.md "Layers": a module that grows past 400 lines is split by concept (as environments/,
    sources/, models/ and cli/ are), so a reader finds one concept per file."""
    package = REPO / "airflow_python_exec"
    long = {
        str(path.relative_to(package)): lines
        for path in package.rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > 400
    }
    assert long == {}
