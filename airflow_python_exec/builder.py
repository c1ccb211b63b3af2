"""``PythonCommandBuilder``: a job's argv and its child-process environment.

The environment is assembled in DESIGN.md's precedence, lowest first:

1. the worker's environment minus Airflow's own secrets (or, with ``inherit_env=False``, a minimal
   set); ``PYTHONUNBUFFERED=1`` so output reaches the log as it is printed;
2. Airflow context variables (``AIRFLOW_CTX_*``) when run by Airflow;
3. ``.env`` entries, only with ``dotenv_as_macros=True`` (parsed by python-dotenv);
4. ``pythonEnv.env``;
5. macros: ``job.json`` macros, then per-run macros (later wins per key); ``secure`` ones decrypted;
6. the environment's ``bin/`` and ``prepend_paths`` in front of ``PATH``; ``VIRTUAL_ENV`` set.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from airflow_python_exec.errors import JobConfigError, PythonExecError
from airflow_python_exec.isolation.base_env import base_environment
from airflow_python_exec.isolation.job_files import read_capped
from airflow_python_exec.logs import log
from airflow_python_exec.models import ENV_NAME, Macro, PythonJob, allowed_script, env_value, one_line
from airflow_python_exec.models.policy import check_installed, check_interpreter_variables, check_working_directory
from airflow_python_exec.models.rules import check_length, shorten
from airflow_python_exec.redaction import Redactor
from airflow_python_exec.settings import EngineSettings

if TYPE_CHECKING:  # cryptography and python-dotenv: imported only by a job that decrypts or reads .env
    from cryptography.fernet import MultiFernet


MacrosArg = Mapping[str, Any] | Iterable[Macro | Mapping[str, Any]] | None


@dataclass(frozen=True)
class PreparedCommand:
    """Everything about a run that does not depend on its virtual environment, checked.

    Made by :meth:`PythonCommandBuilder.prepare` before the environment is provisioned, so a bad
    macro, ``.env`` or ``cwd`` is refused before anything is built; :meth:`command` completes it.
    """

    job: PythonJob
    cwd: Path
    env: dict[str, str] = field(repr=False)
    secrets: frozenset[str] = field(repr=False, default=frozenset())
    #: The ``cwd`` as given, when it is outside the job folder and may still be inside a handler's
    #: source root, not known yet: :meth:`check_cwd` decides once it is.
    cwd_unchecked: str | None = None

    def check_cwd(self, source_root: Path | None) -> None:
        """Refuse a ``cwd`` outside the job folder that is not inside ``source_root`` either.

        :raises JobConfigError: one line (see :func:`~airflow_python_exec.models.policy.check_working_directory`).
        """
        if self.cwd_unchecked is None:
            return
        roots = [self.job.folder, *([source_root] if source_root is not None else [])]
        check_working_directory(self.cwd_unchecked, self.cwd, roots, _cwd_roots(self.job, source_root))
        if not os.path.isdir(self.cwd):
            raise JobConfigError(
                f"cwd {shorten(self.cwd_unchecked)} is not a folder ({shorten(str(self.cwd), 300)}); "
                "create it or fix the path"
            )

    def command(
        self,
        python: Path,
        venv: Path | None = None,
        *,
        bootstrap: Path | None = None,
        run_env: Mapping[str, str] | None = None,
    ) -> Command:
        """The :class:`Command` that runs the job with ``python`` (layer 6: ``venv``'s paths first).

        :param bootstrap: for a function job, the bootstrap file the interpreter runs (no argument
            follows it: parameters travel in a file).
        :param run_env: the run's ``PYTHON_EXEC_*`` variables, set last so nothing overrides them.
        :raises JobConfigError: ``pythonEnv.command`` names what the environment does not provide.
        """
        env = dict(self.env)
        _set_paths(env, self.job, venv)
        env.update(run_env or {})
        argv = [str(python), str(bootstrap)] if bootstrap is not None else _argv(self.job, python, venv)
        return Command(argv=argv, cwd=self.cwd, env=env, secrets=self.secrets)


@dataclass(frozen=True)
class Command:
    """What to start: argv, environment and working directory.

    ``env`` and ``secrets`` hold decrypted values, so they are left out of ``repr``. ``secrets`` is
    every decrypted ``secure`` macro value: whoever streams the output must replace them.
    ``launcher`` is a command that starts ``argv`` (the bubblewrap sandbox, see
    :mod:`airflow_python_exec.isolation.sandbox`), empty when the script is started directly.
    """

    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(repr=False)
    secrets: frozenset[str] = field(repr=False, default=frozenset())
    launcher: tuple[str, ...] = ()

    @cached_property
    def redact(self) -> Redactor:
        """Masks :attr:`secrets` in the run's output lines, result, error message and outputs; built
        on first use, once per run (each secret's forms computed once)."""
        return Redactor(self.secrets)


class PythonCommandBuilder:
    """Build the argv and environment for one run of a job.

    :param settings: engine settings (``inherit_env`` default and the Fernet keys are read).
    """

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self._fernet: MultiFernet | None = None

    def prepare(
        self,
        job: PythonJob,
        *,
        macros: MacrosArg = None,
        dotenv_as_macros: bool = False,
        inherit_env: bool | None = None,
        context_env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> PreparedCommand:
        """Layers 1 to 5 of the environment, the decrypted secrets and the working directory;
        :meth:`PreparedCommand.command` completes it once the environment is known. Secure macros
        are decrypted here.

        :param macros: per-run macros, a ``{key: value}`` dict, a list of :class:`Macro` (or dicts), or
            :class:`RunMacros` (checked already); they override ``job.json`` macros of the same key.
        :param dotenv_as_macros: convert the job folder's ``.env`` into variables (layer 3); otherwise
            ``.env`` is left for the script to load with python-dotenv.
        :param inherit_env: override ``[python_exec] inherit_env`` for this run.
        :param context_env: ``AIRFLOW_CTX_*`` variables (layer 2).
        :param cwd: working directory; relative paths resolve against the job folder (default).
        :raises JobConfigError: a bad macro, ``.env`` entry or ``cwd``.
        :raises ScriptNotAllowedError: the job sets an interpreter variable the execution policy
            refuses (see :mod:`airflow_python_exec.models.policy`).
        """
        inherit = self.settings.inherit_env if inherit_env is None else inherit_env
        workdir, unchecked = self._cwd(job, cwd)
        env = base_environment(os.environ, inherit)
        env.update(context_env or {})
        if dotenv_as_macros:
            env.update(_checked(read_dotenv(job.dotenv_path), job, workdir, ".env"))
        if job.python_env is not None:
            env.update(_checked(job.python_env.env, job, workdir, "pythonEnv.env"))
        secrets: set[str] = set()
        set_by_macros: dict[str, str] = {}
        for macro in [*job.macros, *to_macros(macros)]:
            value = self._macro_value(macro)
            if value is not None:
                set_by_macros[macro.key] = value
                if macro.secure:
                    secrets.add(value)
        env.update(_checked(set_by_macros, job, workdir, "a macro"))
        return PreparedCommand(job=job, cwd=workdir, env=env, secrets=frozenset(secrets), cwd_unchecked=unchecked)

    def _macro_value(self, macro: Macro) -> str | None:
        """A macro's value for the environment; ``None`` skips it (null value, undecryptable).

        :raises JobConfigError: a secure macro that cannot be decrypted while
            ``[python_exec] undecryptable_secure_macro`` is ``fail`` (DESIGN.md, secure macros).
        """
        if macro.value is None or not macro.secure:
            return macro.value
        value, reason = self._decrypted(macro.value)
        if reason is None:
            return value
        if self.settings.undecryptable_secure_macro == "fail":
            raise JobConfigError(
                f"secure macro {macro.key} refused ([python_exec] undecryptable_secure_macro = fail): {reason}"
            )
        log.warning("secure macro %s skipped: %s", macro.key, reason)
        return None

    def _decrypted(self, token: str) -> tuple[str | None, str | None]:
        """``(value, None)``, or ``(None, why it cannot be used, with the fix)``."""
        from cryptography.fernet import InvalidToken

        from airflow_python_exec import crypto

        try:
            fernet = self._fernet or crypto.multi_fernet(self.settings.fernet_keys())
            self._fernet = fernet
            value = crypto.decrypt(token, fernet)
        except PythonExecError as exc:
            return None, str(exc)
        except InvalidToken:
            return None, (
                "its value cannot be decrypted with the configured Fernet key(s); re-encrypt it with: "
                "airflow-python-exec encrypt"
            )
        if "\x00" in value:
            return None, "its decrypted value contains a NUL byte"
        return value, None

    @staticmethod
    def _cwd(job: PythonJob, cwd: str | Path | None) -> tuple[Path, str | None]:
        """The working directory, and the ``cwd`` as given when only a handler's source root (not
        known yet) could still hold it. Relative paths resolve against the job folder.

        :raises JobConfigError: not a folder, or outside the job folder (and no source root could hold it).
        """
        if cwd is None or str(cwd) == "":
            return job.folder, None
        check_length(str(cwd), "cwd")
        path = job.resolve(str(cwd))
        function = job.function
        elsewhere = function is not None and (function.source is not None or function.inline_code is not None)
        if elsewhere and not path.resolve().is_relative_to(job.folder.resolve()):
            return path, str(cwd)  # checked against the source root once it is resolved
        check_working_directory(cwd, path, [job.folder], _cwd_roots(job, None))
        if not os.path.isdir(path):  # False, not an error, for a name too long
            raise JobConfigError(
                f"cwd {shorten(str(cwd))} is not a folder ({shorten(str(path), 300)}); create it or fix the path"
            )
        return path, None


def _cwd_roots(job: PythonJob, source_root: Path | None) -> str:
    """The folders a ``cwd`` may be inside, in words."""
    where = f"the job folder {job.folder}"
    return f"{where} and the handler's source root {source_root}" if source_root is not None else where


def _checked(variables: dict[str, str], job: PythonJob, cwd: Path, origin: str) -> dict[str, str]:
    """``variables``, once the execution policy has accepted them (see :mod:`.policy`)."""
    check_interpreter_variables(variables, job.folder, cwd, origin)
    return variables


def _set_paths(env: dict[str, str], job: PythonJob, venv: Path | None) -> None:
    """Layer 6: the environment's ``bin/`` and ``prepend_paths`` in front of ``PATH``; ``VIRTUAL_ENV``."""
    front = [str(venv / "bin")] if venv is not None else []
    if job.python_env is not None:
        front += [str(job.resolve(p)) for p in job.python_env.prepend_paths]
    if front:
        env["PATH"] = os.pathsep.join([*front, env["PATH"]] if env.get("PATH") else front)
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)


def _argv(job: PythonJob, python: Path, venv: Path | None) -> list[str]:
    """The script (``packageName``) or ``pythonEnv.command`` as an argv, never through a shell."""
    if job.function is not None:
        raise JobConfigError(
            f"job {job.job_id!r} runs a handler: its argv is the bootstrap, which "
            "PythonExecutionService.run passes as PreparedCommand.command(bootstrap=...)"
        )
    command = job.python_env.command if job.python_env is not None else None
    if command is None:
        return [str(python), str(job.script)]
    first, *rest = shlex.split(command)
    if first == "-m" and not rest:
        raise JobConfigError(f"command {command!r} names no module after -m; write -m package.module")
    if first.endswith(".py") or "/" in first:
        return [str(python), str(allowed_script(job.folder, first, "command")), *rest]
    check_installed(command, job.folder, venv)
    if first == "-m":
        return [str(python), "-m", *rest]
    assert venv is not None  # check_installed refused a console script without an environment
    return [str(venv / "bin" / first), *rest]


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a ``.env`` file with python-dotenv (comments, quotes, ``export``, multi-line values).

    Values are taken literally: ``${VAR}`` is not expanded, so a ``.env`` cannot copy the worker's
    own variables into the script's environment. Keys without ``=`` are skipped.

    :raises JobConfigError: a key that is not a valid environment variable name, a NUL byte, or a
        file that is not a regular file of at most ``MAX_JOB_FILE_BYTES`` (read on the open file).
    """
    if not os.path.lexists(path):
        log.warning("dotenv_as_macros is set but %s does not exist; no .env entries were added", path)
        return {}
    try:
        import io

        from dotenv import dotenv_values

        text = read_capped(path, ".env").decode("utf-8")  # bounded, on the open file
        parsed = dotenv_values(stream=io.StringIO(text), interpolate=False)
    except (UnicodeDecodeError, OSError) as exc:
        raise JobConfigError(
            f"{path} cannot be read as UTF-8 text ({exc.__class__.__name__}); save it as UTF-8"
        ) from None
    entries: dict[str, str] = {}
    for key, value in parsed.items():
        if value is None:
            continue
        if not ENV_NAME.match(key):
            raise JobConfigError(f"{path}: key {shorten(key, 60)} is not a valid environment variable name; rename it")
        try:
            entries[key] = env_value(value, key)  # type: ignore[assignment]
        except ValueError as exc:
            raise JobConfigError(f"{path}: {exc}") from None
    return entries


class RunMacros(tuple[Macro, ...]):
    """Per-run macros :func:`to_macros` has checked: passed on from the operator to the service and the
    builder as they are, so each macro is validated once per run."""


def to_macros(macros: MacrosArg, origin: str = "macros") -> RunMacros:
    """Normalise per-run macros: a ``{key: value}`` mapping or a list of ``Macro``/dicts.

    :param origin: where the macros came from (an operator argument, ``--macro``), named in errors.
    :returns: the macros in order; a :class:`RunMacros` given is returned as it is (checked already).
    :raises JobConfigError: an invalid key or value (one line naming ``origin``).
    """
    if isinstance(macros, RunMacros):
        return macros
    if not macros:
        return RunMacros()
    try:
        if isinstance(macros, Mapping):
            return RunMacros(Macro(key=k, value=v) for k, v in macros.items())
        # Macro objects are validated again: templating sets ``value`` without validation.
        return RunMacros(Macro.model_validate(m.model_dump() if isinstance(m, Macro) else m) for m in macros)
    except ValidationError as exc:
        raise JobConfigError(f"{origin}: {one_line(exc)}") from None
