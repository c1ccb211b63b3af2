"""``run`` and ``provision``: a job folder, a ``job.json``, a ``.py`` file or a handler, with its
macros, parameters, inputs and outputs; stopped by SIGINT/SIGTERM as Airflow's cancel stops a task."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from airflow_python_exec.errors import PythonExecError

if TYPE_CHECKING:  # imported where used: generate-key needs neither pydantic nor the settings
    pass
from .configuration import settings_from_args
from .output import LineWriter


def macro_arg(text: str) -> tuple[str, str]:
    """``--macro KEY=VALUE``, checked with the job's own macro rules before anything is built."""
    from airflow_python_exec.models import check_env_name
    from airflow_python_exec.models.rules import shorten

    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--macro {shorten(text, 60)} has no '='; write KEY=VALUE")
    try:
        return check_env_name(key, "--macro key"), value
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@contextlib.contextmanager
def _stopped_by_signals(stop: Callable[[], None]) -> Iterator[list[int]]:
    """While inside, SIGINT and SIGTERM call ``stop`` (as Airflow's cancel calls ``on_kill``).

    Yields the list of signals received; a refusal raised because of them becomes 128 + signal.
    """
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    except PythonExecError:
        if not received:
            raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_run(args: argparse.Namespace) -> int:
    from airflow_python_exec.service import PythonExecutionService

    service = PythonExecutionService(settings_from_args(args))
    job = _job(args)
    exit_code = 0
    out = _RefusalToStderr(LineWriter(sys.stdout))
    try:
        with _stopped_by_signals(service.stop) as received:
            service.init()
            result = service.run(
                job,
                macros=dict(args.macro) if args.macro else None,
                dotenv_as_macros=args.dotenv_as_macros,
                refresh=True if args.refresh else None,
                cwd=args.cwd,
                on_line=out,
                on_setup_line=LineWriter(sys.stderr),
                resources={k: getattr(args, k) for k in ("memory", "cpu", "pids", "tmp", "timeout")},
            )
            exit_code = result.exit_code
            error = result.handler_error  # "result" and "refused" were printed by the bootstrap itself
            out.end(str(error) if error is not None and error.kind == "refused" else None)
            if error is not None and error.kind in ("exception", "unreadable") and exit_code != 0:
                LineWriter(sys.stderr)(f"error: handler {job.function.handler} failed: {result.handler_error}")
            if exit_code == 0 and not result.stopped:
                value = result.value()  # an invalid or too large result fails the run (exit 1), as in a task
                if args.result:
                    _write_result(args.result, value)
    finally:
        out.end(None)  # a line still held (the run raised) is the job's own output
        service.close()
    return 128 + received[0] if received else exit_code


class _RefusalToStderr:
    """The job's output lines for stdout, except the bootstrap's refusal (``[python_exec] error: ...``,
    printed before the handler is called, so the last line), which goes to stderr as ``error: ...``
    like every refusal. A candidate line is held until the next line or the end of the run."""

    PREFIX = "[python_exec] error: "

    def __init__(self, out: Callable[[str], None]) -> None:
        self.out: Callable[[str], None] = out
        self.held: str | None = None

    def __call__(self, line: str) -> None:
        if self.held is not None:
            self.out(self.held)
            self.held = None
        if line.startswith(self.PREFIX):
            self.held = line
        else:
            self.out(line)

    def end(self, refusal: str | None) -> None:
        """Print the held line: on stderr when it is the run's ``refusal`` message, else on stdout."""
        held, self.held = self.held, None
        if held is None:
            return
        if refusal is not None and held == self.PREFIX + refusal:
            LineWriter(sys.stderr)(f"error: {refusal}")
        else:
            self.out(held)


