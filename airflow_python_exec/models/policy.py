"""The execution policy: a job runs only its own uploaded ``.py`` files and code its environment installed.

DESIGN.md, "The job folder": ``pythonEnv.command`` may be an allowed ``.py`` file of the job folder,
``-m <module>`` where the module comes from the job folder or from the packages the job's lock or
local extras installed, or a console script that one of those packages declares. The interpreter
itself (``python``, ``python3``, ``-c``, any other interpreter option, ``-m`` of a standard-library
module such as ``pdb``, ``runpy`` or ``cProfile``), ``pip`` and ``activate`` are refused: each would
run code that was never uploaded. ``PYTHONSTARTUP``, ``PYTHONHOME`` and ``PYTHONINSPECT`` set by the
job (a macro, ``.env``, ``pythonEnv.env``) are refused, and so are ``PYTHONPATH`` entries outside the
job folder, for the same reason.

:func:`check_command` and :func:`check_interpreter_variables` need nothing but the job, so they run
before anything is built; :func:`check_installed` needs the environment and runs once it exists.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from airflow_python_exec.errors import JobConfigError, ScriptNotAllowedError

from .rules import shorten

#: Executables of a virtual environment that are not a package's console script.
_INTERPRETERS = re.compile(r"(python|pythonw|pypy)(\d+(\.\d+)*)?\Z|pip\d*(\.\d+)?\Z|activate(\..+)?\Z|deactivate\Z")
#: Interpreter variables a job may not set: each runs or loads code from outside the job (DESIGN.md
#: names the first three; the others load ``.pth`` files, a standard library, bytecode or a callable
#: from wherever they point).
FORBIDDEN_VARIABLES = (
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PYTHONINSPECT",
    "PYTHONUSERBASE",
    "PYTHONPLATLIBDIR",
    "PYTHONPYCACHEPREFIX",
    "PYTHONBREAKPOINT",
    "PYTHONEXECUTABLE",
)
#: Modules that install or run arbitrary code even when the lock installed them (DESIGN.md: pip).
FORBIDDEN_MODULES = frozenset({"pip", "uv", "ensurepip", "virtualenv"})


def check_command(command: str) -> None:
    """Refuse a ``pythonEnv.command`` that runs the interpreter itself, an interpreter option other
    than ``-m``, a standard-library module, ``pip`` or ``activate`` (DESIGN.md's execution policy).

    :raises ScriptNotAllowedError: one line naming the rule and the fix.
    """
    first, *rest = shlex.split(command)
    name = Path(first).name
    if first == "-m":
        module = rest[0] if rest else ""
        top = module.split(".")[0]
        if top in FORBIDDEN_MODULES:
            raise ScriptNotAllowedError(
                f"command {command!r} runs {top!r}, which installs or runs code that was never uploaded; "
                "run the job's own code"
            )
        if top in sys.stdlib_module_names:
            raise ScriptNotAllowedError(
                f"command {command!r} runs the standard-library module {module!r}; only modules of the job "
                "folder or of the packages its lock installed may run with -m"
            )
    elif first.startswith("-"):
        raise ScriptNotAllowedError(
            f"command {command!r} passes interpreter option {first!r}; give a .py script of the job folder, "
            "-m <module> or a console script"
        )
    elif not first.endswith(".py") and _INTERPRETERS.match(name):
        raise ScriptNotAllowedError(
            f"command {command!r} runs {name!r}, not the job's code; give a .py script of the job folder, "
            "-m <module> or a console script of a locked package"
        )


def check_installed(command: str, folder: Path, venv: Path | None) -> None:
    """Refuse ``-m <module>`` that is neither in the job folder nor installed in the job's
    environment, and a console script that no installed package declares.

    :param folder: the job folder; :param venv: the job's environment, ``None`` when it has none.
    :raises ScriptNotAllowedError: one line naming the module or script and the fix.
    """
    first, *rest = shlex.split(command)
    if first == "-m":
        top = rest[0].split(".")[0]
        if not (_in_folder(folder, top) or (venv is not None and _in_site_packages(venv, top))):
            raise ScriptNotAllowedError(
                f"command {command!r}: module {top!r} is neither in the job folder nor installed by the "
                "job's lock or local extras; add it to one of them"
            )
    elif not first.endswith(".py") and "/" not in first:
        if venv is None or first not in console_scripts(venv):
            raise ScriptNotAllowedError(
                f"command {command!r}: {first!r} is not a console script of a package the job's lock or "
                "local extras installed; add the package that provides it, or use -m module"
            )


def check_interpreter_variables(variables: Mapping[str, str], folder: Path, cwd: Path, origin: str) -> None:
    """Refuse :data:`FORBIDDEN_VARIABLES`, and ``PYTHONPATH`` entries outside ``folder``, among
    variables the job sets. A relative entry is taken as Python takes it, against the working
    directory ``cwd``; an empty entry means the working directory itself.

    :param origin: where they were set (``a macro``, ``.env``, ``pythonEnv.env``), named in the
        error; values are never repeated in it (a secure macro's value is a secret).
    :raises ScriptNotAllowedError: one line naming the variable and where it came from.
    """
    for name in FORBIDDEN_VARIABLES:
        if name in variables:
            raise ScriptNotAllowedError(
                f"{origin} sets {name}, which makes Python run or load code from outside the job; remove it"
            )
    if "PYTHONPATH" in variables:
        for entry in variables["PYTHONPATH"].split(os.pathsep):
            if not (cwd / entry).resolve().is_relative_to(folder):
                raise ScriptNotAllowedError(
                    f"{origin} puts an entry outside the job folder {folder} on PYTHONPATH (relative entries "
                    "count from the working directory); only the job's own folders may be added"
                )


def check_working_directory(requested: str | Path, path: Path, roots: Iterable[Path], where: str) -> None:
    """Refuse a working directory that does not resolve inside one of ``roots`` (DESIGN.md
    "Containment and sandbox": a sandbox mounts the working directory, so a ``cwd`` naming a hidden
    path, ``/tmp`` or ``AIRFLOW_HOME`` would show it to the job).

    :param requested: the ``cwd`` as given (named in the error).
    :param path: where it resolves (symlinks followed: a link inside the job folder that leaves it
        is outside).
    :param roots: the job folder, and a handler job's source root once it is known.
    :param where: ``roots`` in words, for the error (``"the job folder /srv/jobs/a"``).
    :raises JobConfigError: one line naming ``cwd`` and the folders it must be inside.
    """
    real = path.resolve()
    if not any(real.is_relative_to(root.resolve()) for root in roots):
        raise JobConfigError(
            f"cwd {shorten(str(requested))} is outside {where} ({shorten(str(real), 300)}); give a folder inside it, "
            "relative to the job folder"
        )


def console_scripts(venv: Path) -> set[str]:
    """Names of the console scripts the packages installed in ``venv`` declare (their
    ``entry_points.txt``, section ``[console_scripts]``, as the packaging specifications define it)."""
    names: set[str] = set()
    for entry_points in venv.glob("lib/python*/site-packages/*.dist-info/entry_points.txt"):
        parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]  # names are case-sensitive
        try:
            parser.read(entry_points, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            continue
        if parser.has_section("console_scripts"):
            names.update(parser.options("console_scripts"))
    return names


def _in_folder(folder: Path, top: str) -> bool:
    """A module or package of the job folder, and not a symlink that leaves it."""
    for path in (folder / f"{top}.py", folder / top):
        if path.exists() and path.resolve().is_relative_to(folder):
            return True
    return False


def _in_site_packages(venv: Path, top: str) -> bool:
    for site in venv.glob("lib/python*/site-packages"):
        if (site / top).is_dir() or any(site.glob(f"{top}.py")) or any(site.glob(f"{top}.*.so")):
            return True
    return False
