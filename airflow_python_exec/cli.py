"""``airflow-python-exec``: run, validate and provision jobs from the command line, outside Airflow.

Exit status (DESIGN.md): the script's own once it has started; 2 when the job is refused before
it starts; 3 when provisioning its environment fails; 130/143 when stopped by SIGINT/SIGTERM.
A refusal prints one line ``error: <what is wrong and how to fix it>`` on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, NoReturn, TextIO

from airflow_python_exec.errors import PythonExecError

if TYPE_CHECKING:  # imported where used: generate-key needs neither pydantic nor the settings
    from airflow_python_exec.settings import EngineSettings


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    _tolerant_output()
    args = _parser().parse_args(argv)
    # The CLI reads Airflow's configuration but needs no metadata database, ORM or Airflow logging:
    # Airflow's documented opt-out of its import-time initialisation halves the start-up time.
    os.environ.setdefault("_AIRFLOW__AS_LIBRARY", "1")
    try:
        return args.func(args)
    except PythonExecError as exc:
        _Lines(sys.stderr)(f"error: {exc}")
        return exc.exit_code
    except BrokenPipeError:  # e.g. `envs list | head -1`: stop quietly, as a Unix tool does on SIGPIPE
        _discard(sys.stdout)
        return 128 + signal.SIGPIPE


def _tolerant_output() -> None:
    """Never die on a character the terminal's encoding lacks (``PYTHONIOENCODING=ascii``): write
    it as a backslash escape instead, as Python itself does on stderr."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def _discard(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at /dev/null, so that nothing written later, not even the
    interpreter's final flush, fails again (Python's documented advice for a closed pipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)


class _Lines:
    """Print lines to ``stream`` while someone reads them.

    A reader that goes away (``run job | head -1``) must not kill the job: the first
    ``BrokenPipeError`` silences the stream and later lines are dropped, so the job runs to its end
    and the CLI exits with its status.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.closed = False

    def __call__(self, line: str) -> None:
        if self.closed:
            return
        try:
            print(line, file=self.stream, flush=True)
        except BrokenPipeError:
            self.closed = True
            _discard(self.stream)


def _settings(args: argparse.Namespace) -> EngineSettings:
    from airflow_python_exec.settings import EngineSettings

    settings = EngineSettings.from_airflow_config(
        install_path=getattr(args, "install_path", None), sandbox=getattr(args, "sandbox", None)
    )
    # Importing Airflow's configuration installs Airflow's own log format; the CLI wants plain
    # "warning: ..." lines on stderr, the script's output alone on stdout.
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    return settings


def _macro(text: str) -> tuple[str, str]:
    """``--macro KEY=VALUE``, checked with the job's own macro rules before anything is built."""
    from airflow_python_exec.models import check_env_name

    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--macro {text!r} has no '='; write KEY=VALUE")
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

    service = PythonExecutionService(_settings(args))
    job = _job(args)
    exit_code = 0
    try:
        with _stopped_by_signals(service.stop) as received:
            service.init()
            result = service.run(
                job,
                macros=dict(args.macro) if args.macro else None,
                dotenv_as_macros=args.dotenv_as_macros,
                refresh=True if args.refresh else None,
                cwd=args.cwd,
                on_line=_Lines(sys.stdout),
                on_setup_line=_Lines(sys.stderr),
            )
            exit_code = result.exit_code
            error = result.handler_error  # "result" and "refused" were printed by the bootstrap itself
            if error is not None and error.kind in ("exception", "unreadable") and exit_code != 0:
                _Lines(sys.stderr)(f"error: handler {job.function.handler} failed: {result.handler_error}")
            if exit_code == 0 and not result.stopped:
                value = result.value()  # an invalid or too large result fails the run (exit 1), as in a task
                if args.result:
                    _write_result(args.result, value)
    finally:
        service.close()
    return 128 + received[0] if received else exit_code


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
    return job.with_function(handler=args.handler, parameters=parameters or None, code=code)


