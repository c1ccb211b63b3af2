"""The parts of ``job.json``: ``Macro``, ``PythonEnv`` (the ``pythonEnv`` extension), ``runtimeConfig``
and ``function`` (pydantic v2), each refusing unknown keys (DESIGN.md, "The job folder")."""

from __future__ import annotations

import base64 as b64
import binascii
import json
import re
import shlex
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from airflow_python_exec.errors import JobConfigError, ScriptNotAllowedError
from airflow_python_exec.isolation import json_limits
from airflow_python_exec.models.policy import check_command

from .rules import (
    MAX_INT_DIGITS,
    MAX_NAME_CHARS,
    shorten,
)

#: POSIX environment variable names, as the platform's macros allow them (and at most 255
#: characters: a name is a name, not a place to carry data). Also the rule for handler parameter names.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}\Z")
#: Longest ``function.handler``, in characters (``module.path:function``).
MAX_HANDLER_CHARS = 1000
PYTHON_VERSION = re.compile(r"\d+(\.\d+){0,2}\Z")
#: The data platform's ``python_version`` form (``PYTHON3_12``), any case.
PLATFORM_PYTHON_VERSION = re.compile(r"python(\d+_\d+)\Z", re.IGNORECASE)


def check_env_name(key: str, what: str = "macro key") -> str:
    """Return ``key`` if it is a valid environment variable name, else raise ``ValueError``."""
    if not isinstance(key, str) or not ENV_NAME.match(key):
        raise ValueError(
            f"{what} {shorten(key, 60) if isinstance(key, str) else repr(key)} is not a valid environment variable "
            "name; use letters, digits and _, not starting with a digit, at most 255 characters"
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
        platform = PLATFORM_PYTHON_VERSION.match(value.strip()) if isinstance(value, str) else None
        if platform:  # the data platform's form: PYTHON3_12 -> 3.12
            value = ".".join(platform.group(1).split("_"))
        if value is not None and not PYTHON_VERSION.match(value.strip()):
            raise ValueError(f"python_version {value!r} is not a version; write it like 3.12, 3.12.4 or PYTHON3_12")
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
            if len(command) > MAX_NAME_CHARS:
                raise ValueError(
                    f"command {shorten(command, 60)} is longer than {MAX_NAME_CHARS} characters; shorten it"
                )
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
        from airflow_python_exec.models.exit_codes import parse_exit_codes

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
    #: Data items: argument name -> URI, spec or upstream output reference; declared outputs.
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: list[Any] = Field(default_factory=list)

    @field_validator("inputs", "outputs", mode="before")
    @classmethod
    def _data_items(cls, value: Any, info: Any) -> Any:
        from airflow_python_exec.models.data_item_specs import parse_inputs, parse_outputs

        (parse_inputs if info.field_name == "inputs" else parse_outputs)(value)
        return ({} if info.field_name == "inputs" else []) if value is None else value

    @field_validator("handler")
    @classmethod
    def _handler(cls, handler: str) -> str:
        if len(handler) > MAX_HANDLER_CHARS or not HANDLER.match(handler.strip()):
            raise ValueError(
                f"handler {shorten(handler, 60)} is not module.path:function or a function name; "
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
        for name in parameters if isinstance(parameters, dict) else ():
            if not ENV_NAME.match(name):  # names become Params and keyword arguments: never text to render
                raise ValueError(
                    f"parameter name {shorten(name, 60)} is not an identifier (letters, digits and _, not "
                    "starting with a digit, at most 255 characters); rename it"
                )
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
        from airflow_python_exec.models.source_spec import parse_source

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
        for name in self.inputs:
            if name in self.parameters:
                raise ValueError(f"{name!r} is both an input and a parameter; remove one")
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
