"""The job: ``Macro``, ``PythonEnv`` and ``PythonJob`` (pydantic v2).

A job is a folder holding ``app.py`` (the ``packageName``), an optional ``.env``, an optional
``job.json`` in the platform's job configuration format, and an optional PEP 751 ``pylock.toml``.
The rules (DESIGN.md, "The job folder") are enforced here, so a bad job is refused before any
process starts, with a one-line :class:`~airflow_python_exec.errors.JobConfigError`.
"""

from __future__ import annotations

import base64 as b64
import binascii
import json
import os
import re
import shlex
import stat
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from airflow_python_exec import json_limits
from airflow_python_exec.errors import JobConfigError, ScriptNotAllowedError
from airflow_python_exec.logs import log
from airflow_python_exec.policy import check_command

#: POSIX environment variable names, as the platform's macros allow them.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
PYTHON_VERSION = re.compile(r"\d+(\.\d+){0,2}\Z")
JOB_FILE = "job.json"
DEFAULT_SCRIPT = "app.py"
#: Python refuses to turn longer digit strings into ints (CVE-2020-10735); so do we, with one line.
MAX_INT_DIGITS = 4300
#: DESIGN.md's near miss: an edit distance of 2 or less. Known keys this short or shorter get 1, so
#: common short platform keys (``job``, ``jobs``: 2 edits from ``jobId``) still only warn.
NEAR_MISS_EDITS = 2
SHORT_KEY_CHARS = 5


def check_env_name(key: str, what: str = "macro key") -> str:
    """Return ``key`` if it is a valid environment variable name, else raise ``ValueError``."""
    if not isinstance(key, str) or not ENV_NAME.match(key):
        raise ValueError(
            f"{what} {key!r} is not a valid environment variable name; use letters, digits and _, "
            "not starting with a digit"
        )
    return key