def _job(args: argparse.Namespace):
    """The job to run: ``PATH`` (or, with ``--code`` alone, the working directory as its folder), with
    ``--handler``, ``--param``, ``--params-file`` and ``--code`` applied.

    :raises JobConfigError: no path and no ``--code``, or an unreadable file.
    """
    from pathlib import Path

    from airflow_python_exec.errors import JobConfigError
    from airflow_python_exec.models import PythonJob

    code = _read_text(args.code, "--code") if args.code else None
    if args.path is None and code is None:
        raise JobConfigError("run needs a job PATH, or --code FILE.py with --handler")
    if args.path is None:
        if not args.handler:
            raise JobConfigError("--code needs --handler: name the function to call")
        name = Path(args.code).name if args.code.endswith(".py") else "app.py"
        job = PythonJob.from_config(
            {"jobId": Path(args.code).stem, "packageName": name, "function": {"handler": args.handler, "code": code}},
            Path.cwd(),
            source="--code",
        )
    else:
        job = PythonJob.load(args.path)
    parameters = _params_file(args.params_file) if args.params_file else {}
    parameters.update(dict(args.param or []))
    outputs = [_output_spec(n, u) for n, u in args.output] if args.output else None
    return job.with_function(
        handler=args.handler,
        parameters=parameters or None,
        code=code,
        inputs=dict(args.input) if args.input else None,
        outputs=outputs,
    )


def _output_spec(name: str, uri: str) -> dict[str, str]:
    """``--output NAME[:KIND][=URI]`` as a ``function.outputs`` spec (checked with the job)."""
    name, _, kind = name.partition(":")
    return {"name": name, **({"kind": kind} if kind else {}), **({"uri": uri} if uri else {})}


def named_arg(option: str, optional: bool = False) -> Callable[[str], tuple[str, str]]:
    """``--input NAME=URI`` / ``--output NAME[=URI]``."""

    def parse(text: str) -> tuple[str, str]:
        name, sep, uri = text.partition("=")
        if not name or (not sep and not optional) or (sep and not uri):
            raise argparse.ArgumentTypeError(f"{option} {text!r} is not NAME={'[URI]' if optional else 'URI'}")
        return name, uri

    return parse


def _read_text(path: str, what: str) -> str:
    from airflow_python_exec.errors import JobConfigError

    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise JobConfigError(f"{what} {path} cannot be read ({exc}); give a readable UTF-8 file") from None


def _params_file(path: str) -> dict:
    """``--params-file F``: a JSON object of parameters."""
    from airflow_python_exec.errors import JobConfigError
    from airflow_python_exec.isolation import json_limits

    try:
        value = json_limits.loads(_read_text(path, "--params-file"), f"--params-file {path}")
    except json_limits.JSONDepthError as exc:
        raise JobConfigError(str(exc)) from None
    except ValueError as exc:
        raise JobConfigError(f"--params-file {path} is not valid JSON ({exc}); fix it") from None
    if not isinstance(value, dict):
        raise JobConfigError(f"--params-file {path} must hold a JSON object, not {type(value).__name__}")
    return value


def param_arg(text: str) -> tuple[str, object]:
    """``--param KEY=JSON``: the value is JSON (``--param n=3``, ``--param country='"IT"'``)."""
    from airflow_python_exec.isolation import json_limits
    from airflow_python_exec.models.rules import shorten

    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"--param {shorten(text, 60)} is not KEY=JSON with KEY a Python name")
    try:
        return key, json_limits.loads(value, f"--param {key}")
    except json_limits.JSONDepthError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--param {key}: {value!r} is not JSON; quote strings, e.g. --param {key}='\"{value}\"'"
        ) from None


def _write_result(target: str, value: object) -> None:
    """``--result FILE|-``: the run's result as JSON."""
    import json

    from airflow_python_exec.errors import PythonExecError

    text = json.dumps(value)
    if target == "-":
        LineWriter(sys.stdout)(text)
        return
    try:
        with open(target, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    except OSError as exc:
        raise PythonExecError(f"--result {target} cannot be written ({exc.strerror or exc}); fix the path") from None


def cmd_provision(args: argparse.Namespace) -> int:
    from airflow_python_exec.environments import EnvironmentProvisioner
    from airflow_python_exec.models import PythonJob
    from airflow_python_exec.service import main_file
    from airflow_python_exec.validator import PythonEngineValidator

    settings = settings_from_args(args)
    job = PythonJob.load(args.path)
    interpreter = PythonEngineValidator(settings).validate()
    provisioner = EnvironmentProvisioner(settings, on_line=LineWriter(sys.stderr))
    with _stopped_by_signals(provisioner.stop) as received:
        script = main_file(job, settings, LineWriter(sys.stderr))
        print(provisioner.provision(job, interpreter, script))
    return 128 + received[0] if received else 0
