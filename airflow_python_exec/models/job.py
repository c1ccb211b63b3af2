"""``PythonJob``: a job folder plus the platform's job configuration (DESIGN.md, "The job folder")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from airflow_python_exec.errors import JobConfigError, ScriptNotAllowedError
from airflow_python_exec.logs import log
from airflow_python_exec.models.dag_spec import JobDagSpec

from .fields import (
    FunctionSpec,
    Macro,
    PythonEnv,
    RuntimeConfig,
)
from .resources import Resources, parse_resources
from .rules import (
    DEFAULT_SCRIPT,
    JOB_FILE,
    PLATFORM_SCRIPT,
    allowed_script,
    check_name,
    expand_user,
    json_keys,
    near_miss,
    one_line,
    read_json,
)

#: Project names that are folders of the data store itself (``{data_store}/{dataitem|artifact}/``).
RESERVED_PROJECTS = ("dataitem", "artifact")


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
    #: The data platform's project: a level in the data store path and a prefix of the asset names.
    project: str | None = None
    #: The DAG ``load_job_dags`` makes of the job (DESIGN.md, "Jobs as DAGs").
    dag: JobDagSpec | None = None
    #: Resource limits (DESIGN.md, "Resource limits"); unset keys come from ``default_resources``.
    resources: Resources | None = None
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

    @field_validator("project")
    @classmethod
    def _project(cls, value: str | None) -> str | None:
        from airflow_python_exec.models.data_item_specs import NAME

        if value is not None and (not isinstance(value, str) or not NAME.match(value)):
            raise ValueError(
                f"project {value!r} is not a project name; use letters, digits, '.', '_' and '-', e.g. demo-etl"
            )
        if value is not None and value.casefold() in RESERVED_PROJECTS:
            # {data_store}/dataitem/... is where the jobs without a project keep their tables: a project
            # so named would put its items inside theirs (its item folders listed as their data items).
            raise ValueError(
                f"project {value!r} is the name of a data store folder ({', '.join(RESERVED_PROJECTS)}); "
                "choose another project name"
            )
        return value

    @field_validator("resources", mode="before")
    @classmethod
    def _resources(cls, value: Any) -> Any:
        try:
            return parse_resources(value) if value is not None else None
        except JobConfigError as exc:
            raise ValueError(str(exc)) from None

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
        source is checked once resolved (:mod:`airflow_python_exec.handlers.run_files`)."""
        assert self.function is not None
        name = self.main_file_name
        if self.function.inline_code is not None or self.function.source is not None:
            check_name(name)
        elif self.function.bare:
            self.script  # noqa: B018
        return self

    @property
    def main_file_name(self) -> str:
        """``packageName``; for a function job without one ``app.py``, or ``main.py`` (the data
        platform's default) when the job folder has ``main.py`` and no ``app.py``."""
        return self.main_file_in(self.folder)

    def main_file_in(self, root: Path) -> str:
        """The main file's name in the source root ``root`` (see :attr:`main_file_name`)."""
        if self.package_name is not None:
            return self.package_name
        if self.function is not None and not (root / DEFAULT_SCRIPT).exists() and (root / PLATFORM_SCRIPT).is_file():
            return PLATFORM_SCRIPT
        return DEFAULT_SCRIPT

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

    def with_python_env(self, python_env: PythonEnv | Mapping[str, Any]) -> PythonJob:
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
        inputs: dict[str, Any] | None = None,
        outputs: list[Any] | None = None,
    ) -> PythonJob:
        """Return a copy whose ``function`` takes the given values (an operator's or the CLI's arguments).

        ``parameters`` and ``inputs`` update the job's own per key; ``source`` or ``code`` replace its
        source; ``outputs`` replace its outputs.

        :raises JobConfigError: no handler anywhere, or the result breaks a job rule.
        """
        function = self.function.model_dump(exclude_none=True) if self.function is not None else {}
        if handler is not None:
            function["handler"] = handler
        if parameters:
            function["parameters"] = {**function.get("parameters", {}), **parameters}
        if inputs:
            function["inputs"] = {**function.get("inputs", {}), **inputs}
        if outputs is not None:
            function["outputs"] = list(outputs)
        if source is not None or code is not None:
            for key in ("source", "code", "base64"):
                function.pop(key, None)
            function.update({k: v for k, v in (("source", source), ("code", code)) if v is not None})
        if not function:
            return self
        if "handler" not in function:
            raise JobConfigError(
                f"job {self.job_id!r}: parameters, inputs, outputs, source or code need a handler; give one"
            )
        return self.with_config({"function": function})

    @classmethod
    def load(cls, path: str | Path) -> PythonJob:
        """Load a job from a folder, a ``job.json`` file, or a single ``.py`` file.

        :param path: job folder (``job.json`` optional inside), path to a ``job.json``, or a ``.py``
            script (its folder is the job folder, its stem the ``jobId``).
        :raises JobConfigError: a missing path, invalid JSON, or any job rule broken; one line.
        """
        path = expand_user(path)
        if path.is_dir():
            folder, config = path, path / JOB_FILE
            # A job.json that is there but not a file (folder, FIFO, dangling symlink) is refused by
            # read_json: ignoring it would run the job without its configuration.
            data = (
                read_json(config)
                if os.path.lexists(config)
                else {"jobId": path.resolve().name, "packageName": DEFAULT_SCRIPT}
            )
        elif path.is_file() and path.suffix == ".json":
            folder, data = path.parent, read_json(path)
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


def _refuse_near_miss(key: str, model: type[BaseModel]) -> None:
    """Raise ``ValueError`` when an unknown top-level ``key`` resembles a known one.

    ``runtimeConfig``'s own keys count too (``Macros``, even ``macros``, at the top level): a macro
    list put beside ``runtimeConfig`` instead of inside it would otherwise drop every macro.
    """
    misplaced = json_keys(RuntimeConfig)
    target = near_miss(key, json_keys(model)) or (key if key in misplaced else near_miss(key, misplaced))
    if target is None:
        return
    if target in misplaced:
        looks = "" if key == target else f" looks like {target!r}, which"
        raise ValueError(
            f"top-level key {key!r}{looks} belongs inside runtimeConfig; move it to runtimeConfig.{target}"
        )
    raise ValueError(f"top-level key {key!r} looks like {target!r}; fix its spelling or remove it")