def _read_text(path: str, what: str) -> str:
    from airflow_python_exec.errors import JobConfigError

    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise JobConfigError(f"{what} {path} cannot be read ({exc}); give a readable UTF-8 file") from None


def _params_file(path: str) -> dict:
    """``--params-file F``: a JSON object of parameters."""
    from airflow_python_exec import json_limits
    from airflow_python_exec.errors import JobConfigError

    try:
        value = json_limits.loads(_read_text(path, "--params-file"), f"--params-file {path}")
    except json_limits.JSONDepthError as exc:
        raise JobConfigError(str(exc)) from None
    except ValueError as exc:
        raise JobConfigError(f"--params-file {path} is not valid JSON ({exc}); fix it") from None
    if not isinstance(value, dict):
        raise JobConfigError(f"--params-file {path} must hold a JSON object, not {type(value).__name__}")
    return value


def _param(text: str) -> tuple[str, object]:
    """``--param KEY=JSON``: the value is JSON (``--param n=3``, ``--param country='"IT"'``)."""
    from airflow_python_exec import json_limits

    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"--param {text!r} is not KEY=JSON with KEY a Python name")
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
        _Lines(sys.stdout)(text)
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

    settings = _settings(args)
    job = PythonJob.load(args.path)
    interpreter = PythonEngineValidator(settings).validate()
    provisioner = EnvironmentProvisioner(settings, on_line=_Lines(sys.stderr))
    with _stopped_by_signals(provisioner.stop) as received:
        script = main_file(job, settings, _Lines(sys.stderr))
        print(provisioner.provision(job, interpreter, script))
    return 128 + received[0] if received else 0


def cmd_envs_list(args: argparse.Namespace) -> int:
    from airflow_python_exec.environments import list_environments

    envs = list_environments(_settings(args).cache_dir)
    print(f"{'KEY':<34}{'SIZE':>10}  {'CREATED':<20}{'LAST USED':<20}JOB")
    for env in envs:
        state = "" if env.provisioned else "  (unfinished)"
        print(
            f"{env.key:<34}{_size(env.size_bytes):>10}  {_when(env.created):<20}{_when(env.last_used):<20}"
            f"{env.job_id}{state}"
        )
    return 0


