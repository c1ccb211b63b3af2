"""The bubblewrap sandbox: a run's script started under ``bwrap`` (DESIGN.md "Containment and sandbox").

``[python_exec] sandbox`` decides, once per run and before anything is provisioned
(:func:`sandbox_for`): ``off`` runs jobs as before; ``bubblewrap`` refuses the job
(:class:`~airflow_python_exec.errors.SandboxUnavailableError`, exit status 2) when ``bwrap`` is
missing or cannot start a sandbox here; ``auto`` falls back to ``off`` with one warning per process.
Whether ``bwrap`` works is probed once per process (and per network setting) by starting
``bwrap ... true`` with the namespaces a run uses: a worker in a container without the right to make
namespaces has a ``bwrap`` that exists but cannot start.

:meth:`Sandbox.prefix` is the ``bwrap`` command put in front of the script's argv:

- new PID, IPC and UTS namespaces, ``--unshare-net`` when ``sandbox_network`` is false;
  ``--die-with-parent``: when the ``bwrap`` process in our namespace dies (the worker died and its
  parent-death signal killed it, or a SIGKILL), the sandbox's pid 1 dies, and the kernel kills every
  process of the PID namespace with it;
- ``--cap-drop ALL``: a worker running as root would otherwise keep its capabilities inside, and
  could unmount what hides the worker's files;
- the root filesystem read-only, a fresh ``/proc`` (only the sandbox's own processes: not the
  worker's ``/proc/<pid>/environ``), a minimal ``/dev``;
- hidden, each replaced by an empty private tmpfs (writable, thrown away with the run, as ``/tmp``
  is): ``/tmp`` and the worker's temporary folder, ``AIRFLOW_HOME``, the Airflow configuration file,
  the DAGs folder when known, ``cache_dir``, the worker's home folder, the folder holding the job
  folder (its sibling jobs), and the system's usual secret stores (:data:`SYSTEM_SECRETS`);
- then, read-only at their own paths, what the run needs: the job folder, its working directory, its
  environment, the interpreter's installation, a handler's source; and writable: the run's private
  folder (``PYTHON_EXEC_RESULT_FILE``) and ``sandbox_writable_paths``.

bwrap applies its mount options in order, so they are sorted by depth of the path they mount on: a
folder the job needs inside a hidden one (a job environment under ``cache_dir``, a job folder under
``AIRFLOW_HOME/dags``, the run folder under ``/tmp``) is mounted after what hides its parent, and a
hidden folder inside a visible one after that one. At the same path, writable wins over read-only,
read-only over hidden.

``--new-session`` is not used: the script already runs in a session of its own with no controlling
terminal (the TIOCSTI injection that option prevents needs one), and a new session would take the
script out of the process group that a stop's SIGKILL reaches in one ``killpg``. See
:class:`~airflow_python_exec.isolation.process.JobProcess` for how a stop's SIGTERM reaches the script past
``bwrap`` (which would die of it and take the sandbox with it at once).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from airflow_python_exec.errors import PythonExecError, SandboxUnavailableError
from airflow_python_exec.logs import log
from airflow_python_exec.settings import EngineSettings

#: How to get a working sandbox, or to run without one; ends every refusal.
FIX = "install bubblewrap (apt-get install bubblewrap) or set [python_exec] sandbox = auto or off"
#: Secret stores of the machine itself, hidden when they exist: root-only password hashes (a root
#: worker reads them as their owner, capabilities or not), Docker and Kubernetes secrets, the
#: Docker socket (root on the host for whoever can talk to it).
SYSTEM_SECRETS = (
    "/etc/shadow",
    "/etc/gshadow",
    "/run/secrets",
    "/var/run/secrets",
    "/run/docker.sock",
    "/var/run/docker.sock",
)
#: Seconds the one-off ``bwrap ... true`` probe may take before bwrap counts as unusable.
PROBE_TIMEOUT_S = 10.0

#: (bwrap path, network) -> ``None`` when bwrap starts a sandbox, else why not (per process).
_probed: dict[tuple[str, bool], str | None] = {}
_warned = False

#: Mount kinds in the order they apply at one path: the later wins.
_HIDE, _READ, _WRITE = 0, 1, 2


#: The filesystem every sandbox starts from: the root read-only, a fresh /proc, a minimal /dev.
ROOT_VIEW = ("--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev")


def namespace_flags(network: bool) -> list[str]:
    """The namespace and privilege options of every sandbox (and of the probe)."""
    flags = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--cap-drop", "ALL"]
    return flags if network else [*flags, "--unshare-net"]


def sandbox_for(settings: EngineSettings) -> Sandbox | None:
    """The sandbox that ``settings`` ask for, decided before anything is built.

    :returns: ``None`` for ``sandbox = off``, and for ``auto`` when bwrap is unusable (a warning is
        logged once per process); else a :class:`Sandbox`.
    :raises SandboxUnavailableError: ``sandbox = bubblewrap`` and ``bwrap`` is missing or cannot start
        a sandbox (the message names the setting, the cause and the fix).
    :raises PythonExecError: a ``sandbox_writable_paths`` entry does not exist.
    """
    if settings.sandbox == "off":
        return None
    bwrap, problem = _find(settings.sandbox_network)
    if bwrap is None or problem is not None:
        if settings.sandbox == "bubblewrap":
            raise SandboxUnavailableError(f"[python_exec] sandbox = bubblewrap but {problem}; {FIX}")
        _warn_once(problem)
        return None
    for path in settings.sandbox_writable_paths:
        if not path.exists():
            raise PythonExecError(
                f"[python_exec] sandbox_writable_paths entry {str(path)!r} does not exist; "
                "create it or remove it from the setting"
            )
    return Sandbox(bwrap, settings.sandbox_network, settings.sandbox_writable_paths, settings.cache_dir)


@dataclass(frozen=True)
class Sandbox:
    """A usable ``bwrap`` and the settings of the sandboxes it starts.

    :ivar bwrap: the ``bwrap`` executable.
    :ivar network: ``False`` gives each sandbox a network namespace of its own (loopback only).
    :ivar writable_paths: ``sandbox_writable_paths``, mounted writable.
    :ivar cache_dir: the environment cache, hidden but for the run's own environment and source.
    """

    bwrap: str
    network: bool
    writable_paths: tuple[Path, ...]
    cache_dir: Path

    def prefix(
        self,
        *,
        job_folder: Path,
        cwd: Path,
        readable: Iterable[Path] = (),
        writable: Iterable[Path] = (),
        tmp_bytes: int | None = None,
    ) -> list[str]:
        """The ``bwrap`` argv to put in front of the script's own (it ends with ``--``).

        :param job_folder: mounted read-only; its parent folder (sibling jobs) is hidden.
        :param cwd: the script's working directory, mounted read-only and entered.
        :param readable: more paths the run reads (environment, interpreter, handler source).
        :param writable: paths the run writes besides ``sandbox_writable_paths`` (its run folder).
        :param tmp_bytes: the size of each private tmpfs (``/tmp`` and the hidden folders), in bytes
            (``resources.tmp``); ``None``: unsized, as the kernel's tmpfs default.
        """
        mounts: dict[tuple[str, int], str] = {}
        for hide in hidden_paths(self.cache_dir, job_folder):
            real = os.path.realpath(hide)
            if _depth(real) > 0 and os.path.lexists(real):
                mounts[(real, _HIDE)] = real
        hidden = [dest for dest, _ in mounts]
        for kind, paths in ((_READ, (job_folder, cwd, *readable)), (_WRITE, (*self.writable_paths, *writable))):
            for path in paths:
                source = os.path.realpath(path)
                for dest in {source, os.path.abspath(path)}:
                    # Read-only paths outside every hidden one are visible already, through "/".
                    if kind == _WRITE or any(_within(dest, h) for h in hidden):
                        mounts[(dest, kind)] = source
        _drop_nested_hides(mounts)
        args: list[str] = []
        for (dest, kind), source in sorted(mounts.items(), key=lambda m: (_depth(m[0][0]), m[0][1], m[0][0])):
            args += [*(["--size", str(tmp_bytes)] if tmp_bytes and kind == _HIDE and os.path.isdir(dest) else [])]
            args += _mount(kind, source, dest)
        return [
            self.bwrap,
            *namespace_flags(self.network),
            *ROOT_VIEW,
            *args,
            "--chdir",
            str(cwd),
            "--",
        ]


def hidden_paths(cache_dir: Path, job_folder: Path) -> list[str]:
    """Paths a sandboxed job must not see (those that exist get hidden; see the module's docstring)."""
    from airflow_python_exec.settings_file import config_file, expand_env_var

    paths = [
        "/tmp",
        tempfile.gettempdir(),
        expand_env_var(os.environ.get("AIRFLOW_HOME", "~/airflow")),
        config_file(),
        str(cache_dir),
        os.path.expanduser("~"),
        *SYSTEM_SECRETS,
    ]
    try:
        paths.append(pwd.getpwuid(os.geteuid()).pw_dir)  # HOME may point elsewhere than the user's home
    except KeyError:
        pass
    dags = _dags_folder()
    if dags:
        paths.append(dags)
    if _depth(os.path.realpath(job_folder.parent)) >= 2:  # never a top-level folder such as /srv or /opt
        paths.append(str(job_folder.parent))
    return paths


def _dags_folder() -> str | None:
    """``[core] dags_folder`` when it costs nothing to know: set in the environment, or Airflow's
    configuration already loaded (a task process). Otherwise it is usually under AIRFLOW_HOME."""
    if os.environ.get("AIRFLOW__CORE__DAGS_FOLDER"):
        return os.path.expanduser(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if "airflow.configuration" in sys.modules:
        try:
            from airflow.configuration import conf

            return conf.get("core", "dags_folder", fallback=None)
        except Exception:  # noqa: BLE001 - a broken configuration is Airflow's to report, not ours
            return None
    return None


def _drop_nested_hides(mounts: dict[tuple[str, int], str]) -> None:
    """Forget a hidden path inside another hidden one, unless a visible path lies between them (it
    would show the inner one again): fewer mounts, a faster start."""
    hides = [dest for dest, kind in mounts if kind == _HIDE]
    shown = [dest for dest, kind in mounts if kind != _HIDE]
    for inner in hides:
        for outer in hides:
            if (
                inner != outer
                and _within(inner, outer)
                and not any(_within(inner, d) and _within(d, outer) and d != outer for d in shown)
            ):
                mounts.pop((inner, _HIDE), None)
                break


def _mount(kind: int, source: str, dest: str) -> list[str]:
    if kind == _WRITE:
        return ["--bind", source, dest]
    if kind == _READ:
        return ["--ro-bind", source, dest]
    if os.path.isdir(dest):
        return ["--tmpfs", dest]
    return ["--ro-bind", "/dev/null", dest]  # a file or a socket: shown as an empty file


def _depth(path: str) -> int:
    return len(Path(path).parts) - 1


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def unusable(network: bool = True) -> str | None:
    """Why ``bwrap`` (from ``PATH``) cannot start a sandbox here, or ``None`` when it can.

    Probed once per process and per ``bwrap``/``network`` pair by starting ``bwrap ... true`` with
    the namespaces of a run (``network=False`` adds ``--unshare-net``): about 3 to 6 ms.

    :returns: a phrase for an error message (``"bwrap is not on PATH"``, ``"/usr/bin/bwrap cannot
        start a sandbox here (<bwrap's first line>)"``), or ``None``.
    """
    return _find(network)[1]


def _find(network: bool) -> tuple[str | None, str | None]:
    """``bwrap`` from ``PATH`` (or ``None``) and why it cannot start a sandbox (``None``: it can)."""
    bwrap = shutil.which("bwrap")
    return bwrap, "bwrap is not on PATH" if bwrap is None else _probe(bwrap, network)


def _probe(bwrap: str, network: bool) -> str | None:
    """``None`` when ``bwrap`` starts a sandbox with the run's namespaces, else why not (cached)."""
    key = (bwrap, network)
    if key not in _probed:
        # --as-pid-1: no reaper process in the sandbox. A run's bwrap leaves that reaper to exit after
        # itself, orphaned to us once we are a child subreaper; a run's containment reaps it, and the
        # probe, which has none, must leave no zombie behind.
        argv = [
            bwrap,
            *namespace_flags(network),
            "--as-pid-1",
            *ROOT_VIEW,
            "--",
            shutil.which("true") or "/bin/true",
        ]
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=PROBE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            _probed[key] = f"{bwrap} cannot start a sandbox here ({exc})"
        else:
            said = done.stderr.decode(errors="replace").strip().splitlines()
            _probed[key] = (
                None
                if done.returncode == 0
                else (f"{bwrap} cannot start a sandbox here ({said[0] if said else f'exit status {done.returncode}'})")
            )
    return _probed[key]


def _warn_once(problem: str | None) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(
            "sandbox = auto: %s, so jobs run without a sandbox; %s",
            problem,
            "install bubblewrap (apt-get install bubblewrap) to sandbox them",
        )
