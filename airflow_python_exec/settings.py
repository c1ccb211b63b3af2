"""Engine settings: the ``[python_exec]`` section of Airflow's configuration, read in one place.

Every option can be set in ``airflow.cfg`` or as ``AIRFLOW__PYTHON_EXEC__<OPTION>`` (Airflow's
configuration convention); ``get_provider_info()`` declares the same options and defaults, so
``airflow config list --defaults`` shows them. Operator and CLI arguments override a setting for
one job via :meth:`EngineSettings.override`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, field_validator

from airflow_python_exec.errors import PythonExecError
from airflow_python_exec.settings_file import SECTION, read_python_exec

#: option -> (default as written in airflow.cfg, or None for "unset", description)
OPTIONS: dict[str, tuple[str | None, str]] = {
    "enabled": (
        "True",
        "The platform's python.enabled: False refuses every job before anything runs.",
    ),
    "install_path": (
        None,
        "The platform's python.installPath: a Python installation prefix holding bin/python3 or "
        "bin/python. Unset: the base installation of the Python that runs Airflow. Set but blank, "
        "missing, or without an executable interpreter: every job fails before execution.",
    ),
    "cache_dir": (
        None,
        "Folder holding cached job environments (envs/<key>/) and ephemeral ones (ephemeral/). "
        "Unset: $XDG_CACHE_HOME/airflow_python_exec, else ~/.cache/airflow_python_exec. A relative "
        "path is taken from the working directory of the process that loads the settings; blank "
        "is refused.",
    ),
    "fernet_key": (
        None,
        "Comma-separated Fernet keys that decrypt secure macros (first key encrypts; all decrypt, "
        "as in MultiFernet rotation). Unset: [core] fernet_key.",
    ),
    "python_downloads": (
        "never",
        "Passed to uv as UV_PYTHON_DOWNLOADS when a job asks for a python_version: never, manual or automatic.",
    ),
    "lock_timeout": (
        "600",
        "Seconds to wait while another process provisions the same cached environment.",
    ),
    "inherit_env": (
        "True",
        "True: the script inherits the worker's environment minus Airflow's own secrets. False: "
        "only PATH, HOME, LANG, LC_*, TZ, TMPDIR and USER.",
    ),
    "sandbox": (
        "off",
        "off: jobs run as the worker's user with its view of the machine. bubblewrap: every job runs "
        "in a bubblewrap (bwrap) sandbox: own PID, IPC and UTS namespaces, a fresh /proc, the root "
        "filesystem read-only, a private /tmp, AIRFLOW_HOME, cache_dir and the worker's home hidden; "
        "a job is refused when bwrap is missing or cannot start. auto: bubblewrap when it works, "
        "else off with a warning.",
    ),
    "sandbox_writable_paths": (
        "",
        "Comma-separated absolute folders a sandboxed job may write, besides its private /tmp.",
    ),
    "sandbox_network": (
        "True",
        "False: a sandboxed job gets its own network namespace with only a loopback (no network).",
    ),
    "max_result_bytes": (
        "1048576",
        "Largest job result (JSON in PYTHON_EXEC_RESULT_FILE, or the last output line) pushed to XCom "
        "or written by the CLI's --result, in bytes; a larger one fails the run.",
    ),
    "max_source_bytes": (
        "536870912",
        "Largest handler-job source, in bytes: a zip archive or git checkout unpacked, or inline code.",
    ),
    "max_output_bytes": (
        "10737418240",
        "Largest total of a handler run's table and artifact outputs (a folder artifact's files summed), "
        "in bytes, counted while they are copied to the data store; a larger total fails the run.",
    ),
    "upload_folder": (
        None,
        'Where the "Python jobs" UI page writes uploaded job folders (upload_folder/<jobId>/, earlier '
        "versions under upload_folder/.versions/<jobId>/<UTC timestamp>/): a folder inside a DAG bundle "
        "that every worker sees. Unset or blank: uploads are disabled.",
    ),
    "job_dag_prefix": (
        "job_",
        "The prefix of the DAG ids that airflow_python_exec.job_dags.load_job_dags makes, one DAG per job "
        "folder: <job_dag_prefix><jobId>.",
    ),
    "data_store": (
        None,
        "Where a handler's outputs without their own uri are stored (data items and artifacts, one "
        "new version per run under {data_store}/{dataitem|artifact}/{name}/{version}/): any "
        "ObjectStoragePath base, a connection id as user info (s3://aws_default@bucket/dh). Unset: "
        "file://$AIRFLOW_HOME/python_exec/data.",
    ),
}


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/airflow_python_exec``, else ``~/.cache/airflow_python_exec``.

    A relative ``XDG_CACHE_HOME`` is ignored, as the XDG Base Directory specification says.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "airflow_python_exec"


def absolute_cache_dir(value: Any) -> Any:
    """``cache_dir`` as an absolute path: ``~`` expanded, a relative path taken from the current
    working directory when the settings are loaded (a job's environment is used from its own
    folder, so a relative path would point elsewhere). Blank is refused.

    :raises ValueError: blank, a NUL byte, or ``~user`` of an unknown user.
    """
    if not isinstance(value, (str, os.PathLike)):
        return value  # pydantic reports the wrong type
    text = os.fspath(value).strip()
    if not text:
        raise ValueError(
            "is set but blank; set it to a folder for job environments (an absolute path) or remove it "
            "to use the default $XDG_CACHE_HOME/airflow_python_exec"
        )
    if "\x00" in text:
        raise ValueError(f"{text!r} contains a NUL byte; fix the path")
    try:
        return Path(os.path.abspath(Path(text).expanduser()))
    except RuntimeError:  # expanduser: no such user
        raise ValueError(f"{text!r} starts with the home of a user that does not exist; fix the path") from None


def absolute_upload_folder(value: Any) -> Any:
    """``upload_folder`` as an absolute path, or ``None`` (uploads disabled) when unset or blank.

    :raises ValueError: a NUL byte, or ``~user`` of an unknown user.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return absolute_cache_dir(value)


