"""The bytecode store (DESIGN.md "The environment cache"): each distribution compiled once per
interpreter, linked into every later environment; written complete-then-renamed, never writable by a
job; counted and capped with the cache. Real uv, real wheels, real ``bwrap``, real ``kill -9``."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import CLI, cli_env, write_job
from test_environments import run
from test_sandbox import requires_bwrap
from wheels import write_lock, write_wheel

from airflow_python_exec import EngineSettings
from airflow_python_exec.environments import EnvironmentProvisioner, list_environments
from airflow_python_exec.environments.bytecode import LISTING, store_dir
from airflow_python_exec.environments.cache_cap import cache_size, enforce_cap
from airflow_python_exec.environments.store import list_entries, prune_store, used_entries

#: Counts every ``.py`` file compiled at import (``SourceLoader.source_to_code``) once this runs.
COUNT_COMPILES = """
import importlib._bootstrap_external as be, sys
compiled = []
_original = be.SourceLoader.source_to_code
def _counting(self, data, path, *args, **kwargs):
    compiled.append(str(path))
    return _original(self, data, path, *args, **kwargs)
be.SourceLoader.source_to_code = _counting
"""

#: A sandboxed job's attack on the bytecode its environment links: overwrite it in place with
#: bytecode of its own, make it writable, and reach the store itself by its path.
OVERWRITE = """
import importlib.util, marshal, os, sys, tinydep
pyc = tinydep.__cached__
evil = importlib.util.MAGIC_NUMBER + b"\\x00" * 12 + marshal.dumps(compile("VALUE = 666", "x", "exec"))
for attack in ("chmod", "write", "rename"):
    try:
        if attack == "chmod":
            os.chmod(pyc, 0o666)
        elif attack == "write":
            with open(pyc, "r+b") as f:
                f.write(evil)
        else:
            open(pyc + ".new", "wb").write(evil)
            os.replace(pyc + ".new", pyc)
        print("CHANGED", attack)
    except OSError as exc:
        print("REFUSED", attack, exc.errno)
print("STORE", os.path.exists(os.environ["STORE"]))
"""


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bytecode-wheels")
    write_wheel(folder, "tinydep", module="VALUE = 42\n", extra_files={"tinydep_extra/sub.py": b"X = 1\n"})
    write_wheel(folder, "tinyapp", deps=("tinydep>=1.0",), module="import tinydep\n")
    write_wheel(folder, "tinyextra", module="EXTRA = 'small'\n")
    return folder


def locked(job_dir: Path, wheels: Path, packages: list[str], script: str = "import tinyapp\n") -> Path:
    write_lock(job_dir, wheels, packages)
    return write_job(job_dir, script, job={"jobId": job_dir.name, "pythonEnv": {"pylock": "pylock.toml"}})


def pycs(env: Path) -> dict[str, os.stat_result]:
    """The environment's ``.pyc`` files of the test packages, by path inside site-packages."""
    (site,) = env.glob("lib/python*/site-packages")
    return {str(p.relative_to(site)): p.stat() for p in site.rglob("*.pyc") if p.name.startswith(("tiny", "sub"))}


def env_of_job(settings: EngineSettings, job: Path) -> Path:
    from airflow_python_exec import PythonJob
    from airflow_python_exec.validator import PythonEngineValidator

    interpreter = PythonEngineValidator(settings).validate()
    return EnvironmentProvisioner(settings, on_line=lambda _l: None).provision(PythonJob.load(job), interpreter)


def compiled_count(setup: list[str]) -> int:
    (line,) = [line for line in setup if "files compiled" in line]
    return int(line.split("bytecode: ")[1].split(" files compiled")[0])


def test_a_second_environment_links_the_shared_bytecode_and_compiles_nothing_of_it(
    settings, tmp_path: Path, wheels: Path
) -> None:
    first = locked(tmp_path / "first", wheels, ["tinyapp"])
    result, _, setup = run(settings, first)
    assert result.exit_code == 0 and compiled_count(setup) > 0
    # The same packages under another key (one comment added to the lock): nothing compiled at all.
    same = locked(tmp_path / "same", wheels, ["tinyapp"])
    (same / "pylock.toml").write_text((same / "pylock.toml").read_text() + "# another lock, same packages\n")
    result, _, setup = run(settings, same)
    assert result.exit_code == 0 and compiled_count(setup) == 0, setup
    # Sharing them plus one small package: only that package's one module is compiled.
    second = locked(tmp_path / "second", wheels, ["tinyapp", "tinyextra"])
    result, _, setup = run(settings, second)
    assert result.exit_code == 0 and compiled_count(setup) == 1, setup
    a, b = pycs(env_of_job(settings, first)), pycs(env_of_job(settings, second))
    shared = [rel for rel in a if "tinyextra" not in rel]
    assert len(shared) == 3 and all(rel in b for rel in shared)
    assert all((a[rel].st_dev, a[rel].st_ino) == (b[rel].st_dev, b[rel].st_ino) for rel in shared)
    assert all(a[rel].st_mode & 0o222 == 0 for rel in shared)  # the store's files are read-only