def env_value(value: Any, key: str = "") -> str | None:
    """Turn a JSON scalar into an environment value: numbers and booleans become strings.

    Booleans are written as JSON writes them (``true``/``false``). ``None`` stays ``None`` (the
    platform skips such a macro). A NUL byte cannot be put in an environment and is refused.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, (int, float)):
        try:
            value = str(value)
        except ValueError:  # an int beyond Python's digit limit
            raise ValueError(
                f"value of {key or 'macro'} is a number with more than {MAX_INT_DIGITS} digits; "
                "write it as a JSON string"
            ) from None
    elif not isinstance(value, str):
        raise ValueError(f"value of {key or 'macro'} must be a string, number or boolean")
    if "\x00" in value:
        raise ValueError(f"value of {key or 'macro'} contains a NUL byte; remove it")
    return value


class Macro(BaseModel):
    """One platform macro: ``key`` becomes an environment variable holding ``value``.

    ``secure=True`` marks ``value`` as a Fernet token, decrypted just before launch. ``description``
    and ``token`` are the platform's fields, kept and unused. ``value`` is an Airflow template field
    when a ``Macro`` is passed to ``PythonJobOperator(macros=[...])``.
    """

    model_config = ConfigDict(extra="forbid")
    template_fields: ClassVar[tuple[str, ...]] = ("value",)

    key: str
    value: str | None = None
    secure: StrictBool = False
    description: str | None = None
    token: str | None = None

    @field_validator("key", mode="before")
    @classmethod
    def _key(cls, key: Any) -> str:
        return check_env_name(key)

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: Any, info: Any) -> str | None:
        return env_value(value, info.data.get("key", ""))


class PythonEnv(BaseModel):
    """``pythonEnv`` of ``job.json``: the job's virtual environment and extra environment.

    Relative paths resolve against the job folder (see :meth:`PythonJob.resolve`). Unknown keys are
    errors, so a typo never passes silently.
    """

    model_config = ConfigDict(extra="forbid")

    pylock: str | None = None
    python_version: str | None = None
    local_extra_deps: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    prepend_paths: list[str] = Field(default_factory=list)
    refresh: StrictBool = False
    command: str | None = None
    #: PEP 508 strings, or the path of a requirements file; resolved into a lock kept in the environment.
    requirements: list[str] | str | None = None

    @property
    def needs_environment(self) -> bool:
        """True when the job gets its own virtual environment (a lock, requirements, extras or a Python version)."""
        return bool(self.pylock or self.requirements is not None or self.local_extra_deps or self.python_version)

    @model_validator(mode="after")
    def _lock_or_requirements(self) -> PythonEnv:
        if self.pylock and self.requirements is not None:
            raise ValueError(
                "pythonEnv has both pylock and requirements; keep one: the lock, or the "
                "requirements it is resolved from"
            )
        return self

    @field_validator("pylock", "local_extra_deps", "prepend_paths", "command", "requirements", mode="before")
    @classmethod
    def _no_nul(cls, value: Any, info: Any) -> Any:
        # No path or argv can hold a NUL byte; refused here rather than failing in os calls later.
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and "\x00" in item:
                raise ValueError(f"{info.field_name} {item!r} contains a NUL byte; remove it")
        return value

    @field_validator("python_version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is not None and not PYTHON_VERSION.match(value.strip()):
            raise ValueError(f"python_version {value!r} is not a version; write it like 3.12 or 3.12.4")
        return value.strip() if value else value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, env: Any) -> Any:
        if not isinstance(env, dict):
            return env
        return {check_env_name(k, "env key"): env_value(v, k) for k, v in env.items() if v is not None}

    @field_validator("command")
    @classmethod
    def _command(cls, command: str | None) -> str | None:
        if command is not None:
            try:
                if not shlex.split(command):
                    raise ValueError("command is empty; give a script path, -m module or a console script")
            except ValueError as exc:
                raise ValueError(f"command {command!r} cannot be parsed: {exc}") from None
            try:
                check_command(command)
            except ScriptNotAllowedError as exc:
                raise ValueError(str(exc)) from None
        return command


class RuntimeConfig(BaseModel):
    """``runtimeConfig`` of ``job.json``: ``macros`` and ``exitCodes`` (the platform's exit code
    mapping, e.g. ``{"3": "skipped"}``). Unknown keys are errors, as in a macro or ``pythonEnv``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    macros: list[Macro] = Field(default_factory=list)
    exit_codes: dict[str, str] | None = Field(default=None, alias="exitCodes")

    @field_validator("macros", mode="before")
    @classmethod
    def _none_is_empty(cls, macros: Any) -> Any:
        return [] if macros is None else macros

    @field_validator("exit_codes", mode="before")
    @classmethod
    def _exit_codes(cls, mapping: Any) -> Any:
        from airflow_python_exec.functions.results import parse_exit_codes

        try:
            parsed = parse_exit_codes(mapping)
        except JobConfigError as exc:
            raise ValueError(str(exc).removeprefix("runtimeConfig.exitCodes ")) from None
        return None if mapping is None else {str(code): outcome.value for code, outcome in parsed.items()}


#: ``module.path:function`` (the function may be dotted) or a bare ``function``.
HANDLER = re.compile(r"((?:[A-Za-z_]\w*)(?:\.[A-Za-z_]\w*)*:)?[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")


class FunctionSpec(BaseModel):
    """``function`` of ``job.json``: a handler job (DESIGN.md, "Functions: handler jobs").

    ``handler`` is ``module.path:function`` (imported from the source root) or a bare ``function``
    of the job's ``packageName``. ``parameters`` are the handler's keyword arguments (JSON values).
    The source is at most one of ``source`` (a folder, ``.zip``, ``zip+https://`` or ``git+`` URL),
    ``code`` (Python source text) or ``base64`` (the same, base64-encoded); none: the job folder.
    """

    model_config = ConfigDict(extra="forbid")

    handler: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None
    code: str | None = None
    base64: str | None = None

    @field_validator("handler")
    @classmethod
    def _handler(cls, handler: str) -> str:
        if not HANDLER.match(handler.strip()):
            raise ValueError(
                f"handler {handler!r} is not module.path:function or a function name; "
                "write it like cities:download_and_process"
            )
        return handler.strip()

    @field_validator("parameters", mode="before")
    @classmethod
    def _parameters(cls, parameters: Any) -> Any:
        if parameters is None:
            return {}
        if isinstance(parameters, dict) and not all(isinstance(k, str) for k in parameters):
            raise ValueError("parameters must have string keys (the handler's argument names)")
        try:
            text = json.dumps(parameters, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"parameters must be JSON values ({exc}); pass strings, numbers, lists or dicts") from None
        except RecursionError:
            text = "[" * (json_limits.MAX_JSON_DEPTH + 1)
        json_limits.check_depth(text, "parameters")  # deeper values break whoever walks them next
        return parameters

    @field_validator("source")
    @classmethod
    def _source(cls, source: str | None) -> str | None:
        if source is None:
            return None
        from airflow_python_exec.sources import parse_source

        try:
            parse_source(source)
        except JobConfigError as exc:
            raise ValueError(str(exc)) from None
        return source

    @field_validator("base64")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                b64.b64decode(value.encode("ascii"), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeError, ValueError):
                raise ValueError("base64 is not base64-encoded UTF-8 Python source; encode the .py file") from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> FunctionSpec:
        given = [name for name in ("source", "code", "base64") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"function has {' and '.join(given)}; give one source: a source, code or base64")
        return self

    @property
    def inline_code(self) -> str | None:
        """The inline Python source (``code``, or ``base64`` decoded), or ``None``."""
        if self.base64 is not None:
            return b64.b64decode(self.base64.encode("ascii"), validate=True).decode("utf-8")
        return self.code

    @property
    def bare(self) -> bool:
        """True for a bare ``function`` of the main file (no ``module:`` part)."""
        return ":" not in self.handler


