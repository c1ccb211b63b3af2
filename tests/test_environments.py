"""Cached and ephemeral job environments built with real uv from real PEP 751 locks (no network)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import filelock
import pytest
from conftest import CLI, cli_env, env_of, read_only, unprivileged, write_job
from wheels import write_lock, write_wheel

from airflow_python_exec import EngineSettings, PythonExecutionService, PythonJob
from airflow_python_exec.environments import EnvironmentProvisioner, prune
from airflow_python_exec.environments.key import environment_key
from airflow_python_exec.errors import JobConfigError, ProvisioningError, PythonExecError
from airflow_python_exec.validator import PythonEngineValidator

APP = "import sys, tinyapp\nprint('tinyapp', tinyapp.tinydep.VALUE, sys.version_info[:2])\n"


@pytest.fixture(scope="session")
def wheels(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    write_wheel(folder, "tinydep", module="VALUE = 42\n")
    write_wheel(
        folder,
        "tinyapp",
        deps=("tinydep>=1.0",),
        script=("tinyapp-hello", "tinyapp:main"),
        module="import tinydep\ndef main():\n    print('hello from tinyapp', tinydep.VALUE)\n",
    )
    write_wheel(folder, "myextra", deps=("not-in-the-lock>=1",), module="NAME = 'extra'\n")
    return folder


@pytest.fixture
def locked_job(job_dir: Path, wheels: Path) -> Path:
    write_lock(job_dir, wheels, ["tinyapp"])
    return write_job(job_dir, APP, job={"jobId": "locked", "pythonEnv": {"pylock": "pylock.toml"}})


def run(settings: EngineSettings, job, **kwargs):
    lines, setup = [], []
    result = PythonExecutionService(settings).run(job, on_line=lines.append, on_setup_line=setup.append, **kwargs)
    return result, lines, setup


def env_folders(settings: EngineSettings) -> list[Path]:
    envs = settings.cache_dir / "envs"
    eph = settings.cache_dir / "ephemeral"
    return [p for d in (envs, eph) if d.is_dir() for p in d.iterdir() if p.is_dir()]


def cli(*args: str, settings: EngineSettings, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [CLI, *args],
        env=cli_env(cache_dir=str(settings.cache_dir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


# -- the cache key -----------------------------------------------------------------------------


def test_key_follows_content_not_paths_or_times(tmp_path: Path, wheels: Path) -> None:
    lock = write_lock(tmp_path / "a", wheels, ["tinyapp"])
    extra = wheels / "myextra-1.0-py3-none-any.whl"
    base = environment_key(Path("/py"), "3.11.7", lock, [extra])
    os.utime(lock, (0, 0))
    copy = tmp_path / "b" / "pylock.toml"
    copy.parent.mkdir()
    copy.write_bytes(lock.read_bytes())
    assert environment_key(Path("/py"), "3.11.7", lock, [extra]) == base  # touched
    assert environment_key(Path("/py"), "3.11.7", copy, [extra]) == base  # same bytes elsewhere
    assert environment_key(Path("/py"), "3.11.8", lock, [extra]) != base  # interpreter version
    lock.write_bytes(lock.read_bytes() + b" ")
    assert environment_key(Path("/py"), "3.11.7", lock, [extra]) != base  # one byte of the lock
    rebuilt = write_wheel(tmp_path / "w", "myextra", module="NAME = 'changed'\n")
    assert environment_key(Path("/py"), "3.11.7", copy, [rebuilt]) != base  # extra content
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "m.py").write_text("x = 1\n")
    before = environment_key(Path("/py"), "3.11.7", None, [folder])
    (folder / "m.py").write_text("x = 2\n")
    assert environment_key(Path("/py"), "3.11.7", None, [folder]) != before


# -- cached ------------------------------------------------------------------------------------


@pytest.mark.smoke
def test_second_run_is_a_cache_hit(settings, locked_job: Path) -> None:
    result, lines, setup = run(settings, locked_job)
    assert result.exit_code == 0 and lines[0].startswith("tinyapp 42")
    assert any("cache miss" in line for line in setup)
    assert any(line.startswith("[uv] ") for line in setup)
    assert not any("preview" in line.lower() for line in setup)
    result, lines, setup = run(settings, locked_job)
    assert result.exit_code == 0
    assert len(setup) == 1 and setup[0].startswith("[python_exec] cache hit: environment ")
    (env,) = env_folders(settings)
    marker = json.loads((env / ".provisioned").read_text())
    assert marker["job_id"] == "locked" and "tinyapp==1.0" in marker["installed"]


def test_installed_packages_have_compiled_bytecode(settings, locked_job: Path) -> None:
    """A sandboxed environment is read-only and many hosts set PYTHONDONTWRITEBYTECODE=1: without
    bytecode written at provisioning, every start of the job would recompile its packages."""
    run(settings, locked_job)
    (env,) = env_folders(settings)
    (module,) = env.glob("lib/python*/site-packages/tinyapp*.py")
    compiled = list((module.parent / "__pycache__").glob(f"{module.stem}.*.pyc"))
    assert compiled, f"no bytecode for {module.name} in {env}"


def provision_with_extra(settings: EngineSettings, job_dir: Path, wheel: Path) -> tuple[Path, int, str]:
    """``airflow-python-exec provision`` of a job whose one local extra is ``wheel``: the job folder,
    the exit status and stderr. The wheel is copied into the job folder (a job names only its own files)."""
    (job_dir / "dist").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(wheel, job_dir / "dist" / wheel.name)
    job = write_job(
        job_dir, "print('job ran')\n", job={"jobId": "extra", "pythonEnv": {"local_extra_deps": [f"dist/{wheel.name}"]}}
    )
    provision = cli("provision", str(job), settings=settings)
    _, err = provision.communicate(timeout=300)
    return job, provision.returncode, err


def test_provisioning_runs_no_pth_file_of_an_installed_package(settings, job_dir: Path, tmp_path: Path) -> None:
    """A package's ``.pth`` file is code that ``site`` runs at every start of the environment's Python.
    Compiling bytecode must not start that Python with ``site`` (``uv pip install --compile-bytecode``
    does): provisioning runs as the worker, outside the sandbox, so a locked wheel or a local extra
    would run its code there. The job's own run does start ``site``, which proves the file is live."""
    marker = tmp_path / "pth-ran"
    wheel = write_wheel(
        tmp_path / "wheels",
        "pthbomb",
        extra_files={"zz_pthbomb.pth": f"import pathlib; pathlib.Path({str(marker)!r}).write_text('ran')\n".encode()},
    )
    job, status, err = provision_with_extra(settings, job_dir, wheel)
    assert status == 0, err
    (env,) = env_folders(settings)
    assert list(env.glob("lib/python*/site-packages/__pycache__/pthbomb.*.pyc")), "no bytecode compiled"
    assert not marker.exists(), "provisioning ran the .pth file of an installed package"
    result, lines, _ = run(settings, job)
    assert result.exit_code == 0 and "job ran" in lines
    assert marker.read_text() == "ran"


