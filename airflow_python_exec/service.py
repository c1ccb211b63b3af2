"""``PythonExecutionService``: the platform's engine lifecycle, ``init`` / ``run`` / ``stop`` / ``close``.

``run`` loads the job, validates the interpreter (once per service), resolves a handler job's
source, provisions the job's environment when it has a lock file, requirements or PEP 723 metadata,
builds the command (the script, or the handler bootstrap), starts it in its own process group,
streams its merged output line by line, secrets already replaced by ``***``, and reads the run's
result (``PYTHON_EXEC_RESULT_FILE``, else the last line). It needs no running Airflow; the hook in
:mod:`airflow_python_exec.hooks` adapts it to the task log.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_python_exec.builder import Command, MacrosArg, PythonCommandBuilder
from airflow_python_exec.environments.interpreters import Interpreter
from airflow_python_exec.errors import PythonExecError, ResultError
from airflow_python_exec.handlers.data_items import AssetResolver, DataRun
from airflow_python_exec.handlers.results import read_handler_error, read_result
from airflow_python_exec.handlers.run_files import JobSource, RunFiles, resolve_job_source
from airflow_python_exec.isolation.limits import LIMIT_EXIT_CODE, RunLimits, Timeout
from airflow_python_exec.isolation.process import STOP_GRACE_S, JobProcess
from airflow_python_exec.isolation.sandbox import Sandbox, sandbox_for
from airflow_python_exec.logs import log, provider_line
from airflow_python_exec.models import PythonJob, declares_script_metadata
from airflow_python_exec.models.resources import Resources, effective_resources, parse_resources, show
from airflow_python_exec.run_result import RunResult, describe_facts, ending, interruption, run_facts
from airflow_python_exec.settings import EngineSettings
from airflow_python_exec.validator import PythonEngineValidator

if TYPE_CHECKING:  # imported when a job needs an environment, to keep the CLI fast
    from airflow_python_exec.environments import EnvironmentProvisioner


class PythonExecutionService:
    """Run Python script jobs: ``init()``, then any number of ``run()``, then ``close()``.

    :param settings: engine settings; default: ``[python_exec]`` from Airflow's configuration.
    :param stop_grace_s: seconds between SIGTERM and SIGKILL when a run is stopped.
    """

    def __init__(self, settings: EngineSettings | None = None, *, stop_grace_s: float = STOP_GRACE_S) -> None:
        self._settings = settings
        self.stop_grace_s = stop_grace_s
        self._interpreter: Interpreter | None = None
        self._process: JobProcess | None = None
        self._provisioner: EnvironmentProvisioner | None = None
        self._stop_requested = False
        self._built = False

    @property
    def settings(self) -> EngineSettings:
        """The settings in use (read from Airflow's configuration on first access if not given)."""
        if self._settings is None:
            self._settings = EngineSettings.from_airflow_config()
        return self._settings

    def init(self) -> Interpreter:
        """Validate the configured installation and return its interpreter.

        :raises PythonExecError: a subclass naming what is wrong (see :class:`PythonEngineValidator`).
        """
        self._interpreter = PythonEngineValidator(self.settings).validate()
        return self._interpreter

    def run(
        self,
        job: PythonJob | str | Path,
        *,
        macros: MacrosArg = None,
        dotenv_as_macros: bool = False,
        refresh: bool | None = None,
        cwd: str | Path | None = None,
        inherit_env: bool | None = None,
        context_env: Mapping[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
        on_secrets: Callable[[frozenset[str]], None] | None = None,
        on_setup_line: Callable[[str], None] | None = None,
        handler_context: Mapping[str, Any] | None = None,
        resolve_asset: AssetResolver | None = None,
        resources: Resources | Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Run ``job`` to its end and return its :class:`RunResult`.

        :param job: a :class:`PythonJob`, or a path for :meth:`PythonJob.load`.
        :param macros: per-run macros, overriding ``job.json`` macros of the same key.
        :param dotenv_as_macros: convert the job's ``.env`` into environment variables.
        :param refresh: ``True`` builds an ephemeral environment for this run (default: the job's
            ``pythonEnv.refresh``).
        :param cwd: working directory (relative to the job folder); default the job folder.
        :param inherit_env: override ``[python_exec] inherit_env``.
        :param context_env: Airflow context variables (``AIRFLOW_CTX_*``).
        :param on_line: called with each output line, a ``str`` without newline, secrets replaced.
        :param on_secrets: called before the script starts with every text that gives a decrypted
            value away: the values and their forms (:func:`~airflow_python_exec.redaction.secret_forms`),
            for Airflow's ``mask_secret``.
        :param on_setup_line: called with each source and environment-provisioning line (prefixed
            ``[python_exec]`` or ``[uv]``); default: this module's logger.
        :param handler_context: a function job's ``context`` (JSON values); default ``{"job_id": ...}``.
        :param resolve_asset: an asset input's latest event (Airflow's); ``None``: asset inputs are refused.
        :param resources: resource limits over the job's own (``{"memory": "512Mi", "timeout": "30m"}``).
        :raises PythonExecError: the job is refused before its script starts (exit status 2: among
            others ``SandboxUnavailableError`` for ``sandbox = bubblewrap`` without a usable bwrap), or
            its source or environment cannot be provisioned (``ProvisioningError``, exit status 3).
        """
        job = job if isinstance(job, PythonJob) else PythonJob.load(job)
        interpreter = self._interpreter or self.init()
        # Everything about the job is checked before anything is built (an environment can take
        # minutes): the macros, the .env, the working directory, the interpreter.
        prepared = PythonCommandBuilder(self.settings).prepare(
            job,
            macros=macros,
            dotenv_as_macros=dotenv_as_macros,
            inherit_env=inherit_env,
            context_env=context_env,
            cwd=cwd,
        )
        limits = effective_resources(
            job.resources, parse_resources(resources), self.settings.default_resources, self.settings.max_resources
        )
        job = job.model_copy(update={"resources": limits})  # the provisioner bounds its builds with them
        sandbox = sandbox_for(self.settings)  # a missing bwrap is refused before anything is built
        data = _data_run(job, self.settings, resolve_asset, handler_context)
        setup_line = on_setup_line or provider_line
        with ExitStack() as stack:
            if self._stop_requested:
                return self._stopped_before_start(job)
            source = resolve_job_source(job, self.settings, setup_line) if job.function is not None else None
            prepared.check_cwd(source.root if source is not None else None)
            script = _main_file(job, source)
            if data is not None and source is not None:
                data.read_handler_file(source.root, source.main_file)  # @handler outputs, project data items
            venv = self._environment(stack, job, interpreter, refresh, setup_line, script)
            python = venv / "bin" / "python" if venv is not None else interpreter.path
            files = stack.enter_context(RunFiles())
            run_env = files.environment(job, source, handler_context)
            if data is not None:
                run_env.update(data.stage(files.folder))
            command = prepared.command(
                python, venv, bootstrap=files.bootstrap if source is not None else None, run_env=run_env
            )
            if sandbox is not None:
                command = _sandboxed(command, sandbox, job, source, venv, python, files, data is not None, limits.tmp)
            if on_secrets is not None and command.secrets:
                on_secrets(command.redact.forms)
            if self._stop_requested:
                return self._stopped_before_start(job)
            facts = _facts(venv, self._built, interpreter.version, sandbox)
            result = self._execute(job, command, facts, on_line)
            result = self._with_result(result, files, command, source is not None)
            return self._published(result, data, files, command, setup_line)

    def _published(
        self, result: RunResult, data: DataRun | None, files: RunFiles, command: Command, on_line: Callable[[str], None]
    ) -> RunResult:
        """Publish a successful handler run's outputs (a failed or stopped run publishes nothing)."""
        if data is None or result.exit_code != 0 or result.stopped or result.result_error is not None:
            return result
        outputs = data.publish(
            files.folder,
            result.result,
            max_bytes=self.settings.max_result_bytes,
            redact=command.redact,
            on_line=on_line,
        )
        return replace(result, result=data.result(result.result, outputs), outputs=outputs, inputs=data.lineage())

    def _with_result(self, result: RunResult, files: RunFiles, command: Command, handler: bool) -> RunResult:
        """Add the run's result (and a handler's failure) read from its files, secrets replaced."""
        if result.stopped:
            return result
        limit = self.settings.max_result_bytes
        error = (
            read_handler_error(files.error_file, command.redact, max_bytes=limit, dir_fd=files.dir_fd)
            if handler
            else None
        )
        try:
            value = read_result(
                files.result_file,
                result.last_line,
                max_result_bytes=limit,
                redact=command.redact,
                dir_fd=files.dir_fd,
            )
        except ResultError as exc:
            return replace(result, result_error=str(exc), handler_error=error)
        if error is not None and error.kind == "unreadable":  # a hostile error file fails even an exit 0
            return replace(result, result_error=error.message, handler_error=error)
        return replace(result, result=value, handler_error=error)

    @staticmethod
    def _stopped_before_start(job: PythonJob) -> RunResult:
        log.warning("job %s stopped before its script started", job.job_id)
        return RunResult(exit_code=128 + signal.SIGTERM, duration_s=0.0, last_line="", stopped=True)

    def _environment(
        self,
        stack: ExitStack,
        job: PythonJob,
        interpreter: Interpreter,
        refresh: bool | None,
        on_setup_line: Callable[[str], None] | None,
        script: Path | None = None,
    ) -> Path | None:
        """The job's virtual environment (entered on ``stack``), or ``None`` when it needs none."""
        if not job.needs_environment and (script is None or not declares_script_metadata(script)):
            return None
        from airflow_python_exec.environments import EnvironmentProvisioner

        provisioner = EnvironmentProvisioner(self.settings, on_line=on_setup_line)
        self._provisioner = provisioner
        try:
            return stack.enter_context(provisioner.environment(job, interpreter, refresh=refresh, script=script))
        finally:
            self._provisioner = None
            self._built = provisioner.built

    def _execute(
        self, job: PythonJob, command: Command, facts: dict[str, Any], on_line: Callable[[str], None] | None
    ) -> RunResult:
        redact = command.redact
        resources = job.resources or Resources()
        limits = RunLimits(**resources.model_dump(), sandboxed=command.launcher != ())
        facts["resources"] = {**resources.facts(), "enforced_by": limits.enforced_by}
        log.info(
            "running job %s: %s (%s)", job.job_id, " ".join(command.argv), describe_facts(facts, resources.describe())
        )
        started = time.monotonic()
        try:
            process = JobProcess(
                command.argv,
                command.env,
                command.cwd,
                grace_s=self.stop_grace_s,
                launcher=command.launcher,
                limits=limits,
            )
        except OSError as exc:
            limits.close()
            raise PythonExecError(
                f"job {job.job_id!r} could not start {command.argv[0]} ({exc.strerror or exc}); "
                "check the script, its interpreter and the working directory"
            ) from None
        self._process = process
        timer = Timeout(resources.timeout, process.stop)
        last = ""
        try:
            if self._stop_requested:  # stop() raced with the start
                process.stop()
            for last in process.stream(redact, hold=max(redact.longest - 1, 0)):
                if on_line is not None:
                    on_line(last)
            exit_code = process.wait()
            pid = None if command.launcher else process.pid  # a sandboxed script's pid is bwrap's here
            reason = limits.ended_by(exit_code, command.argv[0], pid)  # read before its cgroup goes
        except BaseException as exc:
            process.kill()  # an interrupted reader (task timeout, Ctrl-C) must not leave the group
            log.info("job %s %s in %.2f s", job.job_id, interruption(exc), time.monotonic() - started)
            raise
        finally:
            timer.cancel()
            self._process = None
            process.close()
            limits.close()
        if timer.fired:
            reason = f"timeout {show('timeout', resources.timeout)} reached"
        return self._ended(job, process, exit_code, last, started, facts, reason)

    def _ended(
        self,
        job: PythonJob,
        process: JobProcess,
        exit_code: int,
        last: str,
        started: float,
        facts: dict[str, Any],
        reason: str | None,
    ) -> RunResult:
        """The run's result, a limit that ended it named in one line (its own exit status)."""
        duration = time.monotonic() - started
        if reason is not None:
            log.error("job %s ended: %s", job.job_id, reason)
            result = RunResult(LIMIT_EXIT_CODE, duration, last, limit=reason, facts=facts)
        else:
            result = RunResult(exit_code, duration, last, stopped=process.stopped, facts=facts)
        log.info("job %s %s in %.2f s", job.job_id, ending(result), result.duration_s)
        return result

    def stop(self) -> None:
        """Stop the current run: SIGTERM to the script's process group, SIGKILL after the grace period.

        Safe to call at any time, from another thread or a signal handler; a provisioning in progress
        is stopped too. Until :meth:`close`, a later ``run`` returns a stopped result without starting
        anything.
        """
        self._stop_requested = True
        for running in (self._provisioner, self._process):
            if running is not None:
                running.stop()

    def close(self) -> None:
        """Stop anything still running and release what ``init``/``run`` acquired."""
        self.stop()
        self._interpreter = None
        self._stop_requested = False


def _sandboxed(
    command: Command,
    sandbox: Sandbox,
    job: PythonJob,
    source: JobSource | None,
    venv: Path | None,
    python: Path,
    files: RunFiles,
    data_items: bool = False,
    tmp_bytes: int | None = None,
) -> Command:
    """``command`` started inside ``sandbox``: the job folder, working directory, environment,
    interpreter installation and handler source readable, the run's private folder writable (its
    staged inputs read-only)."""
    readable = [python.parent.parent, Path(os.path.realpath(python)).parent.parent]  # venv or prefix; base prefix
    if venv is not None:
        readable.append(venv)
    if source is not None:
        readable.append(source.root)
    if data_items:
        readable.append(DataRun.inputs_folder(files.folder))
    prefix = sandbox.prefix(
        job_folder=job.folder, cwd=command.cwd, readable=readable, writable=[files.folder], tmp_bytes=tmp_bytes
    )
    return replace(command, launcher=tuple(prefix))


def _data_run(
    job: PythonJob,
    settings: EngineSettings,
    resolve_asset: AssetResolver | None,
    handler_context: Mapping[str, Any] | None,
) -> DataRun | None:
    """A function job's data items, its inputs resolved and checked under the Reach rule (before
    anything is built), whether the run is sandboxed or not."""
    if job.function is None:
        return None
    from airflow_python_exec.models.reach import reach_for

    run_id = (handler_context or {}).get("run_id")
    data = DataRun(
        job,
        data_store=settings.data_store,
        resolve_asset=resolve_asset,
        run_id=run_id,
        reach=reach_for(settings, job.folder),
        max_bytes=settings.max_data_bytes,
    )
    data.check()
    return data


def _main_file(job: PythonJob, source: JobSource | None) -> Path | None:
    """The file read for PEP 723 metadata: a handler job's main file, or the script (``packageName``)."""
    if source is not None:
        return source.main_file
    return job.script if job.package_name is not None else None


def main_file(job: PythonJob, settings: EngineSettings, on_line: Callable[[str], None] | None = None) -> Path | None:
    """A job's main file, its source resolved first (``provision`` reads it for PEP 723 metadata).

    :raises PythonExecError: the source cannot be resolved.
    """
    source = resolve_job_source(job, settings, on_line or provider_line) if job.function is not None else None
    return _main_file(job, source)


def _facts(venv: Path | None, built: bool, python: str, sandbox: Sandbox | None) -> dict[str, Any]:
    """What the run runs with (its limits are added once they are set up)."""
    environment = None
    if venv is not None:
        from airflow_python_exec.environments.facts import environment_facts, venv_version

        python, environment = venv_version(venv) or python, environment_facts(venv, built)
    box = {"mode": "off"} if sandbox is None else {"mode": "bubblewrap", "network": sandbox.network}
    return run_facts(python, environment, box, {})