class PythonJob(BaseModel):
    """A job: its folder plus the platform's job configuration.

    Build one with :meth:`load` from a job folder, a ``job.json`` or a single ``.py`` file. Only
    ``jobId`` and ``packageName`` are required (``packageName`` may be left out when
    ``pythonEnv.command`` names what to run); ``packageName`` defaults to ``app.py`` when the folder
    has no ``job.json``. ``engineType``, when present, must be ``PYTHON`` (any case). Unknown top-level
    keys are ignored with a warning; unknown keys in a macro or in ``pythonEnv`` are errors.
    """

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    job_id: str = Field(alias="jobId", min_length=1)
    engine_type: str | None = Field(default=None, alias="engineType")
    package_name: str | None = Field(default=None, alias="packageName")
    runtime_config: RuntimeConfig = Field(default_factory=RuntimeConfig, alias="runtimeConfig")
    python_env: PythonEnv | None = Field(default=None, alias="pythonEnv")
    function: FunctionSpec | None = None
    folder: Path

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown(cls, data: Any) -> Any:
        """Refuse near misses of known keys (DESIGN.md), warn about and drop other unknown keys."""
        if not isinstance(data, dict):
            return data
        known = {name for field, info in cls.model_fields.items() for name in (field, info.alias) if name}
        for key in [k for k in data if k not in known]:
            _refuse_near_miss(str(key), cls)
            log.warning("job %r: ignoring unknown key %r", data.get("jobId"), key)
        return {k: v for k, v in data.items() if k in known}

    @field_validator("engine_type")
    @classmethod
    def _engine(cls, value: str | None) -> str | None:
        if value is not None and value.upper() != "PYTHON":
            raise ValueError(f"engineType {value!r} is not PYTHON; this engine only runs Python jobs")
        return value

    @field_validator("folder")
    @classmethod
    def _folder(cls, folder: Path) -> Path:
        folder = folder.resolve()
        if not folder.is_dir():
            raise ValueError(f"job folder {folder} does not exist; upload the job folder first")
        return folder

    @model_validator(mode="after")
    def _script_allowed(self) -> PythonJob:
        has_command = self.python_env is not None and self.python_env.command is not None
        if self.function is not None:
            if has_command:
                raise ValueError("a function job runs its handler; remove pythonEnv.command")
            return self._function_allowed()
        if self.package_name is None and not has_command:
            raise ValueError('packageName is required; name the job\'s .py script, e.g. "packageName": "app.py"')
        if self.package_name is not None:
            self.script  # noqa: B018 - raises when packageName is not an allowed .py file
        return self

    def _function_allowed(self) -> PythonJob:
        """A bare handler of a job folder's own ``packageName`` needs that file; inline code or another
        source is checked once resolved (:mod:`airflow_python_exec.functions.run`)."""
        assert self.function is not None
        name = self.main_file_name
        if self.function.inline_code is not None or self.function.source is not None:
            _check_name(name)
        elif self.function.bare:
            self.script  # noqa: B018
        return self

    @property
    def main_file_name(self) -> str:
        """``packageName``, or ``app.py`` for a function job without one."""
        return self.package_name or DEFAULT_SCRIPT

    @property
    def exit_codes(self) -> dict[str, str] | None:
        """``runtimeConfig.exitCodes``, validated: keys ``"0"``-``"255"``, values ``success``, ``skipped``
        or ``failed``."""
        return self.runtime_config.exit_codes

    @property
    def needs_environment(self) -> bool:
        """True when the job runs in its own virtual environment (see :attr:`PythonEnv.needs_environment`)."""
        return self.python_env is not None and self.python_env.needs_environment

    @property
    def macros(self) -> list[Macro]:
        """The job's own macros, in ``job.json`` order."""
        return self.runtime_config.macros

    @property
    def dotenv_path(self) -> Path:
        """``<folder>/.env`` (it may not exist)."""
        return self.folder / ".env"

    @property
    def script(self) -> Path:
        """The resolved ``packageName``: a regular ``.py`` file inside the job folder.

        :raises ScriptNotAllowedError: absolute, with ``..``, not ``.py``, missing, not a regular file,
            or a symlink leaving the folder; or no ``packageName`` (a job run by ``pythonEnv.command``).
        """
        if self.package_name is None and self.function is None:
            raise ScriptNotAllowedError(f"job {self.job_id!r} has no packageName; it runs pythonEnv.command")
        return allowed_script(self.folder, self.main_file_name, "packageName")

    def resolve(self, path: str) -> Path:
        """Resolve a ``pythonEnv`` path against the job folder (absolute paths are kept).

        :raises JobConfigError: a ``~user`` path for an unknown user.
        """
        try:
            return (self.folder / Path(path).expanduser()).resolve()
        except RuntimeError as exc:  # Path.expanduser on an unknown ~user
            raise JobConfigError(f"path {path!r} in pythonEnv cannot be resolved ({exc}); fix it") from None
        except ValueError:  # a NUL byte (the pythonEnv fields refuse it; cwd comes from the caller)
            raise JobConfigError(f"path {path!r} contains a NUL byte; remove it") from None

    def with_python_env(self, python_env: PythonEnv | dict[str, Any]) -> PythonJob:
        """Return a copy whose ``pythonEnv`` is ``python_env`` (an operator's ``python_env=``).

        :raises JobConfigError: ``python_env`` breaks the ``pythonEnv`` rules.
        """
        env = python_env.model_dump() if isinstance(python_env, PythonEnv) else dict(python_env)
        return self.with_config({"pythonEnv": env})

    def with_config(self, changes: dict[str, Any]) -> PythonJob:
        """Return a copy with top-level ``job.json`` keys replaced by ``changes`` (validated again).

        :raises JobConfigError: the result breaks a job rule.
        """
        data = self.model_dump(by_alias=True, exclude={"folder"}, exclude_none=True)
        return PythonJob.from_config({**data, **changes}, self.folder, source=f"job {self.job_id!r}")

    def with_function(
        self,
        *,
        handler: str | None = None,
        parameters: dict[str, Any] | None = None,
        source: str | None = None,
        code: str | None = None,
    ) -> PythonJob:
        """Return a copy whose ``function`` takes the given values (an operator's or the CLI's arguments).

        ``parameters`` update the job's own per key; ``source`` or ``code`` replace its source.

        :raises JobConfigError: no handler anywhere, or the result breaks a job rule.
        """
        function = self.function.model_dump(exclude_none=True) if self.function is not None else {}
        if handler is not None:
            function["handler"] = handler
        if parameters:
            function["parameters"] = {**function.get("parameters", {}), **parameters}
        if source is not None or code is not None:
            for key in ("source", "code", "base64"):
                function.pop(key, None)
            function.update({k: v for k, v in (("source", source), ("code", code)) if v is not None})
        if not function:
            return self
        if "handler" not in function:
            raise JobConfigError(f"job {self.job_id!r}: parameters, source or code need a handler; give one")
        return self.with_config({"function": function})

    @classmethod
    def load(cls, path: str | Path) -> PythonJob:
        """Load a job from a folder, a ``job.json`` file, or a single ``.py`` file.

        :param path: job folder (``job.json`` optional inside), path to a ``job.json``, or a ``.py``
            script (its folder is the job folder, its stem the ``jobId``).
        :raises JobConfigError: a missing path, invalid JSON, or any job rule broken; one line.
        """
        path = _expand_user(path)
        if path.is_dir():
            folder, config = path, path / JOB_FILE
            # A job.json that is there but not a file (folder, FIFO, dangling symlink) is refused by
            # _read_json: ignoring it would run the job without its configuration.
            data = (
                _read_json(config)
                if os.path.lexists(config)
                else {"jobId": path.resolve().name, "packageName": DEFAULT_SCRIPT}
            )
        elif path.is_file() and path.suffix == ".json":
            folder, data = path.parent, _read_json(path)
        elif path.is_file() and path.suffix == ".py":
            folder, data = path.parent, {"jobId": path.stem, "packageName": path.name}
        elif not path.exists():
            raise JobConfigError(f"job {path} does not exist; give a job folder, a job.json or a .py file")
        else:
            raise JobConfigError(f"job {path} is not a job folder, a job.json or a .py file")
        if not isinstance(data, dict):
            raise JobConfigError(f"{path}: job configuration must be a JSON object, not {type(data).__name__}")
        return cls.from_config(data, folder, source=str(path))

    @classmethod
    def from_config(cls, data: dict[str, Any], folder: str | Path, source: str = "job") -> PythonJob:
        """Validate a platform job configuration (``job.json`` content) for ``folder``.

        :raises JobConfigError: one line naming the field, the value and the fix.
        """
        try:
            return cls.model_validate({**data, "folder": Path(folder)})
        except ValidationError as exc:
            raise JobConfigError(f"{source}: {one_line(exc)}") from None