def test_linked_bytecode_is_what_the_job_imports(settings, tmp_path: Path, wheels: Path) -> None:
    """Unchecked-hash bytecode stays valid whatever the sources' times: no ``.py`` of the
    environment is compiled at start-up, also where nothing could be written (read-only)."""
    script = COUNT_COMPILES + "import tinyapp, tinyextra, tinydep_extra.sub\nprint('COMPILED', compiled)\n"
    locked(tmp_path / "first", wheels, ["tinyapp"])
    run(settings, tmp_path / "first")
    job = locked(tmp_path / "second", wheels, ["tinyapp", "tinyextra"], script)
    env = env_of_job(settings, job)
    for source in env.glob("lib/python*/site-packages/**/*.py"):
        os.utime(source, (1, 1))  # uv re-extracting its cache gives new times: still valid
    result, lines, _ = run(settings, job, macros={"PYTHONDONTWRITEBYTECODE": "1"})
    assert result.exit_code == 0, lines
    assert "COMPILED []" in lines, lines


@requires_bwrap
def test_a_sandboxed_job_cannot_change_the_bytecode_another_environment_links(
    settings, wheels: Path, tmp_path: Path
) -> None:
    outside = Path(os.environ.get("BYTECODE_TEST_DIR", "/var/tmp")) / f"ape-bytecode-{os.getpid()}-{time.time_ns()}"
    try:
        cache = settings.override(cache_dir=outside / "cache")
        hostile = locked(outside / "hostile", wheels, ["tinyapp"], OVERWRITE)
        victim = locked(
            outside / "victim", wheels, ["tinyapp", "tinyextra"], "import tinydep\nprint('VALUE', tinydep.VALUE)\n"
        )
        run(cache, victim)
        store = store_dir(cache.cache_dir)
        before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in store.rglob("*.pyc")}
        result, lines, _ = run(cache.override(sandbox="bubblewrap"), hostile, macros={"STORE": str(store)})
        assert result.exit_code == 0, lines
        assert [line for line in lines if line.startswith("CHANGED")] == [], lines
        assert "STORE False" in lines
        assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in store.rglob("*.pyc")} == before
        result, lines, _ = run(cache.override(sandbox="bubblewrap"), victim)
        assert lines == ["VALUE 42"], lines
    finally:
        subprocess.run(["rm", "-rf", str(outside)], check=False)