def writable_paths(value: Any) -> Any:
    """``sandbox_writable_paths`` as absolute paths: a comma-separated string (as ``airflow.cfg``
    writes it) or a list; blanks skipped, ``~`` expanded.

    :raises ValueError: an entry that is relative or holds a NUL byte (the one-line message names it).
    """
    if isinstance(value, (str, os.PathLike)):
        value = os.fspath(value).split(",")
    if not isinstance(value, (list, tuple)):
        return value  # pydantic reports the wrong type
    paths = []
    for entry in value:
        text = os.path.expanduser(os.fspath(entry).strip())
        if not text:
            continue
        if "\x00" in text or not os.path.isabs(text):
            raise ValueError(f"entry {text!r} is not an absolute path; write absolute folders, comma-separated")
        paths.append(Path(os.path.normpath(text)))
    return tuple(paths)


class EngineSettings(BaseModel):
    """The resolved ``[python_exec]`` options for one engine (immutable).

    Build it with :meth:`from_airflow_config` to read Airflow's configuration, or directly with
    keyword arguments (tests, embedding). ``fernet_key`` is a :class:`pydantic.SecretStr` so it never
    shows in a repr or a log line.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    install_path: str | None = None
    cache_dir: Path = Field(default_factory=default_cache_dir)
    fernet_key: SecretStr | None = None
    python_downloads: Literal["never", "manual", "automatic"] = "never"
    lock_timeout: float = Field(default=600.0, gt=0)
    inherit_env: bool = True
    sandbox: Literal["off", "bubblewrap", "auto"] = "off"
    sandbox_writable_paths: tuple[Path, ...] = ()
    sandbox_network: bool = True
    max_result_bytes: int = Field(default=1_048_576, gt=0)
    max_source_bytes: int = Field(default=536_870_912, gt=0)
    max_output_bytes: int = Field(default=10_737_418_240, gt=0)
    upload_folder: Path | None = None
    job_dag_prefix: str = "job_"
    #: ``None``: ``file://$AIRFLOW_HOME/python_exec/data`` (see :mod:`airflow_python_exec.handlers.store`).
    data_store: str | None = None

    _cache_dir = field_validator("cache_dir", mode="before")(absolute_cache_dir)
    _upload_folder = field_validator("upload_folder", mode="before")(absolute_upload_folder)
    _writable = field_validator("sandbox_writable_paths", mode="before")(writable_paths)
    _sandbox = field_validator("sandbox", mode="before")(lambda v: v.strip().lower() if isinstance(v, str) else v)
    #: ``fernet_key`` is unset here and ``[core] fernet_key`` is still to be asked of Airflow's
    #: configuration, on the first :meth:`fernet_keys` (set only by the fast configuration path).
    _core_fernet_pending: bool = PrivateAttr(default=False)

    @classmethod
    def from_airflow_config(cls, **overrides: Any) -> EngineSettings:
        """Read ``[python_exec]`` from Airflow's configuration, then apply ``overrides``.

        ``fernet_key`` falls back to ``[core] fernet_key`` when unset. Overrides whose value is
        ``None`` are ignored, so operator arguments left at their default keep the setting.

        In a process that has not imported Airflow's configuration yet (the CLI, the Python API),
        the options are read from ``airflow.cfg`` and ``AIRFLOW__PYTHON_EXEC__*`` directly when that
        gives what Airflow would (see :mod:`airflow_python_exec.settings_file` for exactly when), and
        ``[core] fernet_key`` is then asked of Airflow only once a key is needed.

        :raises PythonExecError: an option has a value of the wrong type.
        """
        values = read_fast() if "airflow.configuration" not in sys.modules else None
        pending = False
        if values is None:
            values = read_airflow()
        elif not values.get("fernet_key"):
            values["fernet_key"], pending = None, True
        settings = cls._validated({**values, **_set_only(overrides)}, "[python_exec]")
        settings._core_fernet_pending = pending and settings.fernet_key is None
        return settings

    def override(self, **overrides: Any) -> EngineSettings:
        """Return a copy with the non-``None`` ``overrides`` applied (validated like the settings)."""
        if not _set_only(overrides):
            return self
        settings = self._validated({**self.model_dump(), **_set_only(overrides)}, "override")
        settings._core_fernet_pending = self._core_fernet_pending and settings.fernet_key is None
        return settings

    @classmethod
    def _validated(cls, values: dict[str, Any], origin: str) -> EngineSettings:
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            option = ".".join(str(p) for p in err["loc"])
            if err["type"] == "value_error":  # our own validators' messages say what to do
                raise PythonExecError(f"{origin} {option} {err['msg'].removeprefix('Value error, ')}") from None
            shown = "***" if option == "fernet_key" else repr(err.get("input"))
            raise PythonExecError(f"{origin} {option} = {shown} is invalid: {err['msg']}; fix the value") from None

    def fernet_keys(self) -> list[str]:
        """The configured Fernet keys, in order, without blanks."""
        key = self.fernet_key
        if key is None and self._core_fernet_pending:
            from airflow.configuration import conf

            core = conf.get("core", "fernet_key", fallback=None) or None
            key = SecretStr(core) if core else None
        if key is None:
            return []
        return [k.strip() for k in key.get_secret_value().split(",") if k.strip()]


def read_airflow() -> dict[str, Any]:
    """The set ``[python_exec]`` options through Airflow's own configuration, ``fernet_key``
    falling back to ``[core] fernet_key``."""
    from airflow.configuration import conf

    values: dict[str, Any] = {}
    for option in OPTIONS:
        value = conf.get(SECTION, option, fallback=None)
        if value is not None:
            values[option] = value
    if not values.get("fernet_key"):
        values["fernet_key"] = conf.get("core", "fernet_key", fallback=None) or None
    return values


def read_fast() -> dict[str, Any] | None:
    """The set ``[python_exec]`` options read without Airflow, or ``None`` when only Airflow can
    say (:func:`airflow_python_exec.settings_file.read_python_exec`)."""
    return read_python_exec(OPTIONS)


def _set_only(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