def allowed_script(folder: Path, name: str, what: str) -> Path:
    """Resolve ``name`` to a regular ``.py`` file confined to ``folder`` (the platform's rule that
    only uploaded ``.py`` files are executed).

    :returns: the resolved absolute path.
    :raises ScriptNotAllowedError: when ``name`` breaks the rule; the message says which way.
    """
    posix = PurePosixPath(name.replace("\\", "/"))
    if not name.strip():
        raise ScriptNotAllowedError(f"{what} is empty; name the job's .py script, e.g. app.py")
    if "\x00" in name:
        raise ScriptNotAllowedError(f"{what} {name!r} contains a NUL byte; remove it")
    if posix.is_absolute():
        raise ScriptNotAllowedError(
            f"{what} {name!r} is an absolute path; give a path relative to the job folder {folder}"
        )
    if ".." in posix.parts:
        raise ScriptNotAllowedError(f"{what} {name!r} contains '..'; it must stay inside the job folder")
    if posix.suffix != ".py":
        raise ScriptNotAllowedError(f"{what} {name!r} is not a .py file; only .py scripts are executed")
    candidate = folder / posix
    resolved = candidate.resolve()
    if not resolved.is_relative_to(folder):
        raise ScriptNotAllowedError(
            f"{what} {name!r} is a symlink to {resolved}, outside the job folder; copy the script into it"
        )
    if not candidate.exists():
        raise ScriptNotAllowedError(f"{what} {name!r} does not exist in {folder}; upload it or fix the name")
    if not resolved.is_file() or resolved.suffix != ".py":
        raise ScriptNotAllowedError(f"{what} {name!r} is not a regular .py file; point it at the script")
    return resolved