def cmd_envs_prune(args: argparse.Namespace) -> int:
    from airflow_python_exec.environments import prune

    removed, busy = prune(_settings(args).cache_dir, args.unused_for, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for env in removed:
        print(f"{verb} {env.key} ({_size(env.size_bytes)}, job {env.job_id}, last used {_when(env.last_used)})")
    for key in busy:
        print(f"kept {key}: in use by a running job")
    print(f"{verb}: {len(removed)}; in use: {len(busy)}")
    return 0


#: ``envs prune`` without ``--unused-for``: environments nobody has used for a week.
DEFAULT_UNUSED_FOR = "7d"


def _duration(text: str) -> float:
    """``90``, ``45s``, ``30m``, ``12h``, ``7d`` -> seconds: a finite number, zero or more."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    number, unit = (text[:-1], text[-1]) if text[-1:].lower() in units else (text, "s")
    try:
        seconds = float(number) * units[unit.lower()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"duration {text!r} is not like 90, 45s, 30m, 12h or 7d") from None
    # nan compares false with everything and a negative age matches every environment: either would
    # prune all of them.
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(
            f"duration {text!r} must be a finite time of zero or more, like 90, 45s, 30m, 12h or 7d"
        )
    return seconds


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _when(ts: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def cmd_validate(args: argparse.Namespace) -> int:
    from airflow_python_exec.validator import PythonEngineValidator

    interpreter = PythonEngineValidator(_settings(args)).validate()
    print(f"{interpreter.path} (Python {interpreter.version})")
    return 0


def cmd_encrypt(args: argparse.Namespace) -> int:
    from airflow_python_exec import crypto

    raw = sys.stdin.buffer.read()
    raw = raw[:-1] if raw.endswith(b"\n") else raw
    print(crypto.encrypt(_secret_text(raw), _settings(args).fernet_keys()))
    return 0


def _secret_text(raw: bytes) -> str:
    """The value to encrypt as text: it becomes an environment variable, so UTF-8 without NUL."""
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PythonExecError(
            f"the value on stdin is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "a secure macro becomes an environment variable, so give UTF-8 text (base64-encode binary data)"
        ) from None
    if "\x00" in value:
        raise PythonExecError(
            f"the value on stdin contains a NUL byte (offset {value.index(chr(0))}); an environment "
            "variable cannot hold one, so remove it (base64-encode binary data)"
        )
    return value


def cmd_generate_key(_args: argparse.Namespace) -> int:
    from airflow_python_exec import crypto

    print(crypto.generate_key())
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with DESIGN.md's refusal format: one ``error: ...`` line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}; see --help\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="airflow-python-exec", description="Run Python script jobs as Airflow would, from the command line."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="also print informational messages")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a job folder, a job.json or a .py file")
    run.add_argument("path", nargs="?", help="job folder, job.json or .py file (optional with --code)")
    run.add_argument("--macro", action="append", type=_macro, metavar="KEY=VALUE", help="set a macro (repeatable)")
    run.add_argument("--dotenv-as-macros", action="store_true", help="convert the job's .env into variables")
    run.add_argument("--refresh", action="store_true", help="use an ephemeral environment, removed afterwards")
    run.add_argument("--install-path", metavar="P", help="override [python_exec] install_path")
    run.add_argument("--cwd", help="working directory, relative to the job folder")
    run.add_argument("--sandbox", choices=("off", "bubblewrap", "auto"), help="override [python_exec] sandbox")
    run.add_argument("--handler", metavar="H", help="call module.path:function (or a function of packageName)")
    run.add_argument(
        "--param",
        action="append",
        type=_param,
        metavar="KEY=JSON",
        help="a handler parameter, its value JSON (repeatable; wins over --params-file)",
    )
    run.add_argument("--params-file", metavar="F", help="a JSON object of handler parameters")
    run.add_argument("--code", metavar="FILE.py", help="the handler's source file, run as inline code")
    run.add_argument("--result", metavar="FILE|-", help="write the run's result as JSON (- for stdout)")
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="check the Python installation, print interpreter and version")
    validate.add_argument("--install-path", metavar="P", help="override [python_exec] install_path")
    validate.set_defaults(func=cmd_validate)

    encrypt = sub.add_parser("encrypt", help="read a value on stdin, print a Fernet token for a secure macro")
    encrypt.set_defaults(func=cmd_encrypt)

    generate = sub.add_parser("generate-key", help="print a new Fernet key")
    generate.set_defaults(func=cmd_generate_key)

    provision = sub.add_parser("provision", help="build a job's cached environment without running it")
    provision.add_argument("path")
    provision.add_argument("--install-path", metavar="P", help="override [python_exec] install_path")
    provision.set_defaults(func=cmd_provision)

    envs = sub.add_parser("envs", help="cached environments").add_subparsers(dest="envs_command", required=True)
    envs.add_parser("list", help="key, size, created, last used and the job that built it").set_defaults(
        func=cmd_envs_list
    )
    prune = envs.add_parser("prune", help="remove environments unused for a while (never one in use)")
    prune.add_argument(
        "--unused-for",
        type=_duration,
        default=_duration(DEFAULT_UNUSED_FOR),
        metavar="DURATION",
        help=f"e.g. 7d, 12h, 30m, 45s (default {DEFAULT_UNUSED_FOR})",
    )
    prune.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    prune.set_defaults(func=cmd_envs_prune)
    return parser


if __name__ == "__main__":
    sys.exit(main())
