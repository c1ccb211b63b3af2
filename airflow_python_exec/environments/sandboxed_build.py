"""Local extras built from source inside the bubblewrap sandbox (DESIGN.md "Containment and sandbox").

A folder or source archive in ``pythonEnv.local_extra_deps`` is turned into a wheel by its own build
backend, and a ``pyproject.toml`` may name an in-tree one (``backend-path = ["."]``): building it
runs the job's code. With the sandbox on, that code runs only inside a sandbox, in three steps of
which only the middle one runs anything of the job's:

1. outside, nothing of the job runs: a private build folder (in the system's temporary folder, removed
   afterwards) gets a copy of the extra (``src/<n>/``; symlinks stay links, so one pointing at a
   hidden file points at nothing inside), and a virtual environment (``env/<n>/``) holding the
   extra's ``[build-system] requires``, installed from wheels only (``--no-build``, uv's shared
   cache first): installing a wheel runs none of its code.
2. inside a sandbox with the hidden paths of a run (``AIRFLOW_HOME``, ``airflow.cfg``, ``cache_dir``,
   the home folder, the job's sibling folders, uv's shared cache with the home), network as
   ``sandbox_network``, started by :class:`~airflow_python_exec.isolation.process.JobProcess` so every
   process it starts is contained like a run's (a new PID namespace, ``--die-with-parent``):
   ``uv build --wheel --no-build-isolation --offline`` with the build environment's Python, a
   private ``UV_CACHE_DIR`` (a build can never poison the cache other jobs install from), and a
   minimal environment (none of the worker's variables but ``PATH``, ``HOME``, locale). Writable:
   only the copy, the output folder and the private cache; the build environment is read-only.
3. outside again, once every process of the build has ended: the output folder must hold exactly one
   regular ``.whl`` file (no symlink), which is installed with ``--no-deps --no-build``: no code
   runs.

Build dependencies a backend asks for at run time (``get_requires_for_build_wheel``) are not
installed: name them in ``[build-system] requires``. A project without ``[build-system]`` gets
PEP 517's fallback, ``setuptools>=40.8.0``. Wheels in ``local_extra_deps`` are installed as before.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from airflow_python_exec.errors import ProvisioningError
from airflow_python_exec.isolation.base_env import base_environment
from airflow_python_exec.isolation.sandbox import Sandbox, hidden_paths

from .uv import Uv, uv_binary

#: PEP 517's build requirements for a project without a ``[build-system]`` table.
FALLBACK_REQUIRES = ("setuptools>=40.8.0",)
#: Largest ``pyproject.toml`` read from a source archive, in bytes.
MAX_PYPROJECT_BYTES = 1 << 20


def needs_build(extra: Path) -> bool:
    """Whether installing ``extra`` runs a build backend: a folder or a source archive, not a wheel."""
    return not (extra.is_file() and extra.name.endswith(".whl"))


def build_in_sandbox(
    extras: Sequence[Path],
    python: Path,
    job_folder: Path,
    sandbox: Sandbox,
    uv: Uv,
    build_dir: Path,
    say: Callable[[str], None],
) -> list[Path]:
    """Build each extra that needs a build into a wheel, inside ``sandbox``; return what to install.

    :param extras: the job's local extras, in its order.
    :param python: the base interpreter the environment is made with (the wheels are built for it).
    :param job_folder: the job's folder: the sandbox hides its sibling folders as a run's does.
    :param build_dir: a private folder for the copies, build environments, wheels and cache (its
        ``cache``, ``out``, ``src`` and ``env`` are made here); the caller removes it.
    :param say: receives a progress line.
    :returns: ``extras`` with each folder or source archive replaced by the wheel built from it.
    :raises ProvisioningError: invalid build requirements, a failed build, or a build that did not
        leave exactly one wheel.
    """
    for folder in ("cache", "out", "src", "env"):
        (build_dir / folder).mkdir()
    uv_exe = uv_binary()
    readable = [Path(os.path.realpath(python)).parent.parent, Path(os.path.realpath(uv_exe))]
    env = base_environment(os.environ, inherit=False)
    env.update(
        UV_NO_CONFIG="1",
        UV_PYTHON_DOWNLOADS="never",
        UV_NO_PROGRESS="1",
        NO_COLOR="1",
    )
    installs: list[Path] = []
    for n, extra in enumerate(extras):
        if not needs_build(extra):
            installs.append(extra)
            continue
        source = _copy(extra, build_dir / "src" / str(n))
        build_env = build_dir / "env" / str(n)
        uv.run(f"creating the build environment of {extra.name}", ["venv", str(build_env), "--python", str(python)])
        requires = build_requires(extra)
        if requires:
            listing = build_dir / "env" / f"{n}.requires.txt"
            listing.write_text("".join(f"{r}\n" for r in requires))
            uv.run(
                f"installing the build requirements of {extra.name}",
                ["pip", "install", "--python", str(build_env / "bin" / "python"), "--no-build", "-r", str(listing)],
                offline_first=True,
            )
        # Each build sees only its own copy, output and cache: one extra's backend cannot leave
        # anything for the build of another.
        out, cache = build_dir / "out" / str(n), build_dir / "cache" / str(n)
        out.mkdir()
        cache.mkdir()
        workdir = source if source.is_dir() else source.parent
        prefix = sandbox.prefix(
            job_folder=job_folder, cwd=workdir, readable=[*readable, build_env], writable=[workdir, out, cache]
        )
        uv.run(
            f"building local extra {extra.name} in the sandbox",
            [
                *("build", "--wheel", "--no-build-isolation", "--offline"),
                *("--python", str(build_env / "bin" / "python"), "--out-dir", str(out), str(source)),
            ],
            launcher=prefix,
            env={**env, "UV_CACHE_DIR": str(cache)},
            cwd=workdir,
        )
        installs.append(_the_wheel(out, extra))
    say(f"built {sum(needs_build(e) for e in extras)} local extra(s) in the sandbox")
    return installs


def check_visible(extras: Sequence[Path], sandbox: Sandbox, job_folder: Path) -> None:
    """Refuse a local extra that lies where the sandbox hides (outside the job folder, in
    ``AIRFLOW_HOME``, the cache, the home folder, a sibling job...): installed, or copied for its
    build, by the worker, it would carry what the sandbox hides into the job's environment.

    :raises ProvisioningError: naming the extra and the fix.
    """
    own = os.path.realpath(job_folder)
    hidden = [os.path.realpath(p) for p in hidden_paths(sandbox.cache_dir, job_folder)]
    for extra in extras:
        real = os.path.realpath(extra)
        if _within(real, own):
            continue
        for folder in hidden:
            if _within(real, folder):
                raise ProvisioningError(
                    f"local extra {extra} lies in {folder}, which the sandbox hides from the job; "
                    "put the extra inside the job folder"
                )


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def build_requires(extra: Path) -> tuple[str, ...]:
    """The ``[build-system] requires`` of a source folder or archive, checked as PEP 508 strings.

    :raises ProvisioningError: unreadable TOML, or an entry that is not a requirement (an option such
        as ``--index-url`` or ``-e .`` included: they are never passed to uv).
    """
    from packaging.requirements import InvalidRequirement, Requirement

    text = _pyproject_text(extra)
    if text is None:
        return FALLBACK_REQUIRES
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        system = tomllib.loads(text).get("build-system")
    except tomllib.TOMLDecodeError as exc:
        raise ProvisioningError(f"local extra {extra}: pyproject.toml is not valid TOML ({exc}); fix it") from None
    if not isinstance(system, dict):
        return FALLBACK_REQUIRES
    requires = system.get("requires", [])
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise ProvisioningError(f"local extra {extra}: [build-system] requires must be a list of strings; fix it")
    for requirement in requires:
        try:
            Requirement(requirement)
        except InvalidRequirement:
            raise ProvisioningError(
                f"local extra {extra}: build requirement {requirement!r} is not a PEP 508 requirement; fix it"
            ) from None
    return tuple(requires)


def _pyproject_text(extra: Path) -> str | None:
    """``pyproject.toml`` of a folder, or of the top folder of a source archive; ``None`` if absent."""
    if extra.is_dir():
        path = extra / "pyproject.toml"
        return path.read_text(encoding="utf-8") if path.is_file() else None
    try:
        if zipfile.is_zipfile(extra):
            with zipfile.ZipFile(extra) as archive:
                names = [i for i in archive.infolist() if _top_pyproject(i.filename) and not i.is_dir()]
                if names and names[0].file_size <= MAX_PYPROJECT_BYTES:
                    return archive.read(names[0]).decode("utf-8")
                return None
        with tarfile.open(extra) as archive:
            for member in archive:
                if _top_pyproject(member.name) and member.isfile() and member.size <= MAX_PYPROJECT_BYTES:
                    data = archive.extractfile(member)
                    return data.read().decode("utf-8") if data is not None else None
    except (OSError, tarfile.TarError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise ProvisioningError(f"local extra {extra} cannot be read as a source archive ({exc}); fix it") from None
    return None


def _top_pyproject(name: str) -> bool:
    parts = name.strip("/").split("/")
    return len(parts) == 2 and parts[1] == "pyproject.toml"


def _copy(extra: Path, dest: Path) -> Path:
    """A private copy of ``extra`` to build from (symlinks copied as links, never followed)."""
    if extra.is_dir():
        shutil.copytree(extra, dest, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        return dest
    dest.mkdir()
    shutil.copyfile(extra, dest / extra.name)
    return dest / extra.name


def _the_wheel(out: Path, extra: Path) -> Path:
    """The one regular ``.whl`` file a build left in ``out`` (a symlink is refused: it could point at
    a file the worker may read and the job may not)."""
    found = [p for p in out.iterdir() if p.name.endswith(".whl")]  # uv adds a .gitignore
    if len(found) != 1 or not stat.S_ISREG(found[0].lstat().st_mode):
        raise ProvisioningError(
            f"building local extra {extra} left {len(found)} wheel(s) instead of one regular wheel file; "
            "fix its build backend"
        )
    return found[0]


def private_build_dir() -> Path:
    """A new private folder for :func:`build_in_sandbox` (mode 0700, in the system's temporary folder)."""
    return Path(tempfile.mkdtemp(prefix="python-exec-build-"))