def test_a_wheel_that_rewrites_pyvenv_cfg_is_refused_before_its_stdlib_runs(
    settings, job_dir: Path, tmp_path: Path
) -> None:
    """The attack: a wheel ships ``<name>.data/data/pyvenv.cfg`` whose ``home`` points at a standard
    library of the job's, so whatever starts the environment's interpreter next on the worker (the
    bytecode compile, uv inspecting it) imports the job's ``encodings`` as the worker."""
    marker = tmp_path / "stdlib-ran"
    fake = tmp_path / "fake"
    for minor in range(10, 15):
        stdlib = fake / "lib" / f"python3.{minor}"
        (stdlib / "encodings").mkdir(parents=True)
        (stdlib / "os.py").write_text("#\n")
        (stdlib / "encodings" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    wheel = write_wheel(
        tmp_path / "wheels",
        "evilcfg",
        extra_files={"evilcfg-1.0.data/data/pyvenv.cfg": f"home = {fake}/bin\n".encode()},
    )
    _, status, err = provision_with_extra(settings, job_dir, wheel)
    assert status == 3, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "replaced its environment's pyvenv.cfg" in errors[0]
    assert not marker.exists(), "the job's standard library ran on the worker"
    assert env_folders(settings) == []  # nothing half-built left behind


class RecordingStatsLogger:
    """A metrics backend for Airflow's ``Stats`` (what ``[metrics] statsd_on`` would plug in),
    keeping what it is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, object]] = []

    def incr(self, stat: str, count: int = 1, **_: object) -> None:
        self.sent.append(("incr", stat, count))

    def timing(self, stat: str, dt: object, **_: object) -> None:
        self.sent.append(("timing", stat, dt))


def test_cache_hits_misses_and_provisioning_time_reach_airflow_metrics(settings, locked_job: Path) -> None:
    from datetime import timedelta

    from airflow.sdk._shared.observability.metrics import stats as stats_module
    from airflow.sdk.observability.stats import initialize

    backend = RecordingStatsLogger()
    saved = (stats_module._factory, stats_module._export_legacy_names)
    initialize(factory=lambda: backend, export_legacy_names=False)
    try:
        run(settings, locked_job)  # cold: a miss, then a provisioning
        run(settings, locked_job)  # warm: a hit
    finally:
        initialize(factory=saved[0] or stats_module.NoStatsLogger, export_legacy_names=saved[1])
    names = [(kind, stat) for kind, stat, _ in backend.sent]
    assert names == [
        ("incr", "python_exec.environment_cache.miss"),
        ("timing", "python_exec.environment.provision_duration"),
        ("incr", "python_exec.environment_cache.hit"),
    ]
    took = backend.sent[1][2]
    assert isinstance(took, timedelta) and timedelta(0) < took < timedelta(minutes=5)


def test_unmarked_folder_is_removed_and_rebuilt(settings, locked_job: Path) -> None:
    run(settings, locked_job)
    (env,) = env_folders(settings)
    (env / ".provisioned").unlink()
    (env / "half-written").write_text("junk")
    result, _, setup = run(settings, locked_job)
    assert result.exit_code == 0
    assert any("removing unfinished environment" in line for line in setup)
    assert not (env / "half-written").exists() and (env / ".provisioned").exists()


def test_eight_processes_starting_one_cold_environment_provision_it_once(settings, locked_job: Path) -> None:
    procs = [cli("run", str(locked_job), settings=settings) for _ in range(8)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [o[1][-500:] for o in outs]
    assert all(out.startswith("tinyapp 42") for out, _ in outs)
    assert sum("cache miss" in err for _, err in outs) == 1
    assert len(env_folders(settings)) == 1


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.05, 0.1])
def test_provisioning_killed_with_sigkill_is_rebuilt_by_the_next_run(settings, locked_job: Path, delay) -> None:
    proc = cli("provision", str(locked_job), settings=settings)
    envs = settings.cache_dir / "envs"
    deadline = time.monotonic() + 60
    while not (envs.is_dir() and any(p.is_dir() for p in envs.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    result, lines, _ = run(settings, locked_job)
    assert result.exit_code == 0 and lines[0].startswith("tinyapp 42")


def test_lock_timeout_names_the_environment(settings, locked_job: Path) -> None:
    job = PythonJob.load(locked_job)
    interpreter = PythonEngineValidator(settings).validate()
    key = EnvironmentProvisioner(settings).spec(job, interpreter).key
    (settings.cache_dir / "envs").mkdir(parents=True)
    with filelock.FileLock(str(settings.cache_dir / "envs" / f"{key}.lock")):
        with pytest.raises(ProvisioningError, match=f"environment {key} is being provisioned") as info:
            run(settings.override(lock_timeout=0.5), locked_job)
    assert "\n" not in str(info.value)


def test_prune_skips_an_environment_in_use(settings, locked_job: Path) -> None:
    run(settings, locked_job)
    (env,) = env_folders(settings)
    with EnvironmentProvisioner(settings).in_use(env.name):
        removed, busy = prune(settings.cache_dir, unused_for_s=0)
        assert (removed, busy) == ([], [env.name]) and env.exists()
    removed, busy = prune(settings.cache_dir, unused_for_s=3600)
    assert removed == [] and env.exists()  # used just now
    removed, _ = prune(settings.cache_dir, unused_for_s=0, dry_run=True)
    assert [e.key for e in removed] == [env.name] and env.exists()
    removed, _ = prune(settings.cache_dir, unused_for_s=0)
    assert [e.key for e in removed] == [env.name] and not env.exists()


def test_read_only_cache_still_runs_an_environment_provisioned_there(settings, locked_job: Path) -> None:
    """A read-only cache, or one a second user owns, could not use an environment already in it:
    ``envs/<key>.inuse`` was opened read-write. The in-use lock is now taken read-only there."""
    run(settings, locked_job)
    before = sorted(p.relative_to(settings.cache_dir) for p in settings.cache_dir.rglob("*"))
    with read_only(settings.cache_dir):
        done = subprocess.run(
            unprivileged([CLI, "run", str(locked_job)]),
            capture_output=True,
            text=True,
            env=cli_env(cache_dir=str(settings.cache_dir)),
            timeout=180,
        )
    assert done.returncode == 0 and done.stdout.startswith("tinyapp 42"), done.stderr
    assert "cache hit" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.relative_to(settings.cache_dir) for p in settings.cache_dir.rglob("*")) == before


def test_read_only_cache_without_an_environment_fails_provisioning_in_one_line(settings, locked_job: Path) -> None:
    (settings.cache_dir / "envs").mkdir(parents=True)
    with read_only(settings.cache_dir):
        done = subprocess.run(
            unprivileged([CLI, "run", str(locked_job)]),
            capture_output=True,
            text=True,
            env=cli_env(cache_dir=str(settings.cache_dir)),
            timeout=180,
        )
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 3 and "Traceback" not in done.stderr
    assert last.startswith("error: ") and "Permission denied" in last and "cache_dir" in last


@pytest.mark.parametrize("extra", ["fifo", "dev-zero-link", "dangling-link", "device-itself"])
def test_local_extra_folder_with_a_special_file_is_refused_without_reading_it(settings, job_dir: Path, extra) -> None:
    """A FIFO or a /dev/zero symlink in a local extra folder hung hashing (and ignored SIGTERM)."""
    src = job_dir / "src" / "pkg"
    src.mkdir(parents=True)
    (src / "mod.py").write_text("X = 1\n")
    special = {
        "fifo": lambda p: os.mkfifo(p),
        "dev-zero-link": lambda p: p.symlink_to("/dev/zero"),
        "dangling-link": lambda p: p.symlink_to("/nowhere"),
        "device-itself": lambda p: None,
    }[extra]
    special(src / "special")
    deps = ["/dev/zero"] if extra == "device-itself" else ["src"]
    write_job(job_dir, "open('started', 'w')\n", job={"jobId": "j", "pythonEnv": {"local_extra_deps": deps}})
    proc = cli("run", str(job_dir), settings=settings)
    _, err = proc.communicate(timeout=60)
    expected = {
        "fifo": "holds pkg/special, a FIFO",
        "dev-zero-link": "holds pkg/special, a symlink",  # no link in an extra folder is followed
        "dangling-link": "holds pkg/special, a symlink",
        "device-itself": "'/dev/zero' is outside the job folder",
    }[extra]
    assert (
        proc.returncode == (2 if extra == "device-itself" else 3)
        and err.count("\n") == 1
        and err.startswith("error: ")
        and expected in err
    ), err
    assert not (job_dir / "started").exists() and env_folders(settings) == []


def test_envs_list_and_prune_cli(settings, locked_job: Path) -> None:
    run(settings, locked_job)
    out, _ = cli("envs", "list", settings=settings).communicate(timeout=60)
    assert "locked" in out and "KiB" in out
    out, _ = cli("envs", "prune", "--unused-for", "0s", "--dry-run", settings=settings).communicate(timeout=60)
    assert "would remove" in out and env_folders(settings)


def test_relative_cache_dir_is_taken_from_the_working_directory(tmp_path: Path, locked_job: Path) -> None:
    """A relative ``cache_dir`` used to break every job with an environment: the script runs from
    its job folder, where the relative environment path does not exist."""
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    proc = subprocess.run(
        [CLI, "run", str(locked_job)],
        env=cli_env(cache_dir="rel/cache"),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("tinyapp 42"), proc.stderr
    assert [p.parent for p in (workdir / "rel" / "cache" / "envs").iterdir() if p.is_dir()] == [
        workdir / "rel" / "cache" / "envs"
    ]
    assert EngineSettings(cache_dir="rel").cache_dir == Path.cwd() / "rel"


# -- ephemeral ---------------------------------------------------------------------------------


@pytest.mark.parametrize("script", [APP, "import sys\nsys.exit(5)\n"])
def test_ephemeral_environment_is_removed_after_success_and_failure(settings, locked_job: Path, script) -> None:
    (locked_job / "app.py").write_text(script)
    result, _, setup = run(settings, locked_job, refresh=True)
    assert result.exit_code in (0, 5)
    assert any("ephemeral environment" in line and "removed" in line for line in setup)
    assert env_folders(settings) == []


def test_ephemeral_environment_is_removed_after_provisioning_failure(settings, job_dir: Path, wheels: Path) -> None:
    lock = write_lock(job_dir, wheels, ["tinyapp"])
    lock.write_text(lock.read_text().replace("tinyapp-1.0-py3-none-any.whl", "tinyapp-1.0-gone.whl"))
    write_job(job_dir, APP, job={"jobId": "j", "pythonEnv": {"pylock": "pylock.toml", "refresh": True}})
    with pytest.raises(ProvisioningError):
        run(settings, job_dir)
    assert env_folders(settings) == []


@pytest.mark.parametrize(
    ("args", "origin", "kwargs"),
    [
        (["--macro", "REPORT-NAME=x"], "--macro key 'REPORT-NAME'", None),
        (["--cwd", "no/such/folder"], "cwd 'no/such/folder'", None),
        (None, "macros", {"macros": {"REPORT-NAME": "x"}}),
        (None, "cwd 'no/such/folder'", {"cwd": "no/such/folder"}),
    ],
)
def test_bad_run_arguments_are_refused_before_anything_is_built(
    settings, locked_job: Path, args, origin, kwargs
) -> None:
    """A bad macro or working directory must not cost an environment build first (issue: an
    ephemeral environment was built and removed, then the macro refused)."""
    if args is not None:
        proc = cli("run", str(locked_job), "--refresh", *args, settings=settings)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2
        assert err.startswith("error: ") and err.count("\n") == 1 and origin in err
    else:
        with pytest.raises(PythonExecError, match=re.escape(origin)) as info:
            run(settings, locked_job, refresh=True, **kwargs)
        assert not isinstance(info.value, ProvisioningError)
    assert not (settings.cache_dir / "ephemeral").exists() and env_folders(settings) == []


def test_sigterm_removes_the_ephemeral_environment(settings, locked_job: Path) -> None:
    (locked_job / "app.py").write_text("import time\nprint('running', flush=True)\ntime.sleep(600)\n")
    proc = cli("run", str(locked_job), "--refresh", settings=settings)
    assert proc.stdout.readline() == "running\n"
    assert len(env_folders(settings)) == 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    assert env_folders(settings) == []


# -- the environment the script sees -----------------------------------------------------------


def test_path_order_and_virtual_env(settings, locked_job: Path) -> None:
    (locked_job / "tools").mkdir()
    write_job(
        locked_job,
        job={
            "jobId": "j",
            "pythonEnv": {"pylock": "pylock.toml", "prepend_paths": ["tools"], "env": {"PATH": "/usr/bin:/bin"}},
        },
    )
    _result, lines, _ = run(settings, locked_job)
    env = env_of(lines)
    venv = env["VIRTUAL_ENV"]
    assert Path(venv).parent == settings.cache_dir / "envs"
    assert env["PATH"].split(":") == [f"{venv}/bin", str(locked_job / "tools"), "/usr/bin", "/bin"]


def test_local_extra_is_installed_without_its_dependencies(settings, locked_job: Path, wheels: Path) -> None:
    settings = settings.override(data_allowed_uris=str(wheels))  # a folder of wheels the administrator shares
    write_job(
        locked_job,
        "import myextra, tinyapp\nprint(myextra.NAME)\n",
        job={
            "jobId": "j",
            "pythonEnv": {"pylock": "pylock.toml", "local_extra_deps": [str(wheels / "myextra-1.0-py3-none-any.whl")]},
        },
    )
    result, lines, setup = run(settings, locked_job)
    assert (result.exit_code, lines) == (0, ["extra"])
    assert any("local extra" in line for line in setup)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("-m tinyapp", []),
        ("tinyapp-hello", ["hello from tinyapp 42"]),
        ("app.py --flag 'two words'", ["['--flag', 'two words']"]),
    ],
)
def test_module_console_script_and_path_commands(settings, locked_job: Path, command, expected) -> None:
    write_job(
        locked_job,
        "import sys\nprint(sys.argv[1:])\n",
        job={"jobId": "j", "pythonEnv": {"pylock": "pylock.toml", "command": command}},
    )
    result, lines, _ = run(settings, locked_job)
    assert (result.exit_code, lines) == (0, expected)


def test_python_version_of_another_installed_python(settings, locked_job: Path) -> None:
    wanted = "3.12" if sys.version_info[:2] != (3, 12) else "3.11"
    write_job(locked_job, APP, job={"jobId": "j", "pythonEnv": {"pylock": "pylock.toml", "python_version": wanted}})
    result, lines, _ = run(settings, locked_job)
    assert result.exit_code == 0
    assert lines[0].endswith(f"({wanted.replace('.', ', ')})")


def test_python_version_not_installed_lists_what_was_found(settings, locked_job: Path) -> None:
    write_job(locked_job, APP, job={"jobId": "j", "pythonEnv": {"pylock": "pylock.toml", "python_version": "3.99"}})
    with pytest.raises(ProvisioningError, match=r"python_version 3.99 is not installed .*found: .*3\.\d+") as info:
        run(settings, locked_job)
    assert "%d.%d" % sys.version_info[:2] in str(info.value)
    assert env_folders(settings) == []


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lock_text", "expected"),
    [
        (None, "does not exist"),
        ("lock-version = \n", "not valid TOML"),
        ("[tool.other]\nx = 1\n", "not a PEP 751 lock"),
        ("GHOST", "ghost"),
    ],
)
def test_bad_locks_fail_provisioning_with_exit_3_and_leave_nothing(settings, job_dir, wheels, lock_text, expected):
    write_job(job_dir, APP, job={"jobId": "j", "pythonEnv": {"pylock": "pylock.toml"}})
    if lock_text == "GHOST":  # a package whose wheel exists nowhere
        lock = write_lock(job_dir, wheels, ["tinydep"])
        lock_text = lock.read_text().replace("tinydep", "ghost")
    if lock_text is not None:
        (job_dir / "pylock.toml").write_text(lock_text)
    proc = cli("run", str(job_dir), settings=settings)
    _, err = proc.communicate(timeout=120)
    last = err.strip().splitlines()[-1]
    assert proc.returncode == 3
    assert last.startswith("error: ") and expected in last and "error: error" not in last
    assert env_folders(settings) == []


def test_missing_local_extra_is_a_provisioning_error(settings, locked_job: Path) -> None:
    write_job(
        locked_job,
        APP,
        job={"jobId": "j", "pythonEnv": {"pylock": "pylock.toml", "local_extra_deps": ["dist/missing.whl"]}},
    )
    with pytest.raises(ProvisioningError, match=r"local extra .*missing.whl' does not exist"):
        run(settings, locked_job)
    assert env_folders(settings) == []


@pytest.mark.parametrize(
    ("python_env", "expected"),
    [
        ({"pylock": "pylock.toml", "python_version": "three"}, "not a version"),
        ({"pylock": "pylock.toml", "refresh": "yes"}, "refresh"),
        ({"pylock": "pylock.toml", "command": "  "}, "command is empty"),
        ({"pylock": "pylock.toml", "command": "no-such-tool"}, "'no-such-tool' is not a console script"),
    ],
)
def test_bad_python_env_is_a_configuration_error(settings, locked_job: Path, python_env, expected) -> None:
    write_job(locked_job, APP, job={"jobId": "j", "pythonEnv": python_env})
    with pytest.raises(JobConfigError, match=expected):
        run(settings, locked_job)


def test_concurrent_threads_share_one_provisioning(settings, locked_job: Path) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: run(settings, locked_job), range(4)))
    assert all(r.exit_code == 0 for r, _, _ in results)
    assert sum(any("cache miss" in line for line in setup) for _, _, setup in results) == 1


def test_stop_while_waiting_for_another_provisioning(settings, locked_job: Path) -> None:
    job = PythonJob.load(locked_job)
    key = EnvironmentProvisioner(settings).spec(job, PythonEngineValidator(settings).validate()).key
    (settings.cache_dir / "envs").mkdir(parents=True)
    service = PythonExecutionService(settings)
    with filelock.FileLock(str(settings.cache_dir / "envs" / f"{key}.lock")):
        timer = __import__("threading").Timer(0.5, service.stop)
        timer.start()
        started = time.monotonic()
        with pytest.raises(ProvisioningError, match="stopped while waiting"):
            service.run(job)
        assert time.monotonic() - started < 10  # not lock_timeout (600 s)


def test_prune_removes_orphaned_ephemeral_folders_only(settings) -> None:
    import socket

    eph = settings.cache_dir / "ephemeral"
    dead = subprocess.Popen(["true"])
    dead.wait()
    for name, owner in [
        ("env_dead", {"host": socket.gethostname(), "pid": dead.pid}),
        ("env_alive", {"host": socket.gethostname(), "pid": os.getpid()}),
        ("env_other_host", {"host": "another-worker", "pid": dead.pid}),
    ]:
        (eph / name).mkdir(parents=True)
        (eph / name / ".owner").write_text(json.dumps(owner))
    prune(settings.cache_dir, unused_for_s=0)
    assert sorted(p.name for p in eph.iterdir()) == ["env_alive", "env_other_host"]


def test_damaged_marker_is_listed_as_unfinished(settings, locked_job: Path) -> None:
    from airflow_python_exec.environments import list_environments

    run(settings, locked_job)
    (env,) = env_folders(settings)
    (env / ".provisioned").write_text("{not json")
    (listed,) = list_environments(settings.cache_dir)
    assert not listed.provisioned and listed.job_id == "?"