def _check_name(name: str) -> None:
    """The rules of :func:`allowed_script` that need no file: relative, no ``..``, a ``.py`` name."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if not name.strip() or "\x00" in name or posix.is_absolute() or ".." in posix.parts or posix.suffix != ".py":
        raise ScriptNotAllowedError(f"packageName {name!r} must be a relative .py path without '..', e.g. app.py")


def declares_script_metadata(script: Path) -> bool:
    """Cheap test for PEP 723 inline metadata (``# /// script``) in a script, without parsing it."""
    try:
        with open(script, "rb") as f:
            return b"# /// script" in f.read()
    except OSError:
        return False


def one_line(exc: ValidationError) -> str:
    """Summarise a pydantic ``ValidationError`` as one line: ``field.path: message``."""
    parts = []
    for err in exc.errors():
        field = str(err["loc"][-1]) if err["loc"] else ""
        loc = ".".join(str(p) for p in err["loc"] if p != "folder")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {field!r}; remove it or fix its spelling"
        elif err["type"] == "missing":
            msg = "is required"
        parts.append(msg if not loc or msg.startswith(field) else f"{loc}: {msg}")
    return "; ".join(parts)


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance of ``a`` and ``b``, ignoring case: insertions, deletions,
    substitutions and swaps of two neighbouring letters each count 1."""
    a, b = a.lower(), b.lower()
    previous, current = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        before, previous, current = previous, current, [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] != b[j - 1]))
            if before is not None and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], before[j - 2] + 1)
    return current[-1]


def near_miss(key: str, known: Iterable[str]) -> str | None:
    """The known key that ``key`` is a near miss of, or ``None`` (DESIGN.md, "The job folder").

    A near miss has the same letters in another case, or is at most :data:`NEAR_MISS_EDITS` edits
    away (1 for known keys of :data:`SHORT_KEY_CHARS` characters or fewer); the closest one wins.
    """
    best: tuple[int, str] | None = None
    for candidate in known:
        allowed = 1 if len(candidate) <= SHORT_KEY_CHARS else NEAR_MISS_EDITS
        if abs(len(key) - len(candidate)) > allowed:
            continue  # cheap: too long or too short to be within reach
        distance = edit_distance(key, candidate)
        if distance <= allowed and (best is None or distance < best[0]):
            best = (distance, candidate)
    return best[1] if best else None


def _json_keys(model: type[BaseModel]) -> list[str]:
    """The keys a platform writes for ``model``'s fields (their aliases), ``folder`` excepted."""
    return [info.alias or name for name, info in model.model_fields.items() if name != "folder"]


def _refuse_near_miss(key: str, model: type[BaseModel]) -> None:
    """Raise ``ValueError`` when an unknown top-level ``key`` resembles a known one.

    ``runtimeConfig``'s own keys count too (``Macros``, even ``macros``, at the top level): a macro
    list put beside ``runtimeConfig`` instead of inside it would otherwise drop every macro.
    """
    misplaced = _json_keys(RuntimeConfig)
    target = near_miss(key, _json_keys(model)) or (key if key in misplaced else near_miss(key, misplaced))
    if target is None:
        return
    if target in misplaced:
        looks = "" if key == target else f" looks like {target!r}, which"
        raise ValueError(
            f"top-level key {key!r}{looks} belongs inside runtimeConfig; move it to runtimeConfig.{target}"
        )
    raise ValueError(f"top-level key {key!r} looks like {target!r}; fix its spelling or remove it")


def _expand_user(path: str | Path) -> Path:
    try:
        return Path(path).expanduser()
    except RuntimeError:  # ~user for a user that does not exist
        raise JobConfigError(
            f"job path {str(path)!r} starts with an unknown user's home (~user); give an existing path"
        ) from None


#: What a path that should be job.json turned out to be.
_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


def _read_json(path: Path) -> Any:
    """Parse a ``job.json`` that must be a regular file; every failure is one ``JobConfigError`` line."""
    text = _read_regular_file(path)
    try:
        return json_limits.loads(text, str(path), parse_int=lambda digits: _json_int(path, digits))
    except json_limits.JSONDepthError as exc:
        raise JobConfigError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise JobConfigError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); fix the syntax"
        ) from None


def _json_int(path: Path, digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise JobConfigError(
            f"{path} holds a number with {len(digits.lstrip('-'))} digits (more than {MAX_INT_DIGITS}); "
            "write it as a JSON string"
        )
    return int(digits)


def _read_regular_file(path: Path) -> str:
    """Read ``path`` as UTF-8, refusing anything but a regular file without blocking on it."""
    if path.is_symlink() and not path.exists():
        raise JobConfigError(
            f"{path} is a symlink to {os.readlink(path)}, which does not exist; fix the link or remove it"
        )
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then rejects it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
                raise JobConfigError(f"{path} is {kind}, not a file; replace it with the job's JSON configuration")
            with open(fd, "rb", closefd=False) as f:
                return f.read().decode("utf-8")
        finally:
            os.close(fd)
    except (OSError, UnicodeDecodeError) as exc:
        raise JobConfigError(f"{path} cannot be read ({exc}); check the file") from None
