"""``EnvironmentProvisioner``: a job's virtual environment, built with uv from its PEP 751 lock.

Cached (the default): ``<cache_dir>/envs/<key>/``, content-addressed (see :mod:`.key`), shared by
every run with the same inputs, built once under a ``filelock`` lock (``envs/<key>.lock``) and used
only once its ``.provisioned`` marker exists; the marker is written last, by an atomic rename, so a
process killed at any instant leaves either a finished environment or an unmarked folder that the
next run removes and rebuilds. While a job runs it holds a shared lock on ``envs/<key>.inuse``, which
``envs prune`` must take exclusively before it removes anything.

Ephemeral (``refresh: true``): ``<cache_dir>/ephemeral/env_<pid>_<random>/``, built fresh and removed
when the job ends, however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_python_exec.errors import JobConfigError, ProvisioningError, PythonExecError
from airflow_python_exec.isolation.sandbox import sandbox_for
from airflow_python_exec.logs import PREFIX, log, provider_line
from airflow_python_exec.models import PythonEnv, PythonJob, declares_script_metadata
from airflow_python_exec.settings import EngineSettings

from . import metrics
from .bounded import Bounded, build_resources, start_compile
from .build_once import acquire_or_see_marker, disk_errors_as_provisioning, ms
from .bytecode import bytecode_plan, link_while_compiling
from .cache_files import LAST_USED, MARKER, OWNER, SIZE, check_venv_cfg, open_lock_file  # noqa: F401 - SIZE re-exported
from .interpreters import Interpreter, find_python, probe_version
from .job_paths import check_lock_places, code_reach, extra_paths, job_path, lock_digests
from .key import content_digest, environment_key, stage_extras
from .lockfile import downloading, explain_install_failure, locked_packages
from .spec import EnvironmentSpec, write_environment_marker
from .uv import Uv

if TYPE_CHECKING:
    from airflow_python_exec.models.reach import Reach


class EnvironmentProvisioner:
    """Give jobs their environments.

    :param settings: ``cache_dir``, ``lock_timeout`` and ``python_downloads`` are read.
    :param on_line: receives progress lines (prefixed ``[python_exec]`` or ``[uv]``); default: log.
    """

    def __init__(self, settings: EngineSettings, on_line: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.on_line = on_line or provider_line
        self.envs_dir = settings.cache_dir / "envs"
        self.ephemeral_dir = settings.cache_dir / "ephemeral"
        self._uv = Uv(settings, self.on_line)
        self.built = False  # True once this provisioner built an environment (the run's start line says so)
        self._compiling: Bounded | None = None  # the bytecode compile running, for stop()

    # -- public -----------------------------------------------------------------------------

    def spec(self, job: PythonJob, interpreter: Interpreter, script: Path | None = None) -> EnvironmentSpec:
        """Resolve and check the job's environment inputs, before anything is created.

        :param script: the job's main file, read for PEP 723 inline metadata (``None``: no script).
        :raises JobConfigError: invalid requirements or inline metadata.
        :raises ProvisioningError: a missing or invalid lock file or requirements file, a missing local
            extra, a ``python_version`` not installed, or no Python matching ``requires-python``.
        """
        env = job.python_env or PythonEnv()
        # The reach (real paths of the hidden places) is made at most once: this runs on every start.
        reach_of = functools.cache(lambda: code_reach(self.settings, job.folder))
        requirements, requires_python = self._requirements(job, env, script, reach_of)
        python, version = self._python(env, interpreter, requires_python)
        reach = reach_of() if env.pylock or env.local_extra_deps else None
        lock = job_path(reach, job.folder, env.pylock, "pythonEnv.pylock") if reach and env.pylock else None
        lock_digest, places = lock_digests(reach, lock) if reach and lock is not None else (None, ())  # checks it too
        extras = extra_paths(reach, job.folder, env.local_extra_deps) if reach else ()
        digests, needs = tuple(map(content_digest, extras)), None
        if requirements is not None:
            from .requirements import requirements_key

            needs = requirements_key(requirements)
        key = environment_key(
            python, version, lock, extras, needs, extra_digests=digests, lock_digest=lock_digest, places=places
        )
        return EnvironmentSpec(python, version, lock, extras, key, requirements, digests)

    def needs_environment(self, job: PythonJob, script: Path | None) -> bool:
        """True when the job gets an environment: its ``pythonEnv`` asks for one, or its script has
        PEP 723 inline metadata (found by a cheap byte search; parsed only then)."""
        return job.needs_environment or (script is not None and declares_script_metadata(script))

    def _requirements(
        self, job: PythonJob, env: PythonEnv, script: Path | None, reach_of: Callable[[], Reach]
    ) -> tuple[tuple[str, ...] | None, str | None]:
        """``(normalized requirements or None, requires-python or None)`` from ``pythonEnv`` or PEP 723;
        ``reach_of`` gives the job's reach (made once per spec)."""
        meta = None
        if script is not None and declares_script_metadata(script):
            from .requirements import read_script_metadata

            meta = read_script_metadata(script)
        if meta is not None and (env.pylock or env.requirements is not None):
            which = "pylock" if env.pylock else "requirements"
            log.warning(
                "%s: pythonEnv's %s wins over the script's PEP 723 inline metadata, which is ignored", script, which
            )
            meta = None
        if env.requirements is None and meta is None:
            return None, None
        from .requirements import normalize_requirements

        reach = reach_of()
        if meta is not None:
            return normalize_requirements(list(meta.dependencies), job.folder, reach), meta.requires_python
        return normalize_requirements(env.requirements, job.folder, reach), None  # type: ignore[arg-type]

    def _python(self, env: PythonEnv, interpreter: Interpreter, requires_python: str | None) -> tuple[Path, str]:
        """The base interpreter: ``python_version``'s, else the validated one (or, for a PEP 723
        ``requires-python`` it does not meet, the newest installed one that does)."""
        if env.python_version:
            python, _ = find_python(env.python_version, self.settings.python_downloads, self.settings.cache_dir)
            try:
                version = probe_version(python, self.settings.cache_dir)
            except PythonExecError as exc:
                raise ProvisioningError(str(exc)) from None
            if requires_python is not None:
                from .requirements import check_requires_python

                check_requires_python(requires_python, version)
            return python, version
        if requires_python is None:
            return interpreter.path, interpreter.version
        from .requirements import python_for

        return python_for(requires_python, interpreter.path, interpreter.version, self.settings.python_downloads)

    @contextlib.contextmanager
    def environment(
        self, job: PythonJob, interpreter: Interpreter, refresh: bool | None = None, script: Path | None = None
    ) -> Iterator[Path]:
        """Context manager yielding the job's environment folder for the duration of one run.

        :param refresh: ``True`` for an ephemeral environment (default: the job's ``refresh``).
        :param script: the job's main file, for PEP 723 inline metadata.
        :raises ProvisioningError: the environment cannot be built (nothing is left behind).
        """
        spec = self.spec(job, interpreter, script)
        job_refresh = job.python_env is not None and job.python_env.refresh
        if job_refresh if refresh is None else refresh:
            with self._ephemeral(job, spec) as path:
                yield path
            return
        with self.in_use(spec.key):
            path = self._cached(job, spec)
            with contextlib.suppress(OSError):  # a read-only cache still runs jobs; only "last used" goes stale
                (path / LAST_USED).touch()
            yield path

    def provision(self, job: PythonJob, interpreter: Interpreter, script: Path | None = None) -> Path:
        """Build (or find) the job's cached environment without running anything; return its folder.

        :param script: the job's main file, for PEP 723 inline metadata.
        :raises JobConfigError: the job has no environment to build.
        :raises ProvisioningError: the environment cannot be built.
        """
        if not self.needs_environment(job, script):
            raise JobConfigError(
                f"job {job.job_id!r} has no pythonEnv.pylock, requirements, local_extra_deps or python_version "
                "and no PEP 723 inline metadata; there is no environment to provision"
            )
        spec = self.spec(job, interpreter, script)
        with self.in_use(spec.key):
            return self._cached(job, spec)

    def stop(self) -> None:
        """Stop a provisioning in progress (its uv or bytecode compile process group). Safe from any thread."""
        self._uv.stop()
        compiling = self._compiling
        if compiling is not None:
            compiling.kill()

    @contextlib.contextmanager
    def in_use(self, key: str) -> Iterator[None]:
        """Hold a shared lock on ``envs/<key>.inuse`` so ``envs prune`` leaves the environment alone.

        A plain ``fcntl.flock`` shared lock: one system call on the cached-start path, where
        filelock's SQLite-backed ``ReadWriteLock`` costs milliseconds. In a cache this process may
        not write (read-only, or another user's) the lock is taken on a read-only descriptor, so an
        environment provisioned there is still usable.
        """
        with disk_errors_as_provisioning():
            self.envs_dir.mkdir(parents=True, exist_ok=True)
            fd = open_lock_file(self.envs_dir / f"{key}.inuse")
        if fd is None:
            self._say(f"{self.envs_dir} is read-only and has no {key}.inuse: running without the in-use lock")
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the lock

    # -- cached -----------------------------------------------------------------------------

    def _cached(self, job: PythonJob, spec: EnvironmentSpec) -> Path:
        with disk_errors_as_provisioning():
            return self._find_or_build(job, spec)

    def _find_or_build(self, job: PythonJob, spec: EnvironmentSpec) -> Path:
        path = self.envs_dir / spec.key
        started = time.monotonic()
        if (path / MARKER).is_file():
            self._say(f"cache hit: environment {spec.key} ({ms(started)})")
            metrics.cache_hit()
            return path
        import filelock  # ~20 ms to import: only on the cold path, never on a cache hit

        lock = filelock.FileLock(str(self.envs_dir / f"{spec.key}.lock"))
        if not acquire_or_see_marker(
            lock,
            path / MARKER,
            timeout_s=self.settings.lock_timeout,
            what=f"environment {spec.key}",
            stopped=lambda: self._uv.stopped,
        ):
            self._say(f"cache hit after waiting: environment {spec.key} ({ms(started)})")
            metrics.cache_hit()
            return path
        try:
            if (path / MARKER).is_file():  # finished between our last look and the lock
                self._say(f"cache hit after waiting: environment {spec.key} ({ms(started)})")
                metrics.cache_hit()
                return path
            self._say(f"cache miss: provisioning environment {spec.key} for job {job.job_id}")
            metrics.cache_miss()
            if path.exists():
                self._say(f"removing unfinished environment {path}")
                shutil.rmtree(path)
            site_bytes = self._build(path, job, spec)
            from .registry import record_size

            record_size(path, site_bytes)  # once, at build time; envs list reads it
        finally:
            lock.release()
        self._say(f"environment {spec.key} ready, built in {time.monotonic() - started:.1f} s")
        if self.settings.max_cache_bytes is not None:  # the new environment is held by this run: it stays
            from .cache_cap import cap_after_build

            cap_after_build(self.settings.cache_dir, self.settings.max_cache_bytes, self._say)
        return path

    # -- ephemeral --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _ephemeral(self, job: PythonJob, spec: EnvironmentSpec) -> Iterator[Path]:
        with disk_errors_as_provisioning():
            self.ephemeral_dir.mkdir(parents=True, exist_ok=True)
            path = Path(tempfile.mkdtemp(prefix="env_", dir=self.ephemeral_dir))
        try:
            started = time.monotonic()
            self._say(f"ephemeral environment {path.name} for job {job.job_id}")
            with disk_errors_as_provisioning():
                (path / OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
                self._build(path, job, spec)
            self._say(f"ephemeral environment ready, built in {time.monotonic() - started:.1f} s")
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
            self._say(f"ephemeral environment {path.name} removed")

    # -- steps ------------------------------------------------------------------------------

    def _build(self, path: Path, job: PythonJob, spec: EnvironmentSpec) -> int:
        """uv venv, resolve requirements into ``<env>/pylock.toml`` (when the job has them), install
        the lock, install local extras with --no-deps, bytecode (a sandboxed environment is read-only:
        without it every start recompiles), the marker last; a few progress lines on the way. Every
        step runs under the job's resource limits (:mod:`.bounded`)."""
        started, self.built, self._uv.resources = time.monotonic(), True, build_resources(job, self.settings)
        if spec.lock is not None:  # before anything is made: uv reads these with the worker's rights
            check_lock_places(code_reach(self.settings, job.folder), spec.lock)
        try:
            # Only the entries whose PEP 508 markers hold for this Python: a universal lock lists some
            # packages once per Python version, and .provisioned must record what was really installed.
            # Parsed (and checked) while uv makes the venv: a lock of every platform's wheels takes as long.
            with ThreadPoolExecutor(max_workers=1) as pool:
                parsed = pool.submit(locked_packages, spec.lock, spec.version) if spec.lock is not None else None
                step = time.monotonic()
                self._uv.run(
                    "creating the virtual environment",
                    ["venv", str(path), "--python", str(spec.python), "--allow-existing"],
                )
                packages = parsed.result() if parsed is not None else ()
            self._say(f"venv with Python {spec.version} ({ms(step)})")
            python = str(path / "bin" / "python")
            venv_cfg = (path / "pyvenv.cfg").read_bytes()
            lock = spec.lock
            if spec.requirements:
                from .requirements import compile_lock

                lock = path / "pylock.toml"
                packages = tuple(f"{n}=={v}" for n, v in compile_lock(spec.requirements, spec.python, lock, self._uv))
            if lock is not None:
                step = time.monotonic()
                installing = lock
                self._say(f"resolving and installing {len(packages)} locked packages, from uv's cache when it has them")
                self._uv.run(
                    f"installing {lock.name}",
                    ["pip", "install", "--python", python, "--no-build", "-r", str(lock)],
                    offline_first=True,
                    explain=lambda lines: explain_install_failure(lines, installing, spec.version),
                    on_download=lambda: self._say(downloading(installing, spec.version)),
                )
                self._say(f"installed {len(packages)} locked packages ({ms(step)})")
                check_venv_cfg(path, venv_cfg, job.job_id)
            if spec.extras:
                self._install_extras(python, job, spec)
                check_venv_cfg(path, venv_cfg, job.job_id)
            site_bytes = self._compile(spec, path)
            write_environment_marker(path / MARKER, job.job_id, spec, packages, time.monotonic() - started)
            metrics.provisioned(time.monotonic() - started)
            return site_bytes
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)  # never leave a half-built environment behind
            raise

    def _install_extras(self, python: str, job: PythonJob, spec: EnvironmentSpec) -> None:
        """Install the local extras with ``--no-deps``; with the sandbox on, those built from source
        are built into wheels inside it first (see :mod:`.sandboxed_build`), then installed without
        any build."""
        step = time.monotonic()
        sandbox = sandbox_for(self.settings)
        args = ["pip", "install", "--python", python, "--no-deps"]
        from .sandboxed_build import build_in_sandbox, check_visible, needs_build, private_build_dir

        if sandbox is not None:
            check_visible(spec.extras, sandbox, job.folder)
        staging = private_build_dir()  # what is built is the copy the key's digests were checked on
        try:
            extras = stage_extras(spec.extras, spec.extra_digests or tuple(map(content_digest, spec.extras)), staging)
            if sandbox is not None and any(map(needs_build, extras)):
                extras = build_in_sandbox(extras, spec.python, job.folder, sandbox, self._uv, staging, self._say)
                args.append("--no-build")
            self._uv.run("installing local extras", [*args, *map(str, extras)], offline_first=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._say(f"installed {len(extras)} local extra(s) without dependencies ({ms(step)})")

    def _compile(self, spec: EnvironmentSpec, path: Path) -> int:
        """Give every installed ``.py`` file its bytecode, as the last step before the marker: linked
        from the bytecode store when an earlier environment compiled the same files, else compiled
        once by the base interpreter, under the job's resource limits, and stored (see
        :mod:`.bytecode` for why never the environment's own interpreter, and for the store's rules).
        The compile (another process) runs while this one links the store's files.

        :returns: ``site-packages``' disk usage without its bytecode, bytes (walked on the way).
        :raises ProvisioningError: waiting for another process's compile timed out or was stopped,
            or the provisioning was stopped while compiling (the compile is killed).
        """
        step = time.monotonic()
        stopped, timeout_s = (lambda: self._uv.stopped), self.settings.lock_timeout
        with bytecode_plan(path, self.settings.cache_dir, spec.version, timeout_s=timeout_s, stopped=stopped) as plan:
            compiled = link_while_compiling(plan, lambda files: self._start_compile(spec, files), self._wait)
        self._say(f"bytecode: {compiled} files compiled, {plan.linked} linked from the store ({ms(step)})")
        return plan.measure()

    def _start_compile(self, spec: EnvironmentSpec, files: list[str]) -> Bounded:
        if self._uv.stopped:
            raise ProvisioningError("provisioning was stopped before it finished")
        self._say(f"compiling {len(files)} files")
        self._compiling = compiling = start_compile(spec.python, files, self._uv.resources, self._say)
        if self._uv.stopped:  # stop() ran before it could see the process
            compiling.kill()
        return compiling

    def _wait(self, compiling: Bounded) -> int:
        try:
            code = compiling.wait()
        finally:
            self._compiling = None
        if self._uv.stopped:
            raise ProvisioningError("provisioning was stopped before it finished")
        return code

    def _say(self, message: str) -> None:
        self.on_line(f"{PREFIX} {message}")