def test_a_store_killed_mid_write_is_never_used(settings, tmp_path: Path, job_dir: Path) -> None:
    """``kill -9`` of a provisioning while it writes a store entry: the temporary folder it leaves
    is never linked, the next provisioning stores the entry complete, and prune removes the rest."""
    many = {f"manymods_pkg/m{i}.py": f"X = {i}\n".encode() for i in range(4000)}
    write_wheel(tmp_path / "w", "manymods", module="Y = 1\n", extra_files=many)
    job = locked(job_dir, tmp_path / "w", ["manymods"], "import manymods_pkg.m3999 as m\nprint('X', m.X)\n")
    store = store_dir(settings.cache_dir)
    env = {**cli_env(cache_dir=str(settings.cache_dir))}
    provision = subprocess.Popen(
        [CLI, "provision", str(job)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    seen = None
    deadline = time.monotonic() + 300
    while seen is None and provision.poll() is None and time.monotonic() < deadline:
        if store.is_dir():
            seen = next((p for p in store.iterdir() if p.name.startswith(".tmp-manymods")), None)
    os.killpg(provision.pid, signal.SIGKILL)
    provision.wait()
    assert seen is not None, "the provisioning ended before its store entry was seen being written"
    assert not any(e.name.startswith("manymods") for e in list_entries(settings.cache_dir))
    assert list_environments(settings.cache_dir)[0].provisioned is False
    result, lines, setup = run(settings, job)
    assert result.exit_code == 0 and lines == ["X 3999"], (lines, setup)
    (entry,) = [e for e in list_entries(settings.cache_dir) if e.name.startswith("manymods")]
    assert len(json.loads((entry.path / LISTING).read_text())["files"]) == 4001
    assert [p.name for p in store.iterdir() if p.name.startswith(".tmp-")] != []  # left by the kill...
    prune_store(settings.cache_dir)
    assert [p.name for p in store.iterdir() if p.name.startswith(".tmp-")] == []  # ...until prune


def test_prune_removes_the_entries_no_environment_uses(settings, tmp_path: Path, wheels: Path) -> None:
    run(settings, locked(tmp_path / "a", wheels, ["tinyapp"]))
    run(settings, locked(tmp_path / "b", wheels, ["tinyextra"]))
    assert len(list_entries(settings.cache_dir)) == 3  # tinyapp, tinydep, tinyextra
    out = subprocess.run(
        [CLI, "envs", "prune", "--unused-for", "0"],
        env=cli_env(cache_dir=str(settings.cache_dir)),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "removed: 2;" in out and "bytecode: removed 3 unused entries" in out, out
    assert list_entries(settings.cache_dir) == [] and used_entries(settings.cache_dir) == set()


def test_max_cache_bytes_removes_least_recently_used_never_one_in_use(settings, tmp_path: Path, wheels: Path) -> None:
    jobs = {
        name: locked(tmp_path / name, wheels, pkgs)
        for name, pkgs in [("old", ["tinyapp"]), ("held", ["tinyextra"]), ("newer", ["tinyapp", "tinyextra"])]
    }
    envs = {}
    for age, (name, job) in zip((300, 200, 100), jobs.items(), strict=True):
        envs[name] = env_of_job(settings, job)
        os.utime(envs[name] / ".provisioned", (time.time() - age, time.time() - age))
    total = cache_size(settings.cache_dir).total
    # Just over the cap: the least recently used environment goes, and no other.
    assert enforce_cap(settings.cache_dir, total - 1, lambda _l: None) == [envs["old"].name]
    assert envs["held"].exists() and envs["newer"].exists()
    # A build past a cap of one byte: everything goes but what runs use (held, and the new one).
    provisioner = EnvironmentProvisioner(settings, on_line=lambda _l: None)
    capped = settings.override(max_cache_bytes=1)
    with provisioner.in_use(envs["held"].name):
        result, _, setup = run(capped, locked(tmp_path / "new", wheels, ["tinydep"], "import tinydep\n"))
    assert result.exit_code == 0
    left = {e.key for e in list_environments(settings.cache_dir)}
    assert envs["held"].name in left and envs["newer"].name not in left and len(left) == 2, setup
    assert any("max_cache_bytes: removed environment" in line for line in setup), setup
    assert set(e.name for e in list_entries(settings.cache_dir)) <= used_entries(settings.cache_dir)


def test_envs_list_shows_the_caches_total(settings, tmp_path: Path, wheels: Path) -> None:
    run(settings, locked(tmp_path / "a", wheels, ["tinyapp"]))
    out = subprocess.run(
        [CLI, "envs", "list"],
        env=cli_env(cache_dir=str(settings.cache_dir)),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert out.splitlines()[-1].startswith("total: 1 environment"), out
    assert "bytecode store: 2 entries" in out.splitlines()[-1], out


def test_a_build_shows_its_progress_in_a_few_lines_on_the_clis_stderr(settings, tmp_path: Path, wheels: Path) -> None:
    job = locked(tmp_path / "job", wheels, ["tinyapp", "tinyextra"])
    done = subprocess.run(
        [CLI, "provision", str(job)],
        env=cli_env(cache_dir=str(settings.cache_dir)),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    ours = [
        line.removeprefix("[python_exec] ") for line in done.stderr.splitlines() if line.startswith("[python_exec]")
    ]
    steps = [
        "cache miss",
        "resolving and installing 3 locked packages",
        "installed 3",
        "compiling 4 files",
        "bytecode: 4 files compiled, 0 linked",
        "ready, built in ",
    ]
    found = [next((i for i, line in enumerate(ours) if step in line), None) for step in steps]
    assert None not in found and found == sorted(found), ours  # type: ignore[type-var]
    assert len(ours) <= 8 and ours[-1].endswith(" s"), ours


def test_the_download_line_names_the_packages_and_megabytes_of_this_machines_wheels() -> None:
    from conftest import REPO

    from airflow_python_exec.environments.lockfile import downloading

    line = downloading(REPO / "example_dags" / "jobs" / "world_cities" / "pylock.toml", "3.11.7")
    count, megabytes = line.split()[1], float(line.split()[3])
    assert count == "6" and 20 < megabytes < 200, line  # pandas, numpy...: one wheel each, not every platform's


def test_two_provisionings_at_once_share_one_compile(settings, tmp_path: Path, wheels: Path) -> None:
    many = {f"manymods_pkg/m{i}.py": f"X = {i}\n".encode() for i in range(1500)}
    write_wheel(wheels.parent / "shared-wheels", "manymods", module="Y = 1\n", extra_files=many)
    for wheel in wheels.glob("*.whl"):
        (wheels.parent / "shared-wheels" / wheel.name).write_bytes(wheel.read_bytes())
    jobs = [
        locked(tmp_path / "one", wheels.parent / "shared-wheels", ["manymods", "tinyextra"], "import manymods\n"),
        locked(tmp_path / "two", wheels.parent / "shared-wheels", ["manymods", "tinyapp"], "import manymods\n"),
    ]
    env = cli_env(cache_dir=str(settings.cache_dir))
    both = [subprocess.Popen([CLI, "provision", str(j)], env=env, stderr=subprocess.PIPE, text=True) for j in jobs]
    errs = [p.communicate(timeout=600)[1] for p in both]
    assert [p.returncode for p in both] == [0, 0], errs
    counts = [compiled_count(err.splitlines()) for err in errs]
    assert sum(counts) == 1501 + 1 + 3, errs  # manymods once, then each job's own package(s)
    a, b = (pycs_of(env_of_job(settings, j), "manymods_pkg/__pycache__/m1499.") for j in jobs)
    assert (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def pycs_of(env: Path, prefix: str) -> os.stat_result:
    (site,) = env.glob("lib/python*/site-packages")
    (pyc,) = [p for p in site.rglob("*.pyc") if str(p.relative_to(site)).startswith(prefix)]
    return pyc.stat()


@pytest.mark.parametrize("value", ["-5", "0", "ten gigabytes", "1e400"])
def test_a_bad_max_cache_bytes_is_refused_in_one_line(settings, value: str) -> None:
    done = subprocess.run(
        [CLI, "envs", "list"],
        env=cli_env(cache_dir=str(settings.cache_dir), max_cache_bytes=value),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == "", done
    assert done.stderr.startswith("error: [python_exec] max_cache_bytes") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_a_blank_max_cache_bytes_means_no_cap(settings) -> None:
    done = subprocess.run(
        [CLI, "envs", "list"],
        env=cli_env(cache_dir=str(settings.cache_dir), max_cache_bytes=" "),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "max_cache_bytes" not in done.stdout and "total: 0 environments" in done.stdout


#: Stands for a compile that takes long: it starts a process of its own, says both pids, and waits.
HANGING_COMPILE = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open({pids!r}, "w").write(f"{{os.getpid()}} {{child.pid}}")
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_a_stopped_provisioning_kills_the_compile_it_links_beside(
    settings, tmp_path: Path, wheels: Path, monkeypatch
) -> None:
    """The compile of a second environment's new package runs while the store's bytecode is linked:
    stopping the provisioning then kills it and what it started, removes the unfinished environment
    and stores nothing; the next provisioning builds it."""
    from airflow_python_exec import PythonJob
    from airflow_python_exec.environments import bounded
    from airflow_python_exec.errors import ProvisioningError
    from airflow_python_exec.validator import PythonEngineValidator

    env_of_job(settings, locked(tmp_path / "first", wheels, ["tinyapp"]))
    pids = tmp_path / "pids"
    monkeypatch.setattr(bounded, "COMPILE_SCRIPT", HANGING_COMPILE.format(pids=str(pids)))
    interpreter = PythonEngineValidator(settings).validate()
    job = PythonJob.load(locked(tmp_path / "second", wheels, ["tinyapp", "tinyextra"]))
    provisioner = EnvironmentProvisioner(settings, on_line=lambda _l: None)

    def stop_once_compiling() -> None:
        deadline = time.monotonic() + 120
        while not (pids.is_file() and len(pids.read_text().split()) == 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        provisioner.stop()

    stopper = threading.Thread(target=stop_once_compiling)
    stopper.start()
    started = time.monotonic()
    with pytest.raises(ProvisioningError, match="stopped"):
        provisioner.provision(job, interpreter)
    stopper.join()
    assert time.monotonic() - started < 60
    assert not any(map(alive, map(int, pids.read_text().split())))
    assert not (settings.cache_dir / "envs" / provisioner.spec(job, interpreter).key).exists()
    store = store_dir(settings.cache_dir)
    assert not [p for p in store.iterdir() if p.is_dir() and p.name.startswith(("tinyextra", ".tmp-"))]
    monkeypatch.undo()
    env = env_of_job(settings, tmp_path / "second")
    assert list(env.glob("lib/python*/site-packages/__pycache__/tinyextra.*.pyc"))
